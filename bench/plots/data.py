"""What each plot shows, as plain numbers (tested without drawing anything)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from typing import NamedTuple

from bench.config_labels import init_text, shortened
from bench.results import (REFERENCE_METHODS, ResultRow, best_on_validation, comparable_key, full_ft_of_groups,
                           model_names, natural_key, task_names)

COST_AXES = {
    "trainable_params": "trainable parameters",
    "train_seconds": "training time (s)",
    "train_flops": "training FLOPs (estimate)",
    "peak_memory_bytes": "peak memory (MiB; on a CPU, the process's resident set)",
    "artifact_bytes": "saved artifact (KiB)",
    "latency_overhead": "inference latency (x the base model's)",
}
COST_UNITS = {"peak_memory_bytes": 2**20, "artifact_bytes": 2**10}  # bytes drawn in the units the report uses


class Point(NamedTuple):
    label: str
    method: str
    cost: float  # in the axis's unit (COST_AXES)
    score: float
    error: float | None  # the score's standard error (see score_error): its error bar; None where unknown
    tag: str = ""  # what tells it from its method's other points on the chart ("lstm", "lr=0.01"); "" where alone
    seeds: int = 1  # runs averaged into it: its error bar holds their spread only where several


class ScoreCost(NamedTuple):
    task: str
    model: str
    metric: str
    axis: str
    points: list[Point]  # every config scored as most are, with this cost measured, references included
    pareto: list[Point]  # lowest cost for each gain in score, in cost order
    references: dict[str, Point]  # the full_ft / lora config of best validation score
    unmeasured: tuple[str, ...] = ()  # configs whose records lack this cost (older records, say): not drawn
    # configs trained on other data or scored on other examples than most (a 20-example smoke run):
    # their scores do not compare, so they are not drawn
    incomparable: tuple[str, ...] = ()


class RelativeScores(NamedTuple):
    tasks: list[str]
    methods: list[str]
    values: dict[str, dict[str, float]]  # method -> task -> relative score of its best config (on validation)
    configs: dict[str, dict[str, str]]  # method -> task -> that config's label
    # method -> task -> the ratio's standard error, from both scores' (None where either is unknown)
    errors: dict[str, dict[str, float | None]]
    metrics: dict[str, str]  # task -> its primary metric
    without_reference: tuple[str, ...]  # task (model) columns with no full fine-tuning run to relate to
    # method -> task -> the seeds behind the ratio's two scores (its config's, full fine-tuning's)
    seeds: dict[str, dict[str, tuple[int, int]]] = {}


class LengthCurve(NamedTuple):
    task: str
    model: str
    method: str  # the config family: its table label without the prompt length (and the lr, where chosen)
    lengths: list[int]
    scores: list[float]
    errors: list[float | None]  # standard errors (see score_error)
    metric: str = "score"
    lrs_chosen: bool = False  # each length shows the best of several learning rates (on validation)
    lrs_differ: bool = False  # its points were trained at different learning rates (chosen or not)
    seeds: tuple[int, ...] = ()  # runs averaged into each point


class InitComparison(NamedTuple):
    task: str
    model: str
    config: str  # the config family: its table label without the init (and the lr, where chosen)
    inits: list[str]
    scores: list[float]
    errors: list[float | None]  # standard errors (see score_error)
    metric: str = "score"
    lrs_chosen: bool = False  # each init shows the best of several learning rates (on validation)
    lrs_differ: bool = False  # its bars were trained at different learning rates (chosen or not)
    seeds: tuple[int, ...] = ()  # runs averaged into each bar
    commonest_class: float | None = None  # the score of answering every example with it: chance, for scale


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both cost (lower) and score (higher)."""
    front, best = [], float("-inf")
    for point in sorted(points, key=lambda p: (p.cost, -p.score)):
        if point.score > best:
            front.append(point)
            best = point.score
    return front


def score_error(row: ResultRow) -> float | None:
    """A score's error bar: its standard error (the examples' and, with several seeds, their spread's;
    ResultRow.score_error); for a metric that is no mean over examples, the seeds' alone where there
    are several."""
    if row.score_error is not None:
        return row.score_error
    return row.score_std / math.sqrt(row.seeds) if row.score_std is not None else None


def _point(row: ResultRow, axis: str, tag: str = "") -> Point:
    return Point(row.label, row.method, getattr(row, axis) / COST_UNITS.get(axis, 1), row.score, score_error(row), tag,
                 row.seeds)


def _shown_value(key: str, value) -> str:
    """One setting in a point's tag: a choice by its value alone ("lstm", "class_labels"), a switch by
    its name ("prefix_projection", "no prefix_projection"), a number with its name."""
    if isinstance(value, bool):
        return key if value else f"no {key}"
    if isinstance(value, str):
        return shortened(value) if key == "init_text" else value
    name = SHORT_NAMES.get(key, key)
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


