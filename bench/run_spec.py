"""What a run is: its task, model, method and settings (`RunSpec`), and the stable id its record is
found by, so a rerun finds the record of the same run and another configuration never does."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.device import compute_precision
from bench.methods import get_method
from bench.methods.registry import MethodError, settings_without_effect
from bench.models.registry import folder_fingerprint, folder_source, kind_beyond_name
from bench.names import file_part
from bench.record import DEFAULT_RESULTS, TRAIN_SETTINGS_ADDED_LATER
from bench.train import TrainSettings
from bench.yaml_values import declared_type
from tasks import find_task
from tasks.registry import CARD_SUFFIXES, is_shipped

EVAL_SPLITS = ("validation", "test")


@dataclass
class RunSpec:
    task: str
    model: str
    method: str
    method_settings: dict = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    tasks_dirs: tuple[str, ...] = ()
    results_dir: Path = DEFAULT_RESULTS
    model_kind: str | None = None  # override the detected kind of a hub/local model
    progress: bool = True
    # a search selects on validation only; the test split is scored once, for the winner
    eval_splits: tuple[str, ...] = EVAL_SPLITS

    def resolved(self) -> tuple[object, float]:
        """The method's settings with its defaults filled in, and the learning rate the run trains with."""
        return get_method(self.method).settings(**self.method_settings), self.learning_rate()

    def learning_rate(self) -> float:
        """The rate the run trains with: the one set, or its method's default."""
        return self.train.lr if self.train.lr is not None else get_method(self.method).default_lr

    def configuration(self) -> dict:
        """The method and training settings as the run id hashes them: defaults filled in, so leaving
        a setting out and typing its default are one configuration. Settings that do not resolve are
        taken as typed: such a run fails before it writes a record, and its id only names the failure."""
        train = _canonical(self.train)
        for key, default in TRAIN_SETTINGS_ADDED_LATER.items():
            if train[key] == default:
                del train[key]
        try:
            resolved, lr = self.resolved()
            # a setting that changes nothing (init_text without init=text) makes no other run
            method_settings = {**_canonical(resolved), **settings_without_effect(resolved)}
            train["lr"] = float(lr)
        except MethodError:
            method_settings = self.method_settings
        return {"method": method_settings, "train": train}

    def run_id(self) -> str:
        """Stable name: same task, model, method, settings and seed -> same record path."""
        task = task_identity(self.task, self.tasks_dirs)
        folder = folder_source(self.model)
        settings = {"task": task.hashed, "model": folder_fingerprint(folder) if folder else self.model,
                    **self.configuration()}
        if task.version not in (None, 1):  # a card's first version leaves the ids of runs made before versions counted
            settings["task_version"] = task.version
        # one folder loaded as a causal LM and as an encoder is two runs; a named model's own kind, typed, is none
        if (kind := kind_beyond_name(self.model, self.model_kind)) is not None:
            settings["model_kind"] = kind
        # a GPU's bf16 run is another run than a CPU's fp32 one: a suite on a GPU does not skip it as
        # done; runs on a CPU keep the ids they had before precisions counted
        if (precision := compute_precision()) != "cpu/float32":
            settings["precision"] = precision
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        model = Path(folder).name if folder else self.model
        return f"{_slug(task.name)}__{_slug(model)}__{self.method}__{digest}__s{self.train.seed}"

    def record_path(self) -> Path:
        """Where the run's record is (or will be) written: its folder under the results folder."""
        return Path(self.results_dir) / self.run_id() / "record.json"


@dataclass(frozen=True)
class TaskIdentity:
    name: str  # for the run id's readable part
    hashed: str  # what the id hashes: the task's name, or a card path that is not what the name finds
    version: int | None
    card: Path | None = None
    card_mtime: int | None = None


_identities: dict[tuple, TaskIdentity] = {}


def task_identity(task: str, tasks_dirs: tuple[str, ...]) -> TaskIdentity:
    """Who a run's task is. By name, the card that name finds; by card path, the same as by name
    when the name finds that very card (a variant that includes another card and keeps its name
    stays its own task, known by its path). A card's version counts, so a new version is a new run.
    A user's card that replaces a shipped one of the same name is known by its path too.
    Found once per process and card file state (ids are asked for often: every line of a suite's
    progress), and not remembered when the card cannot be read: the run then fails before it
    writes a record, under the task as given."""
    key = (task, tasks_dirs, os.getcwd())
    known = _identities.get(key)
    if known is not None and known.card is not None and _mtime(known.card) == known.card_mtime:
        return known
    given_as_path = task.endswith(CARD_SUFFIXES)
    try:
        card = find_task(task, tasks_dirs=tasks_dirs)
    except (ValueError, OSError):  # TaskCardError and UnknownTask are ValueErrors
        return TaskIdentity(Path(task).stem if given_as_path else task, task, None)
    by_name = card.path
    if given_as_path:
        try:
            by_name = find_task(card.name, tasks_dirs=tasks_dirs).path
        except (ValueError, OSError):  # the name finds no card: this one is the task of that name
            pass
    if by_name == card.path and not _replaces_shipped(card):
        identity = TaskIdentity(card.name, card.name, card.version, card.path, _mtime(card.path))
    elif by_name == card.path:  # a user's card in place of the shipped one: its runs are not the shipped card's
        identity = TaskIdentity(card.name, str(card.path), card.version, card.path, _mtime(card.path))
    else:  # a variant that keeps another card's name: known by its file, however the path was typed
        identity = TaskIdentity(card.path.stem, str(card.path), card.version, card.path, _mtime(card.path))
    _identities[key] = identity
    return identity


def _replaces_shipped(card) -> bool:
    if is_shipped(card.path):
        return False
    try:
        return find_task(card.name).path != card.path
    except (ValueError, OSError):  # no shipped card has the name
        return False


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _canonical(settings) -> dict:
    """A settings dataclass as a dict, whole numbers in float fields as floats (YAML's 0 is 0.0)."""
    values = dataclasses.asdict(settings)
    for item in dataclasses.fields(settings):
        value = values[item.name]
        if "float" in declared_type(item) and isinstance(value, int) and not isinstance(value, bool):
            values[item.name] = float(value)
    return values


def _slug(text: str) -> str:
    """A path- and shell-safe fragment (hub ids and folders contain slashes)."""
    return file_part(text)[-40:]
