"""The one run path: task -> model -> method -> train -> evaluate -> run record.

The CLI's `run`, the benchmark suite and search trials all call `execute_run`.
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from peft import PeftModel

from bench import provenance
from bench.cost import latency_against_base, peak_memory, reset_peak_memory
from bench.flops import ESTIMATE_VERSION, training_flops
from bench.methods import get_method
from bench.methods.registry import Method, MethodError, settings_without_effect
from bench.modeling import TunedModel
from bench.modeling.encoding import label_word_ids
from bench.modeling.forward_patch import instance_forward
from bench.models import BaseModel, ModelError, ModelPool, load_base_model, reset_classification_head
from bench.models.loading import hub_commit
from bench.models.pooling import CONFIG_KEY
from bench.record import SCHEMA_VERSION, Cost, RunRecord, results_folder, share_as_umask_allows, write_record
from bench.run_spec import RunSpec
from bench.train import TrainSettings, train
from bench.train.checkpointing import check_method_checkpoints, check_model_checkpoints
from bench.zero_shot import base_zero_shot
from tasks import Example, Task, TaskCardError, load_task
from tasks.notices import UserNotice

LATENCY_SAMPLE = 16  # validation prompts timed for inference latency


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def evaluate(tuned: TunedModel, task: Task, examples: list[Example], batch_size: int) -> dict[str, float]:
    """`task`'s metrics of `tuned`'s answers to `examples`, with `n`, the number of examples scored."""
    predictions = tuned.predict(examples, batch_size=batch_size)
    return {**task.score(predictions, examples), "n": len(examples)}


def _folder_bytes(folder: Path) -> int:
    """What loading the adapter needs: its weights and config, not the model card PEFT writes beside them."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "README.md")


def cannot_answer(kind: str | None, card) -> str | None:
    """Why a model of `kind` cannot answer the card's task (None: it can, or the kind is unknown)."""
    if kind == "encoder" and not card.is_classification:
        return f"an encoder (classification head only) cannot answer {card.kind} tasks; use a causal or seq2seq model"
    return None


def _check_label_words(base: BaseModel, card, settings) -> None:
    """Each label word is some token to the model's tokenizer where a run reads the words: an LM
    scores them as answers, and a class-label prompt starts from them (an encoder's head does not
    read them). A word of characters the vocabulary drops (a zero-width space) is none."""
    if not card.is_classification or (base.kind == "encoder" and getattr(settings, "init", None) != "class_labels"):
        return
    for value, words in card.label_words.items():
        for word in words:
            if not label_word_ids(base.tokenizer, word, after=card.template[-1:], kind=base.kind):
                raise TaskCardError(card.path, "label_words", f"class {value!r}: the word {word!r} is no token at "
                                    f"all to {base.name}'s tokenizer (its characters are not in the vocabulary)")


_CUTS_NOTED: set[tuple] = set()


def _note_cut_prompts(base: BaseModel, task: Task, examples: RunExamples) -> None:
    """Refuse a card whose max_input_tokens leaves no room for text beside the tokens the tokenizer
    adds, and note how many evaluated prompts the limit cuts: a silent cut can leave a model to
    answer without the passage or question it was asked about."""
    limit, card = task.card.max_input_tokens, task.card
    added = len(base.tokenizer("", add_special_tokens=True)["input_ids"])
    if limit <= added:
        raise TaskCardError(card.path, "max_input_tokens", f"{limit} tokens hold no text for {base.name}, whose "
                            f"tokenizer adds {added} of its own to every prompt")
    prompts = [example.prompt for split in examples.evaluation.values() for example in split]
    noted = (task.name, card.version, str(card.path), base.name, base.kind)
    if not prompts or noted in _CUTS_NOTED:  # once a process: a suite runs a task on a model many times
        return
    _CUTS_NOTED.add(noted)
    cut = sum(len(ids) > limit for ids in base.tokenizer(prompts, verbose=False)["input_ids"])
    if cut:
        kept = "its start and end" if base.kind == "encoder" else "its end"
        warnings.warn(f"task {task.name}: {cut} of {len(prompts)} evaluated prompts are longer than its "
                      f"max_input_tokens ({limit}) for {base.name}; each keeps {kept}", UserNotice, stacklevel=2)


