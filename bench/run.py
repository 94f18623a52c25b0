"""The one run path: task -> model -> method -> train -> evaluate -> run record.

The CLI's `run`, the benchmark suite and search trials all call `execute_run`; what a run needs is
found and checked first, before any compute (`bench.run_checks.prepare_run`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from peft import PeftModel

from bench import provenance
from bench.cost import latency_against_base, peak_memory, reset_peak_memory
from bench.flops import ESTIMATE_VERSION, training_flops
from bench.methods.registry import Method, settings_without_effect
from bench.modeling import TunedModel
from bench.modeling.forward_patch import instance_forward
from bench.models import ModelPool, reset_classification_head
from bench.models.loading import hub_commit
from bench.models.pooling import CONFIG_KEY
from bench.record import (ADAPTER_FOLDER, SCHEMA_VERSION, Cost, RunRecord, improvement_pct, share_as_umask_allows,
                          write_record)
from bench.run_checks import prepare_run
from bench.run_spec import RunSpec
from bench.train import train
from bench.zero_shot import base_zero_shot
from tasks import Example, Task
from tasks.digest import content_digest
from tasks.metrics import compute_metrics
from tasks.task import Scored

LATENCY_SAMPLE = 16  # validation prompts timed for inference latency


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def evaluate(tuned: TunedModel, task: Task, examples: list[Example], batch_size: int) -> Scored:
    """`task`'s metrics of `tuned`'s answers to `examples`, with `n`, the number of examples scored,
    and each example's score of the primary metric where it has them (see Task.scored)."""
    predictions = tuned.predict(examples, batch_size=batch_size)
    scores, each = task.scored(predictions, examples)
    return Scored({**scores, "n": len(examples)}, each)


def examples_digest(examples: list[Example]) -> str:
    """What identifies the examples a split was scored on, in order: two runs' per-example scores pair
    up only where this matches (another sample, an edited card or a hub dataset that moved does not)."""
    content = json.dumps([[ex.prompt, ex.target, ex.label] for ex in examples], ensure_ascii=False)
    return hashlib.sha1(content.encode()).hexdigest()[:16]


def commonest_class_scores(task: Task, evaluation: dict[str, list[Example]]) -> dict[str, float] | None:
    """Per split, the primary metric of answering every example with their commonest class: what a
    classifier that learned nothing scores. None for generation tasks, and where the metric cannot
    score one class (a figure for reading the results by: no reason to fail a run)."""
    if not task.card.is_classification:
        return None
    primary, scores = task.card.primary_metric, {}
    try:
        for split, examples in evaluation.items():
            golds = [ex.label for ex in examples]
            commonest = Counter(golds).most_common(1)[0][0]
            scores[split] = compute_metrics([primary], [commonest] * len(golds), golds,
                                            folder=task.card.metrics_folder)[primary]
    except Exception:  # an `evaluate:` metric refusing a single class, say
        return None
    return scores


