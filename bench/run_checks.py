"""Everything a run needs, found and checked before any compute: the task and its examples (a bad
row is named before a model downloads or converts), the method and its settings, the model, and
what they cannot do together (a prompt longer than the model's positions, a label word its
tokenizer drops, a task an encoder cannot answer)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from bench.methods import get_method
from bench.methods.registry import MethodError
from bench.modeling.encoding import label_word_ids
from bench.models import BaseModel, ModelError, ModelPool, load_base_model
from bench.record import ADAPTER_FOLDER, results_folder
from bench.run_spec import RunSpec
from bench.train import TrainSettings
from bench.train.checkpointing import check_method_checkpoints, check_model_checkpoints
from tasks import Example, Task, TaskCardError, load_task
from tasks.notices import UserNotice
from tasks.registry import is_shipped


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


class PromptTooLong(MethodError):
    """More virtual tokens than the model's positions leave beside the card's input and answer."""

    def __init__(self, message: str, *, room: int):
        super().__init__(message)
        self.room = room  # the most virtual tokens that fit (0 or below: none)


def _check_fits(base: BaseModel, task: Task, num_virtual: int) -> None:
    if why := cannot_answer(base.kind, task.card):
        raise ModelError(f"model {base.name!r} / task {task.name!r}: {why}")
    limit = base.context_length
    answer, answer_terms = _answer_positions(base, task.card)
    if limit is not None and num_virtual + task.card.max_input_tokens + answer > limit:
        room = limit - task.card.max_input_tokens - answer  # none where the card alone fills the context
        fewer = f"at most {room} virtual tokens, or " if num_virtual and room >= 1 else ""
        generates = base.kind == "causal" and not task.card.is_classification
        smaller = "max_input_tokens or max_new_tokens" if generates else "max_input_tokens"
        card = (f"a card that includes {task.name!r} with a smaller {smaller}" if is_shipped(task.card.path)
                else f"a smaller {smaller} in its card {task.card.path}")  # the user's own card: edit it
        raise PromptTooLong(f"{num_virtual} virtual tokens + {task.card.max_input_tokens} input tokens{answer_terms} "
                            f"exceed the {limit} positions of model {base.name!r}; use {fewer}{card}", room=room)


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


def _check_run_folder(folder: Path) -> None:
    """The run's own folder, where its adapter and record go: a file in their place is named before
    training, not after it (the folder itself is made when the run has something to put there)."""
    for path, what in ((folder, "folder"), (folder / ADAPTER_FOLDER, "adapter")):
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: a file where the run's {what} goes; move it away")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"run folder {folder}: cannot write there (permission denied)")


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
    _check_run_folder(spec.record_path().parent)
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
