"""Suites declared as data: tasks x models x method configs x seeds, expanded into run specs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.methods import get_method
from bench.methods.registry import MethodError
from bench.results import method_label
from bench.run import RunSpec
from bench.train import TrainSettings

SHIPPED_SUITES = Path(__file__).parent / "suites"
SUITE_KEYS = {"name", "description", "tasks", "models", "methods", "seeds", "train"}
TRAIN_FIELDS = set(TrainSettings.__dataclass_fields__)


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the entry."""


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    label: str  # method config label, e.g. "prompt_tuning[init=class_labels,num_virtual_tokens=20]"


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    runs: list[PlannedRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # combinations a model cannot run, with why


def find_suite(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SuiteError(f"suite file not found: {path}")
        return path
    shipped = SHIPPED_SUITES / f"{name_or_path}.yaml"
    if not shipped.exists():
        known = ", ".join(sorted(p.stem for p in SHIPPED_SUITES.glob("*.yaml")))
        raise SuiteError(f"unknown suite {name_or_path!r}; shipped suites: {known}")
    return shipped


def _method_configs(path: Path, entries: list) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each entry: {method, settings?, sweep?: {key: [values]}, train?: {...}} -> (method, settings,
    training overrides) per sweep point. `train` sets what differs by method, such as the learning
    rate; a sweep key that is a training setting (lr, batch_size...) goes to the overrides."""
    configs = []
    for index, entry in enumerate(entries):
        where = f"{path} methods[{index}]"
        if not isinstance(entry, dict) or "method" not in entry:
            raise SuiteError(f"{where}: each entry needs `method:`")
        unknown = set(entry) - {"method", "settings", "sweep", "train"}
        if unknown:
            raise SuiteError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected method, settings, sweep, train)")
        train = entry.get("train") or {}
        try:
            method = get_method(entry["method"])
        except MethodError as err:
            raise SuiteError(f"{where}: {err}") from None
        sweep = entry.get("sweep", {})
        keys = list(sweep)
        for values in itertools.product(*(sweep[k] for k in keys)) if keys else [()]:
            point = dict(zip(keys, values))  # a sweep may vary training settings too (e.g. lr)
            settings = {**entry.get("settings", {}), **{k: v for k, v in point.items() if k not in TRAIN_FIELDS}}
            point_train = {**train, **{k: v for k, v in point.items() if k in TRAIN_FIELDS}}
            if method.name == "prompt_tuning" and settings.get("init") == "text" and "init_text" not in settings:
                settings["init_text"] = "Classify or answer the following input."
            try:
                method.settings(**settings)
            except MethodError as err:
                raise SuiteError(f"{where}: {err}") from None
            try:
                TrainSettings(**point_train)
            except (TypeError, MethodError) as err:
                raise SuiteError(f"{where} train: {err}") from None
            configs.append((method.name, settings, point_train))
    return configs


def load_suite(name_or_path: str, *, results_dir: Path | None = None, tasks_dirs: tuple[str, ...] = ()) -> Suite:
    path = find_suite(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SuiteError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping")
    missing = {"name", "tasks", "models", "methods"} - set(data)
    if missing:
        raise SuiteError(f"{path}: missing key {sorted(missing)[0]!r}")
    if set(data) - SUITE_KEYS:
        raise SuiteError(f"{path}: unknown key {sorted(set(data) - SUITE_KEYS)[0]!r}")
    suite = Suite(name=data["name"], path=path, description=data.get("description", ""))
    results_dir = results_dir or Path("results") / suite.name
    defaults = data.get("train", {})
    configs = _method_configs(path, data["methods"])
    from bench.models.registry import MODELS
    from tasks import find_task

    for task_name, budget in data["tasks"].items():
        card = find_task(task_name, tasks_dirs=tasks_dirs)
        try:
            train = TrainSettings(**{**defaults, **(budget or {})})
        except (TypeError, MethodError) as err:
            raise SuiteError(f"{path} tasks.{task_name}: {err}") from None
        for model, (method, settings, method_train), seed in itertools.product(
                data["models"], configs, data.get("seeds", [0])):
            label = method_label(method, sorted({**settings, **method_train}.items()))
            if MODELS.get(model) and MODELS[model].kind == "encoder" and not card.is_classification:
                suite.skipped.append(f"{task_name} / {model}: an encoder cannot answer {card.kind} tasks")
                continue
            spec = RunSpec(task=task_name, model=model, method=method, method_settings=settings,
                           train=TrainSettings(**{**train.__dict__, **method_train, "seed": seed}),
                           tasks_dirs=tasks_dirs, results_dir=results_dir, progress=False)
            suite.runs.append(PlannedRun(spec=spec, label=label))
    suite.skipped = sorted(set(suite.skipped))
    return suite