SHORT_NAMES = {"num_virtual_tokens": "tokens", "encoder_hidden_size": "hidden"}
# training settings that change a run's cost but not what it learns: not what tells its point apart
SCORE_NEUTRAL = {"gradient_checkpointing"}


def point_tags(rows: list[ResultRow]) -> list[str]:
    """For each row, the method and training settings in which its method's rows here differ ("" for a
    method's only row): a chart's legend names methods, and two P-tuning points need "mlp" and "lstm"
    beside them to be told apart."""
    by_method: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_method[row.method].append(index)
    tags = [""] * len(rows)
    for indices in by_method.values():
        settings = [{k: v for k, v in {**rows[i].settings, **rows[i].train}.items()
                     if v is not None and k not in SCORE_NEUTRAL} for i in indices]
        keys = sorted({k for s in settings for k in s})
        differing = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in settings}) > 1]
        for index, setting in zip(indices, settings):
            tags[index] = ", ".join(_shown_value(k, setting[k]) for k in differing if k in setting)
    return tags


def score_cost(rows: list[ResultRow], *, axis: str = "trainable_params") -> list[ScoreCost]:
    if axis not in COST_AXES:
        raise ValueError(f"unknown cost axis {axis!r}; choose from {', '.join(COST_AXES)}")
    by_task: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row, task, model in zip(rows, task_names(rows), model_names(rows)):
        by_task[(task, model)].append(row)
    charts = []
    for (task, model), group in sorted(by_task.items()):
        # the chart holds the runs scored as most of its are (same data and evaluation examples); its
        # reference lines are scores, drawn whether or not the reference measured this cost, chosen
        # on validation as the tables choose full fine-tuning's
        usual = _usual(group)
        comparable = [r for r in group if comparable_key(r) == usual]
        measured = [r for r in comparable if math.isfinite(getattr(r, axis))]
        points = [_point(r, axis, tag) for r, tag in zip(measured, point_tags(measured))]
        references = {}
        for method in REFERENCE_METHODS:
            candidates = [r for r in comparable if r.method == method]
            if candidates:
                references[method] = _point(best_on_validation(candidates), axis)
        unmeasured = tuple(r.label for r in comparable if not math.isfinite(getattr(r, axis)))
        incomparable = tuple(r.label for r in group if comparable_key(r) != usual)
        charts.append(ScoreCost(task, model, group[0].metric, axis, points, pareto_front(points), references,
                                unmeasured, incomparable))
    return charts


def _usual(rows: list[ResultRow]) -> tuple | None:
    """The comparable key (data and evaluation examples) most of these rows share."""
    return Counter(comparable_key(r) for r in rows).most_common(1)[0][0] if rows else None


def relative_scores(rows: list[ResultRow]) -> RelativeScores:
    columns: dict[str, list[ResultRow]] = defaultdict(list)
    for row, task, model in zip(rows, task_names(rows), model_names(rows)):
        columns[f"{task} ({model})"].append(row)
    references = full_ft_of_groups(rows)
    values: dict[str, dict[str, float]] = defaultdict(dict)
    configs: dict[str, dict[str, str]] = defaultdict(dict)
    errors: dict[str, dict[str, float | None]] = defaultdict(dict)
    seeds: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for column, group in columns.items():
        usual = _usual(group)  # a 20-example smoke run does not compete with the real ones
        for method in {r.method for r in group}:
            candidates = [r for r in group if r.method == method and comparable_key(r) == usual]
            chosen = best_on_validation(candidates)  # on validation, as the tables
            if chosen is not None and chosen.relative_to_full_ft is not None:
                values[method][column] = chosen.relative_to_full_ft
                configs[method][column] = chosen.label
                reference = references[comparable_key(chosen)]
                errors[method][column] = _ratio_error(chosen, reference)
                seeds[method][column] = chosen.seeds, reference.seeds
    tasks = sorted({t for per_task in values.values() for t in per_task})
    without = tuple(sorted(set(columns) - set(tasks)))
    metrics = {column: group[0].metric for column, group in columns.items() if column in tasks}
    return RelativeScores(tasks, sorted(values), dict(values), dict(configs), dict(errors), metrics, without,
                          dict(seeds))


def _ratio_error(row: ResultRow, reference: ResultRow) -> float | None:
    """The standard error of row.score / reference.score from both scores' (to first order). Both
    scored the same examples, so the pair's own error is smaller: this one is on the safe side."""
    mine, theirs = score_error(row), score_error(reference)
    if row is reference or mine is None or theirs is None or row.score <= 0:
        return None
    return row.relative_to_full_ft * math.hypot(mine / row.score, theirs / reference.score)


