"""Aggregating run records into one table: mean ± std over seeds per task x model x method x training config,
each row related to its task's full fine-tuning and to the base model's zero-shot score."""

from __future__ import annotations

import json
import math
import re
import statistics
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.config_labels import (card_of, config_fields, config_label, method_label, model_kind, precision,
                                 record_init_text, shortened, without_effect)
from bench.record import TRAIN_SETTINGS_ADDED_LATER, RunRecord, improvement_pct
from bench.yaml_values import is_number
from tasks.metrics import PER_EXAMPLE_MEANS, standard_error
from tasks.notices import SkippedInput

COST_KEYS = ("trainable_params", "trainable_pct", "train_seconds", "train_flops", "peak_memory_bytes",
             "artifact_bytes", "latency_overhead")

REFERENCE_METHODS = ("full_ft", "lora")

MEASURED_COSTS = ("train_seconds", "peak_memory_bytes", "latency_overhead")  # timed or sampled: they vary by seed
TRAIN_COLUMNS = ("lr", "steps", "batch_size", "train_size", "eval_size")  # the training budget, as CSV columns

# Settings that change how often or in what batches a run is watched, not what it trains or scores.
MONITORING = {"seed", "eval_every", "monitor_size", "eval_batch_size", "score_initial"}


def _training(record: RunRecord) -> dict:
    """The training settings runs must share to be seeds of one configuration: all but the seed and
    the settings that only watch the run. In bf16 or fp16 the evaluation batch size counts: a
    batch's padding and company move a score there."""
    train = {**TRAIN_SETTINGS_ADDED_LATER, **record["train"]}
    watching = MONITORING if record["model"].get("dtype", "float32") == "float32" else MONITORING - {"eval_batch_size"}
    return {k: v for k, v in train.items() if k not in watching}


def _frozen(settings: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in settings.items()))


# What tells runs of one method config apart besides their training settings: each is part of a
# group's key, and shown in its label where groups of a task and model differ in it
DIMENSIONS: dict[str, Callable[[RunRecord], Any]] = {
    "task_version": lambda record: record["task"].get("version"),
    "card": card_of,
    "model_kind": model_kind,
    "precision": precision,
    "init_text": record_init_text,  # None where the init is not text, which the label says already
}


def _varying(groups: list[list[RunRecord]]) -> list[str]:
    """Training settings (lr aside, already in every label) and DIMENSIONS where these groups differ."""
    trains = [_training(group[0]) for group in groups]
    keys = sorted({k for train in trains for k in train} - {"lr"})
    varying = [k for k in keys if len({json.dumps(t.get(k), default=str) for t in trains}) > 1]
    for name, value_of in DIMENSIONS.items():
        values = {json.dumps(value_of(group[0]), default=str) for group in groups}
        if len(values - ({"null"} if name == "init_text" else set())) > 1:
            varying.append(name)
    return varying