def _check_fits(base: BaseModel, task: Task, num_virtual: int) -> None:
    if why := cannot_answer(base.kind, task.card):
        raise ModelError(f"model {base.name!r} / task {task.name!r}: {why}")
    limit = base.max_positions
    answer, answer_terms = _answer_positions(base, task.card)
    if limit is not None and num_virtual + task.card.max_input_tokens + answer > limit:
        fewer = "fewer virtual tokens, or " if num_virtual else ""
        generates = base.kind == "causal" and not task.card.is_classification
        smaller = "max_input_tokens or max_new_tokens" if generates else "max_input_tokens"
        raise MethodError(f"{num_virtual} virtual tokens + {task.card.max_input_tokens} input tokens{answer_terms} "
                          f"exceed the {limit} positions of model {base.name!r}; use {fewer}a card that includes "
                          f"{task.name!r} with a smaller {smaller}")


def _answer_positions(base: BaseModel, card) -> tuple[int, str]:
    """Positions a causal LM's answer takes after the input (the longest label word scored, or the
    tokens generated), and how the refusal names them."""
    if base.kind != "causal":
        return 0, ""
    if card.is_classification:
        # after a prompt that ends in a word, and after one that ends in a space or newline
        longest = max(len(label_word_ids(base.tokenizer, word, after=ending, kind="causal"))
                      for words in card.label_words.values() for word in words for ending in (":", "\n"))
        return longest, f" + {longest} label-word tokens"
    return card.max_new_tokens, f" + {card.max_new_tokens} new tokens"


@dataclass(frozen=True)
class RunExamples:
    train: list[Example]
    monitor: list[Example]  # scored at each intermediate evaluation
    evaluation: dict[str, list[Example]]  # split -> examples of the final scores


def _select_examples(task: Task, spec: RunSpec) -> RunExamples:
    config = spec.train
    selected = RunExamples(
        train=task.training_examples(config.train_size, seed=config.seed),
        monitor=task.examples("validation", limit=config.monitor_size),
        evaluation={split: task.examples(split, limit=config.eval_size) for split in spec.eval_splits},
    )
    _note_short_splits(task, config, selected)
    return selected


_SHORT_SPLITS_NOTED: set[tuple] = set()


def _note_short_splits(task: Task, config: TrainSettings, selected: RunExamples) -> None:
    """Note a training or evaluation size beyond what a split holds: the run takes every row, and the
    record's budget says the number asked for. Not for the monitor, whose default is a cap."""
    asked = [("train_size", task.training_size(config.train_size), "train", len(selected.train))]
    asked += [("eval_size", config.eval_size, split, len(examples)) for split, examples in selected.evaluation.items()]
    for key, size, split, taken in asked:
        noted = (task.name, str(task.card.path), key, size, split)
        if size is None or size <= taken or noted in _SHORT_SPLITS_NOTED:
            continue
        _SHORT_SPLITS_NOTED.add(noted)
        warnings.warn(f"task {task.name}: {key} {size} is more than the {taken} rows of its {split} split; "
                      f"the run takes all {taken}", UserNotice, stacklevel=3)


def _refuse(method, kind: str | None, task: Task, spec: RunSpec) -> None:
    """What the method says it cannot train (kind None: whatever the model's kind), as `build` would
    refuse it, but before the base model is scored for the record."""
    why = method.refusal(kind, task.card, spec.method_settings)
    if why:
        raise MethodError(f"model {spec.model!r}: {why}" if kind else why)


def prepare_run(spec: RunSpec, pool: ModelPool | None = None):
    """Everything a run needs, checked before any compute: task and its examples (a bad row is
    named before a model downloads or converts), method settings, model."""
    task = load_task(spec.task, tasks_dirs=spec.tasks_dirs)
    task.check_metrics()  # else it fails after training
    method = get_method(spec.method)
    settings = method.settings(**spec.method_settings)
    _refuse(method, spec.model_kind, task, spec)  # what the task alone rules out, before the model loads
    examples = _select_examples(task, spec)
    if spec.train.gradient_checkpointing:
        check_method_checkpoints(method)
    num_labels = len(task.card.classes) if task.card.is_classification else None
    results_folder(spec.results_dir)  # before the model loads: a file in the way is named now, not after training
    weights = {"num_labels": num_labels, "kind": spec.model_kind, "full_precision_weights": method.trains_base_weights}
    base = load_base_model(spec.model, **weights) if pool is None else pool.get(spec.model, **weights)
    _refuse(method, base.kind, task, spec)  # and what the model's kind does, before the base model is scored
    num_virtual = getattr(settings, "num_virtual_tokens", 0)
    _check_fits(base, task, num_virtual)
    _check_label_words(base, task.card, settings)
    _note_cut_prompts(base, task, examples)
    if spec.train.gradient_checkpointing:
        check_model_checkpoints(base)
    return task, method, settings, base, examples