def _family(row: ResultRow, task: str, model: str, *keys: str) -> tuple:
    """Everything that makes a row's config but `keys` (method or training settings): rows with the
    same family differ only there. `task` and `model` are their names as the charts show them (with
    a version, or a model's kind, where the rows hold several)."""
    ignored = set(keys) | ({"init_text"} if init_text(row.settings) is None else set())  # unused text
    settings = tuple(sorted((k, str(v)) for k, v in row.settings.items() if k not in ignored))
    train = json.dumps({k: v for k, v in row.train.items() if k not in keys}, sort_keys=True, default=str)
    return task, model, row.method, row.card, row.model_kind, row.precision, settings, train


def _label_without(label: str, key: str) -> str:
    """A table label with one `key=value` left out (lr always follows the method settings)."""
    return re.sub(rf"(?<=[\[,]){key}=[^,\]]*(,|(?=\]))", "", label).replace(",]", "]")


def length_curves(rows: list[ResultRow]) -> list[LengthCurve]:
    """Score against prompt length for configs that differ only in their number of virtual tokens and
    learning rate. Where a family was trained at several rates, each length shows the rate best on
    validation (as a sweep tunes it; the reported split is never used to choose): a line per rate
    would bury the question under a line per learning rate."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row, task, model in zip(rows, task_names(rows), model_names(rows)):
        if "num_virtual_tokens" in row.settings:
            groups[_family(row, task, model, "num_virtual_tokens", "lr")].append(row)
    curves = []
    for (task, model, *_), group in groups.items():
        best = _best_lr_each(group, lambda row: row.settings["num_virtual_tokens"])
        if len(best) < 2:
            continue
        chosen = [best[length] for length in sorted(best)]
        several_lrs = _several_lrs(group, lambda row: row.settings["num_virtual_tokens"])
        name = _label_without(chosen[0].label, "num_virtual_tokens")
        one_lr = len({r.lr for r in chosen}) == 1  # else the label's lr would be its first point's only
        curves.append(LengthCurve(task, model, name if one_lr else _label_without(name, "lr"), sorted(best),
                                  [r.score for r in chosen], [score_error(r) for r in chosen], chosen[0].metric,
                                  lrs_chosen=several_lrs, lrs_differ=not one_lr,
                                  seeds=tuple(r.seeds for r in chosen)))
    return sorted(curves, key=lambda c: (c.task, c.model, natural_key(c.method)))


def _several_lrs(group: list[ResultRow], value) -> bool:
    """Whether, at some `value(row)`, several learning rates were there to choose from."""
    rates: dict = defaultdict(set)
    for row in group:
        rates[value(row)].add(row.lr)
    return any(len(lrs) > 1 for lrs in rates.values())


def _best_lr_each(group: list[ResultRow], value) -> dict:
    """For each `value(row)` in `group`, its row of best validation score (of its learning rates)."""
    best: dict = {}
    for row in group:
        if value(row) not in best or row.validation > best[value(row)].validation:
            best[value(row)] = row
    return best


def _init_name(row: ResultRow, *, with_text: bool) -> str:
    init = row.settings["init"]
    return f"text {shortened(row.settings['init_text'])}" if init == "text" and with_text else init


def init_comparisons(rows: list[ResultRow]) -> list[InitComparison]:
    """Prompt tuning by init, for each config family (task, model, other settings, training) with several inits."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row, task, model in zip(rows, task_names(rows), model_names(rows)):
        if row.method == "prompt_tuning":
            groups[_family(row, task, model, "init", "init_text", "lr")].append(row)
    comparisons = []
    for (task, model, *_), group in groups.items():
        if len({r.settings["init"] for r in group}) < 2:
            continue
        def init_of(row):
            return row.settings["init"], init_text(row.settings)

        best = _best_lr_each(group, init_of)
        chosen = sorted(best.values(), key=lambda r: (r.settings["init"], str(init_text(r.settings))))
        several_texts = sum(r.settings["init"] == "text" for r in chosen) > 1
        several_lrs = _several_lrs(group, init_of)
        named_by = next(r for r in chosen if r.settings["init"] != "text")  # its label has no init text
        name = _label_without(named_by.label, "init")
        one_lr = len({r.lr for r in chosen}) == 1
        comparisons.append(InitComparison(task, model, name if one_lr else _label_without(name, "lr"),
                                          [_init_name(r, with_text=several_texts) for r in chosen],
                                          [r.score for r in chosen], [score_error(r) for r in chosen], chosen[0].metric,
                                          lrs_chosen=several_lrs, lrs_differ=not one_lr,
                                          seeds=tuple(r.seeds for r in chosen),
                                          commonest_class=next((r.commonest_class for r in chosen
                                                                if r.commonest_class is not None), None)))
    return sorted(comparisons, key=lambda c: (c.task, c.model, natural_key(c.config)))