@dataclass
class ResultRow:
    task: str
    model: str
    method: str
    label: str
    settings: dict
    seeds: int
    metric: str
    score: float  # mean over seeds of the primary metric on the chosen split
    score_std: float | None  # None for a single seed
    validation: float
    zero_shot: float | None  # the base model's (see _versus_zero_shot)
    improvement_pct: float | None  # mean over seeds of the % improvement over that zero-shot score
    # score / the best full fine-tuning score of the same task (version) and model; None where that is <= 0
    relative_to_full_ft: float | None
    trainable_params: float
    trainable_pct: float
    train_seconds: float
    train_flops: float
    peak_memory_bytes: float
    artifact_bytes: float
    latency_overhead: float
    task_version: int | None  # None in records that predate task card versions
    lr: float
    steps: int | None
    batch_size: int | None
    train_size: int | None  # None: the whole train split
    eval_size: int | None  # None: whole evaluation splits
    train: dict  # every training setting the group shares (all but the seed)
    examples: int | None = None  # examples each score is over (its records' n; fewer than eval_size in a small split)
    # the score's standard error from those examples alone (binomial, Agresti-Coull; see
    # tasks.metrics.standard_error), where the metric is a mean over examples; seeds add their own spread
    score_se: float | None = None
    card: str = ""  # the task card's folder and file (see card_of)
    model_kind: str = ""  # encoder, causal or seq2seq (see model_kind)
    precision: str = ""  # device/dtype the runs computed in (see precision)
    # the sample std over seeds of each measured cost (MEASURED_COSTS; the others are the same in every
    # seed), None for one seed
    train_seconds_std: float | None = None
    peak_memory_bytes_std: float | None = None
    latency_overhead_std: float | None = None
    # the score of answering every example scored with their commonest class (a classifier that
    # learned nothing), where the records say
    commonest_class: float | None = None
    card_path: str = ""  # the card's file as the run read it (`card` names it across machines)
    # each scored example's score of the primary metric, its mean over seeds, and what identifies those
    # examples (see RunRecord.per_example); None where a record lacks them or its seeds scored others
    per_example: tuple[float, ...] | None = None
    examples_digest: str | None = None

    @property
    def score_error(self) -> float | None:
        """The mean score's standard error: the examples' (score_se), plus the spread of the mean over
        seeds where there are several; None where the examples' is unknown (a metric that is no mean
        over examples)."""
        if self.score_se is None or not math.isfinite(self.score_se):
            return None
        seeds = self.score_std ** 2 / self.seeds if self.score_std is not None else 0.0
        return math.sqrt(self.score_se ** 2 + seeds)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard deviation; one seed has no spread to show (None, not a misleading 0)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _cost_std(values: list[float]) -> float | None:
    """A measured cost's std over seeds: none for one seed, nor where a seed's record lacks the cost
    (nan: the spread of the others would pass for all of them)."""
    return statistics.stdev(values) if len(values) > 1 and all(map(math.isfinite, values)) else None


def _per_example_mean(group: list[RunRecord], split: str, examples: int | None) -> dict:
    """`per_example`, each example's score as the mean over the seeds, and `examples_digest`: where
    every seed's record holds all of them, for the same examples."""
    kept = [(record.get("per_example") or {}).get(split) for record in group]
    if not examples or not all(isinstance(each, dict) and len(each.get("scores") or ()) == examples
                               for each in kept):
        return {}
    digests = {each.get("examples") for each in kept}
    if len(digests) != 1 or None in digests:
        return {}
    return {"per_example": tuple(statistics.fmean(scores) for scores in zip(*(each["scores"] for each in kept))),
            "examples_digest": digests.pop()}


