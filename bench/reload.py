"""A finished run's adapter loaded back onto its base model, for test scoring or for prediction."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from peft import PeftModel
from safetensors import SafetensorError

from bench.modeling import TunedModel
from bench.modeling.encoder import classification_head_in_fp32
from bench.models import load_base_model
from bench.models.pooling import CONFIG_KEY
from bench.models.registry import MODELS
from bench.record import RunRecord
from tasks import Task, UnknownTask, load_task
from tasks.notices import UserNotice, first_line


class NoAdapterError(ValueError):
    """A run whose trained weights, or the task card they were trained on, cannot be loaded back."""


def task_of(record: RunRecord, tasks_dirs: tuple[str, ...] = ()) -> Task:
    """The card the run trained on: at its recorded path, or else the card of the same name (from
    `tasks_dirs` or the shipped ones), of the same version: another version may render other prompts
    than the adapter learned with."""
    card, name, version = Path(record["task"]["card"]), record["task"]["name"], record["task"]["version"]
    found = [load_task(str(card), tasks_dirs=tasks_dirs)] if card.is_file() else []
    if not found or found[0].card.version != version:
        try:
            found.append(load_task(name, tasks_dirs=tasks_dirs))
        except UnknownTask:
            pass
    for task in found:
        if task.card.version == version:
            _note_changed_card(record, task)
            return task
    seen = "; ".join(f"{task.card.path} is version {task.card.version}" for task in found) or \
        f"{card} is not on this machine, nor a card of that name"
    raise NoAdapterError(f"run {record['run_id']} trained on task {name!r} version {version}; {seen}: pass "
                         "--tasks-dir with a folder holding the card it ran with")


def _note_changed_card(record: RunRecord, task: Task) -> None:
    """A card edited since the run, at the same version, renders other prompts than it learned with."""
    from tasks.digest import content_digest

    kept = record["task"].get("digest")  # records from before it was kept: not known
    if kept is not None and kept != content_digest(task.card):
        warnings.warn(f"{task.card.path} or its data changed since run {record['run_id']} trained on it, at the same "
                      f"version {task.card.version}: its inputs are rendered by the card as it is now", UserNotice,
                      stacklevel=3)


def _missing(adapter: Path) -> str:
    """What is missing of an adapter folder, and where that is usual."""
    if adapter.is_dir() and any(adapter.iterdir()):
        return f"{adapter} has no adapter_config.json, which PEFT needs to load the weights beside it"
    usual = " (the shipped reference keeps records only; a run on this machine writes one)" if _shipped(adapter) else ""
    return f"no adapter at {adapter}{usual}"


def _shipped(adapter: Path) -> bool:
    """Whether the adapter's run is one of the results the project ships (records without adapters)."""
    from bench.record_folder import SHIPPED_RESULTS

    parts = adapter.parts
    return any(a == "results" and b in SHIPPED_RESULTS for a, b in zip(parts, parts[1:]))


def _pooling(mode: str | None) -> str:
    return f"{mode}-pooled token states" if mode else "the first token's state (or the pooler's)"


def _check_fits_model(record: RunRecord, adapter: Path, base) -> None:
    """A prompt adapter loads onto any model without complaint and fails at its first forward when
    the model is not the one it was trained on (a model folder that has since been replaced). The
    shapes it needs on this model are worked out as PEFT works them out when it trains one."""
    from peft import PeftConfig

    try:  # private to PEFT: where a release moves it, the check is left to the adapter's first forward
        from peft.utils.other import _prepare_prompt_learning_config
    except ImportError:
        return
    try:
        saved = PeftConfig.from_pretrained(str(adapter))
    except (OSError, ValueError, TypeError) as err:
        raise NoAdapterError(f"run {record['run_id']}: unreadable {adapter / 'adapter_config.json'} "
                             f"({first_line(err)})") from None
    if not saved.is_prompt_learning:
        return  # LoRA's weights name their shapes: PEFT refuses a mismatch itself
    shapes = ("token_dim", "num_layers")
    needed = _prepare_prompt_learning_config(dataclasses.replace(saved, **dict.fromkeys(shapes)), base.model.config)
    for key in shapes:
        trained, here = getattr(saved, key), getattr(needed, key)
        if trained != here:
            raise NoAdapterError(f"run {record['run_id']}: its adapter was trained on a model with {key} {trained}; "
                                 f"{record['model']['source']} needs {here} (is it another model now?)")


def load_trained(record: RunRecord, task: Task, adapter: Path | None = None) -> TunedModel:
    """The run's trained model on `task`; `adapter` defaults to the folder the record names."""
    if not record.get("artifact_path"):
        raise NoAdapterError(f"run {record['run_id']}: {record['method']['name']} saves no weights "
                             "(the record keeps their size only); rerun with a PEFT method to get an adapter")
    adapter = Path(adapter or record["artifact_path"])
    if not (adapter / "adapter_config.json").is_file():
        raise NoAdapterError(f"run {record['run_id']}: {_missing(adapter)}")
    num_labels = len(task.card.classes) if task.card.is_classification else None
    base_model = record["model"]
    # a folder given by a relative path is found again from anywhere by the full path it was loaded from
    folder = base_model["name"] not in MODELS and Path(base_model.get("source", "")).is_dir()
    base = load_base_model(base_model["source"] if folder else base_model["name"], num_labels=num_labels,
                           kind=base_model["kind"])
    trained_with = base_model.get("sentence_pooling", "unknown")  # records before it was kept: unknown
    read_with = getattr(base.model.config, CONFIG_KEY, None)
    if trained_with != "unknown" and trained_with != read_with:  # its head would read states it never saw
        raise NoAdapterError(f"run {record['run_id']}: its head was trained reading {_pooling(trained_with)}, and "
                             f"{base_model['name']} now loads reading {_pooling(read_with)}; train it again")
    _check_fits_model(record, adapter, base)
    classification_head_in_fp32(base.model, base)  # before PEFT copies the head it loads the trained one into
    try:
        model = PeftModel.from_pretrained(base.model, str(adapter))
    except (RuntimeError, OSError, ValueError, SafetensorError) as err:  # damaged files; weights of another shape
        hint = (" (the weights' shapes differ from this model's: was the task card changed, its classes say, without "
                "bumping its version?)" if "size mismatch" in str(err) else "")
        raise NoAdapterError(f"run {record['run_id']}: cannot load the adapter at {adapter} "
                             f"({type(err).__name__}: {first_line(err)}){hint}") from None
    return TunedModel(model, base, task.card)