def _save_artifact(model, method: Method, run_dir: Path) -> tuple[Path | None, int]:
    """Adapter in PEFT's format; a method that trains the whole model reports the size its checkpoint
    would have."""
    if method.trains_base_weights:
        return None, sum(p.numel() * p.element_size() for p in model.parameters())
    path = run_dir / "adapter"
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


def execute_run(spec: RunSpec, *, on_eval=None, pool: ModelPool | None = None) -> RunRecord:
    """Train and evaluate one configuration; write and return its record.

    `on_eval(step, score, examples)` sees each intermediate validation score of the task's primary
    metric and the number of examples behind it (a search reports it to Optuna, and its pruner may
    raise to stop the run).
    `pool` reuses base models already loaded in this process.
    """
    started_at = _now()
    task, method, settings, base, examples = prepare_run(spec, pool)
    config = spec.train
    torch.manual_seed(config.seed)  # prompt initialisation and heads are seeded too
    reset_classification_head(base)
    train_examples, monitor, evaluation = examples.train, examples.monitor, examples.evaluation
    latency_prompts = [ex.prompt for ex in monitor[:LATENCY_SAMPLE]]

    def score(tuned: TunedModel, examples: list[Example]) -> dict[str, float]:
        return evaluate(tuned, task, examples, config.eval_batch_size)

    # the base model, before the method touches it
    base_scores = base_zero_shot(task, base, evaluation, score, batch_size=config.eval_batch_size)
    model = method.build(base, settings, task.card)
    tuned = TunedModel(model, base, task.card)
    zero_shot = {split: score(tuned, ex) for split, ex in evaluation.items()} if config.score_initial else None

    def evaluate_during_training(step: int) -> dict[str, float]:
        scores = score(tuned, monitor)
        if on_eval is not None:
            on_eval(step, scores[task.card.primary_metric], scores["n"])
        return scores

    lr = spec.learning_rate()
    memory_reset = reset_peak_memory(base.device)  # peak memory is training's, its evaluations included
    result = train(tuned, train_examples, config, lr=lr, on_eval=evaluate_during_training, progress=spec.progress)
    peak = peak_memory(base.device, reset=memory_reset)
    scores = {}
    for split, examples in evaluation.items():
        already = _scored_already(result, config.steps, examples, monitor) if split == "validation" else None
        scores[split] = already or score(tuned, examples)
    record_path = spec.record_path()
    artifact_path, artifact_bytes = _save_artifact(model, method, record_path.parent)
    cost = _cost(tuned, result, artifact_bytes=artifact_bytes, saved=artifact_path is not None,
                 latency=_latency(tuned, latency_prompts), peak=peak,
                 recomputed=config.gradient_checkpointing)
    record = _record(spec, task, base, method.name, settings, lr=lr, scores=scores, zero_shot=zero_shot,
                     base_scores=base_scores, result=result, cost=cost, artifact_path=artifact_path,
                     started_at=started_at)
    write_record(record, record_path)
    return record


def _record(spec: RunSpec, task: Task, base, method: str, settings, *, lr: float, scores: dict,
            zero_shot: dict | None, base_scores: dict | None, result, cost: Cost, artifact_path: Path | None,
            started_at: str) -> RunRecord:
    """What a finished run keeps: what ran, on what, its scores before and after, its curves and costs."""
    primary = task.card.primary_metric
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id(),
        "status": "completed",
        "task": {"name": task.name, "version": task.card.version, "kind": task.card.kind,
                 "primary_metric": primary, "card": str(task.card.path)},
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
        "zero_shot": zero_shot,
        "base_zero_shot": base_scores,
        "improvement_pct": _improvement(scores, base_scores, primary),
        "curve": {"loss": result.losses, "eval": result.evaluations},
        "cost": cost,
        "artifact_path": str(artifact_path) if artifact_path else None,
        "environment": {"packages": provenance.package_versions(), "git": provenance.git_state(),
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


def _improvement(scores: dict, before: dict | None, metric: str) -> dict[str, float] | None:
    """split -> % change of the primary metric over the score before training.

    None when not measured, or when a split's score before training is not positive: a ratio to
    zero (a Matthews correlation of a constant predictor) or to a negative score means nothing.
    """
    if before is None or any(before[split][metric] <= 0 for split in scores):
        return None
    return {split: 100 * (scores[split][metric] - before[split][metric]) / before[split][metric] for split in scores}