def _mean_or_none(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _group(records: list[RunRecord], split: str) -> dict[tuple[str, str], list[list[RunRecord]]]:
    """Task x model -> groups of runs that differ only in seed (a budget or task version apart is another config)."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for record in records:
        if split not in record["scores"]:  # e.g. search trials, scored on validation only
            continue
        key = (record["task"]["name"], record["model"]["name"], config_label(record),
               *(json.dumps(value_of(record), default=str) for value_of in DIMENSIONS.values()),
               _frozen(_training(record)))
        groups[key].append(record)
    by_task: dict[tuple[str, str], list[list[RunRecord]]] = defaultdict(list)
    for key, group in sorted(groups.items()):
        by_task[key[:2]].append(_latest_per_seed(group))
    return by_task


def _latest_per_seed(group: list[RunRecord]) -> list[RunRecord]:
    """One run a seed: a seed run again (in another results folder, say) counts once, as its latest run."""
    latest: dict[object, RunRecord] = {}
    for record in sorted(group, key=lambda r: str(r.get("finished_at", ""))):
        latest[record["seed"]] = record
    return list(latest.values())


def _label(group: list[RunRecord], varying: list[str]) -> str:
    """The config label, plus the settings that tell this group from others of its task and model."""
    record = group[0]
    text = record_init_text(record)
    shown = {**_training(record), **{name: value_of(record) for name, value_of in DIMENSIONS.items()},
             "init_text": shortened(text) if text else None}
    fields = [(k, shown.get(k)) for k in varying if k != "init_text" or text]
    return method_label(record["method"]["name"], config_fields(record) + fields)


def _table_ready(record: RunRecord) -> bool:
    """Whether a record holds what a table row reads; one that does not is left out, by name."""
    try:
        record["seed"], record["task"]["name"], record["model"]["name"], record["method"]["name"]  # noqa: B018
        record["method"]["settings"].items, record["train"]["lr"]  # noqa: B018
        return True
    except (KeyError, TypeError, AttributeError) as err:
        warnings.warn(f"run {record.get('run_id', '(no run_id)')} left out of the table: its record has no "
                      f"{err.args[0] if isinstance(err, KeyError) else 'usable shape'}", SkippedInput, stacklevel=3)
        return False


def aggregate(records: list[RunRecord], *, split: str = "test") -> list[ResultRow]:
    rows = []
    for groups in _group([r for r in records if _table_ready(r)], split).values():
        varying = _varying(groups)
        rows += [_row(group, _label(group, varying), split=split) for group in groups]
    rows.sort(key=lambda r: (r.task, r.model, natural_key(r.label)))
    _relate_to_full_ft(rows)
    return rows


def natural_key(label: str) -> tuple:
    """Sort key reading the numbers in a label as numbers: steps=50 before steps=300."""
    parts = re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", label)
    return tuple(float(part) if index % 2 else part for index, part in enumerate(parts))


def _number(value) -> float:
    return float(value) if is_number(value) else float("nan")


def _row(group: list[RunRecord], label: str, *, split: str) -> ResultRow:
    metric = group[0]["task"]["primary_metric"]
    score, std = _mean_std([r["scores"][split][metric] for r in group])
    # a cost a record lacks (older records) or left null is not a number: nan, left out of plots
    costs = {key: statistics.fmean(_number(r["cost"].get(key)) for r in group) for key in COST_KEYS}
    spreads = {f"{key}_std": _cost_std([_number(r["cost"].get(key)) for r in group]) for key in MEASURED_COSTS}
    train = _training(group[0])
    examples = group[0]["scores"][split].get("n")
    return ResultRow(
        task=group[0]["task"]["name"], model=group[0]["model"]["name"], method=group[0]["method"]["name"], label=label,
        settings={k: v for k, v in group[0]["method"]["settings"].items() if k not in without_effect(group[0])},
        seeds=len({r["seed"] for r in group}),
        metric=metric, score=score, score_std=std,
        validation=statistics.fmean(r["scores"]["validation"][metric] for r in group),
        **_versus_zero_shot(group, split, metric),
        relative_to_full_ft=None, **costs, task_version=group[0]["task"].get("version"),
        **{k: train.get(k) for k in TRAIN_COLUMNS}, train=train,
        examples=examples, score_se=standard_error(score, examples, adjusted=True)
        if metric in PER_EXAMPLE_MEANS and examples else None,
        card=card_of(group[0]), model_kind=model_kind(group[0]), precision=precision(group[0]), **spreads,
        commonest_class=next((value for r in group if (value := (r.get("commonest_class") or {}).get(split))
                              is not None), None),
        card_path=group[0]["task"].get("card") or "",
        **_per_example_mean(group, split, examples),
    )


def _versus_zero_shot(group: list[RunRecord], split: str, metric: str) -> dict[str, float | None]:
    """The base model's zero-shot score and the group's mean improvement over it: one baseline for
    every method of a task and model. Not a run's own state before training (`score_initial`: an
    untrained prompt, or an encoder's fresh head, whose score is chance); an encoder's base model
    has no head to score with, so it has none."""
    pairs = [(r["scores"][split][metric], before[split][metric]) for r in group
             if (before := r.get("base_zero_shot")) and split in before]
    gains = [improvement_pct(after, before) for after, before in pairs]
    # a relative change from 0 (or below), or a seed without a baseline, leaves no mean over all the
    # seeds: none is given, rather than a mean over some of them
    relative = len(pairs) == len(group) and None not in gains
    return {"zero_shot": _mean_or_none([before for _, before in pairs]),
            "improvement_pct": _mean_or_none(gains) if relative else None}


def task_names(rows: list[ResultRow]) -> list[str]:
    """Each row's task name, with its card version where the rows hold several versions of that task
    (their scores are not comparable: another template, data or metric)."""
    versions: dict[str, set] = defaultdict(set)
    for row in rows:
        versions[row.task].add(row.task_version)
    return [row.task if len(versions[row.task]) == 1 else
            f"{row.task} {'unversioned' if row.task_version is None else f'v{row.task_version}'}" for row in rows]


def model_names(rows: list[ResultRow]) -> list[str]:
    """Each row's model name, with the kind it was loaded as where the rows hold several kinds of it
    (one folder as an encoder and as a causal LM: two models)."""
    kinds: dict[str, set] = defaultdict(set)
    for row in rows:
        kinds[row.model].add(row.model_kind)
    return [row.model if len(kinds[row.model]) == 1 else f"{row.model} ({row.model_kind})" for row in rows]


def comparable_key(row: ResultRow) -> tuple:
    """What a row and its full fine-tuning reference must share: the task (version and card), the model (the
    kind it was loaded as, the device and dtype it computed in), the training data drawn and the evaluation
    examples scored (a 20-example smoke run is no reference). Those are known by their number: a split's
    first n of a seeded order, or all of it, so runs that asked for 300 of 30 rows and for all score alike."""
    scored = row.examples if row.examples is not None else row.eval_size  # records before `n` was kept
    return (row.task, row.task_version, row.card, row.model, row.model_kind, row.precision, row.train_size, scored)


def best_on_validation(rows: Iterable[ResultRow]) -> ResultRow | None:
    """The row of best validation score, as a search chooses (the reported split is never used to
    choose); among rows that tie on it, the cheapest: fewest trainable parameters, then training FLOPs
    (a config that costs more for the same score is no better), then by label, not by record order."""
    def cost(value: float) -> float:
        return value if math.isfinite(value) else math.inf  # a record that did not measure it comes last

    return min(rows, default=None, key=lambda row: (-row.validation, cost(row.trainable_params),
                                                     cost(row.train_flops), natural_key(row.label)))


def tied_on_validation(best: ResultRow, rows: Iterable[ResultRow]) -> int:
    """How many other rows score exactly `best`'s validation score (on the same examples: a tie the
    validation set shows, not a gap within its noise)."""
    return sum(1 for row in rows if row is not best and row.validation == best.validation)


def best_full_ft(rows: Iterable[ResultRow]) -> ResultRow | None:
    """The full fine-tuning row among `rows` that others are measured against (see best_on_validation)."""
    return best_on_validation(row for row in rows if row.method == "full_ft")


def full_ft_of_groups(rows: list[ResultRow]) -> dict[tuple, ResultRow]:
    """The full fine-tuning row each comparable group (by comparable_key) is measured against."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        groups[comparable_key(row)].append(row)
    return {key: best for key, group in groups.items() if (best := best_full_ft(group)) is not None}


def _relate_to_full_ft(rows: list[ResultRow]) -> None:
    references = full_ft_of_groups(rows)
    for row in rows:
        reference = references.get(comparable_key(row))
        # a ratio to a baseline at or below zero (e.g. Matthews correlation) has no meaning
        row.relative_to_full_ft = row.score / reference.score if reference is not None and reference.score > 0 \
            else None


def reruns_left_out(records: list[RunRecord], rows: list[ResultRow], split: str) -> str:
    """"; N superseded ..." where the table counts a seed run again once, as its latest (see
    _latest_per_seed); nothing where it counts every record scored on `split`."""
    with warnings.catch_warnings():  # a record not fit for a table was named when the table was made
        warnings.simplefilter("ignore")
        scored = sum(split in record["scores"] for record in records if _table_ready(record))
    left_out = scored - sum(row.seeds for row in rows)
    return f"; {left_out} superseded by a later run of its seed (not counted)" if left_out > 0 else ""


def unscored(records: list[RunRecord], split: str) -> int:
    """Records with no scores on `split` (search trials score validation only): in no table of it."""
    return sum(split not in record["scores"] for record in records)