def _folder_bytes(folder: Path) -> int:
    """What loading the adapter needs: its weights and config, not the model card PEFT writes beside them."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "README.md")


def _save_artifact(model, method: Method, run_dir: Path) -> tuple[Path | None, int]:
    """Adapter in PEFT's format; a method that trains the whole model reports the size its checkpoint
    would have."""
    if method.trains_base_weights:
        return None, sum(p.numel() * p.element_size() for p in model.parameters())
    path = run_dir / ADAPTER_FOLDER
    model.save_pretrained(path)
    return share_as_umask_allows(path), _folder_bytes(path)


@contextmanager
def _base_of(tuned: TunedModel):
    """The unadapted model inside a trained PEFT model, for timing against it.

    Prompt methods leave the base model as it was: called bare, it gets no virtual tokens or prefix
    (PEFT's `disable_adapter` patches generation methods a classifier lacks). LoRA layers sit inside
    it, so they are switched off and skip their update (their wrappers still run, as in any
    unmerged adapter).
    """
    model = tuned.model
    bare = TunedModel(model.get_base_model(), tuned.base, tuned.card)
    if model.active_peft_config.is_prompt_learning:
        yield bare
        return
    with model.disable_adapter():
        yield bare


@contextmanager
def prompt_computed_once(model):
    """A prompt-learning model whose prompt encoder answers every forward with its first output, as
    the saved adapter serves the prompt: P-tuning's MLP or LSTM and a prefix's projection
    reparameterize the prompt for training, and a deployed prompt does not run them."""
    if not (isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning):
        yield
        return
    encoder = model.prompt_encoder[model.active_adapter]
    encode, computed = encoder.forward, {}  # prompt tokens per row -> the encoder's output for one row

    def once(indices: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        # every row holds the same prompt tokens (PEFT expands one row to the batch)
        if indices.shape[1] not in computed:
            computed[indices.shape[1]] = encode(indices[:1], *args, **kwargs)
        return computed[indices.shape[1]].repeat(indices.shape[0], 1, 1)

    with instance_forward(encoder, once):
        yield


def _latency(tuned: TunedModel, prompts: list[str]) -> tuple[float, float, float]:
    # Full fine-tuning keeps the architecture and changes only weight values, which do not change
    # the compute: its base is the same module (overhead 1), as no untouched copy is kept.
    base_of = (lambda: _base_of(tuned)) if isinstance(tuned.model, PeftModel) else None
    with prompt_computed_once(tuned.model):
        return latency_against_base(tuned, base_of, prompts)


def _cost(tuned: TunedModel, result, *, artifact_bytes: int, saved: bool, latency: tuple[float, float, float],
          peak: tuple[int, str], recomputed: bool) -> Cost:
    model = tuned.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    peak_bytes, peak_kind = peak
    flops = training_flops(model, result.work, recomputed=recomputed)
    base_latency, tuned_latency, overhead = latency
    return {
        "trainable_params": trainable, "total_params": total, "trainable_pct": 100 * trainable / total,
        "train_seconds": result.train_seconds, "seconds_per_step": result.seconds_per_step,
        "tokens_seen": result.work.tokens, "train_flops": flops, "flops_estimate": ESTIMATE_VERSION,
        "peak_memory_bytes": peak_bytes, "peak_memory_kind": peak_kind,
        "artifact_bytes": artifact_bytes, "artifact_saved": saved,
        "latency_per_example_s": tuned_latency, "base_latency_per_example_s": base_latency,
        "latency_overhead": overhead,
    }


def _say(spec: RunSpec, text: str) -> None:
    """A phase that can take minutes (scoring generated answers, every example of a split), said as it
    starts, so that a terminal or a log shows the run at work."""
    if spec.progress:
        print(text, file=sys.stderr, flush=True)


def _sizes(evaluation: dict[str, list[Example]]) -> str:
    return ", ".join(f"{split} {len(examples)} examples" for split, examples in evaluation.items())


def execute_run(spec: RunSpec, *, on_eval=None, pool: ModelPool | None = None) -> RunRecord:
    """Train and evaluate one configuration; write and return its record.

    `on_eval(step, score, examples)` sees each intermediate validation score of the task's primary
    metric and the number of examples behind it (a search reports it to Optuna, and its pruner may
    raise to stop the run).
    `pool` reuses base models already loaded in this process.
    """
    started_at = _now()
    provenance.code_loaded()  # read now, not when the record is written: the checkout may move on meanwhile
    task, method, settings, base, examples = prepare_run(spec, pool)
    config = spec.train
    torch.manual_seed(config.seed)  # prompt initialisation and heads are seeded too
    reset_classification_head(base)
    train_examples, monitor, evaluation = examples.train, examples.monitor, examples.evaluation
    latency_prompts = [ex.prompt for ex in monitor[:LATENCY_SAMPLE]]
    commonest_class = commonest_class_scores(task, evaluation)

    def score(tuned: TunedModel, examples: list[Example]) -> dict[str, float]:
        return evaluate(tuned, task, examples, config.eval_batch_size).scores

    def score_base(tuned: TunedModel, split: str, examples: list[Example]) -> dict[str, float]:
        _say(spec, f"scoring the base model zero-shot: {_sizes({split: examples})}")
        return score(tuned, examples)

    # the base model, before the method touches it
    base_scores = base_zero_shot(task, base, evaluation, score_base, batch_size=config.eval_batch_size)
    model = method.build(base, settings, task.card)
    tuned = TunedModel(model, base, task.card)
    initial_scores = None
    if config.score_initial:
        _say(spec, f"scoring before training: {_sizes(evaluation)}")
        initial_scores = {split: score(tuned, ex) for split, ex in evaluation.items()}

    monitored_each: list[float] | None = None  # the last monitoring's, which may stand for the final validation's

    def evaluate_during_training(step: int) -> dict[str, float]:
        nonlocal monitored_each
        scores, monitored_each = evaluate(tuned, task, monitor, config.eval_batch_size)
        if on_eval is not None:
            on_eval(step, scores[task.card.primary_metric], scores["n"])
        return scores

    lr = spec.learning_rate()
    memory_reset = reset_peak_memory(base.device)  # peak memory is training's, its evaluations included
    result = train(tuned, train_examples, config, lr=lr, on_eval=evaluate_during_training, progress=spec.progress)
    peak = peak_memory(base.device, reset=memory_reset)
    scores, each = {}, {}
    already = {split: found for split, examples in evaluation.items()
               if split == "validation" and (found := _scored_already(result, config.steps, examples, monitor))}
    if left := {split: examples for split, examples in evaluation.items() if split not in already}:
        _say(spec, f"scoring after training: {_sizes(left)}")
    for split, examples in evaluation.items():
        if split in already:
            scores[split], each[split] = already[split], monitored_each
        else:
            scores[split], each[split] = evaluate(tuned, task, examples, config.eval_batch_size)
    record_path = spec.record_path()
    artifact_path, artifact_bytes = _save_artifact(model, method, record_path.parent)
    cost = _cost(tuned, result, artifact_bytes=artifact_bytes, saved=artifact_path is not None,
                 latency=_latency(tuned, latency_prompts), peak=peak,
                 recomputed=config.gradient_checkpointing)
    record = _record(spec, task, base, method.name, settings, lr=lr, scores=scores, initial_scores=initial_scores,
                     base_scores=base_scores, result=result, cost=cost, artifact_path=artifact_path,
                     started_at=started_at, commonest_class=commonest_class, each=each, evaluation=evaluation)
    write_record(record, record_path)
    return record


def _record(spec: RunSpec, task: Task, base, method: str, settings, *, lr: float, scores: dict,
            initial_scores: dict | None, base_scores: dict | None, result, cost: Cost, artifact_path: Path | None,
            started_at: str, commonest_class: dict | None, each: dict[str, list[float] | None],
            evaluation: dict[str, list[Example]]) -> RunRecord:
    """What a finished run keeps: what ran, on what, its scores before and after, its curves and costs."""
    primary = task.card.primary_metric
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id(),
        "status": "completed",
        # the digest of the card and data the scores rest on: an edit without a new version is caught
        "task": {"name": task.name, "version": task.card.version, "kind": task.card.kind,
                 "primary_metric": primary, "card": str(task.card.path), "digest": content_digest(task.card)},
        "model": {"name": spec.model, "source": base.source, "kind": base.kind,
                  "dtype": str(base.dtype).removeprefix("torch."), "device": base.device.type,
                  "sentence_pooling": getattr(base.model.config, CONFIG_KEY, None),
                  "revision": hub_commit(base.source)},
        # settings the others make irrelevant (a prefix's encoder size without its projection): kept
        # for reloading, left out of the run's label
        "method": {"name": method, "settings": dataclasses.asdict(settings),
                   "without_effect": sorted(settings_without_effect(settings))},
        # the budget trained on: a card's own train_size (a few-shot variant) where none was asked
        "train": {**dataclasses.asdict(spec.train), "lr": lr,
                  "train_size": task.training_size(spec.train.train_size)},
        "seed": spec.train.seed,
        "scores": scores,
        # each example's score of the primary metric, in the order scored, with what identifies those
        # examples: runs scored on the same ones compare example by example
        "per_example": {split: {"examples": examples_digest(evaluation[split]),
                                "scores": [round(value, 6) for value in values]}
                        for split, values in each.items() if values},
        "zero_shot": initial_scores,  # the method's own state before training, by its older name
        "base_zero_shot": base_scores,
        "commonest_class": commonest_class,  # the score of answering every example with the commonest class
        "improvement_pct": _improvement(scores, base_scores, primary),
        "curve": {"loss": result.losses, "eval": result.evaluations},
        "cost": cost,
        "artifact_path": str(artifact_path) if artifact_path else None,
        "environment": {**provenance.code_loaded(),
                        "hardware": provenance.hardware(base.device)},
        "started_at": started_at,
        "finished_at": _now(),
    }


def _scored_already(result, steps: int, examples: list[Example], monitor: list[Example]) -> dict | None:
    """The last step's evaluation, when it scored these very examples (the validation split, with
    as many monitored examples as evaluated) in the final state: scoring them again gives the same."""
    last = result.evaluations[-1] if result.evaluations else None
    if last is None or last["step"] != steps or examples != monitor:
        return None
    return {k: v for k, v in last.items() if k != "step"}


def _improvement(scores: dict, base_scores: dict | None, metric: str) -> dict[str, float | None] | None:
    """split -> % change of the primary metric over the base model's zero-shot score (a split's None
    where that is not positive, as the tables leave it); None when the base model was not scored."""
    if base_scores is None:
        return None
    return {split: improvement_pct(scores[split][metric], base_scores[split][metric]) for split in scores}
