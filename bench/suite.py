"""Suites declared as data: tasks x models x method configs x seeds, expanded into run specs."""

from __future__ import annotations

import collections
import itertools
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from bench.config_labels import method_label
from bench.errors import SettingsError
from bench.methods import get_method
from bench.methods.registry import Method, MethodError, settings_without_effect, whose_setting
from bench.models.registry import ModelError, refuse_typo
from bench.names import is_folder_name
from bench.record import DEFAULT_RESULTS
from bench.run_checks import cannot_answer
from bench.run_spec import RunSpec
from bench.train import TrainSettings
from bench.train.config import watching_no_more_than_scored
from bench.yaml_values import (checked_settings, declared_type, did_you_mean, read_yaml_mapping, refuse_repeats,
                               settings_mapping, typed_setting, unknown_name)
from tasks.notices import UserNotice

SHIPPED_SUITES = Path(__file__).parent / "suites"
SUITE_KEYS = {"name", "description", "tasks", "models", "model_kinds", "methods", "seeds", "train"}
ENTRY_KEYS = ("method", "settings", "sweep", "train")  # of each `methods` entry
TRAIN_FIELDS = set(TrainSettings.__dataclass_fields__)


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the entry."""


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    label: str  # method config label, e.g. "prompt_tuning[init=class_labels,num_virtual_tokens=20]"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    results_dir: Path = DEFAULT_RESULTS
    runs: list[PlannedRun] = field(default_factory=list)
    # why the combinations a model cannot run are left out, one line a reason with the runs it stands
    # for ("... (4 runs)": the prompt lengths and seeds of one init, say)
    skipped: list[str] = field(default_factory=list)


def find_suite(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SuiteError(f"{path}: suite file not found")
        return path
    shipped = SHIPPED_SUITES / f"{name_or_path}.yaml"
    if not shipped.exists():
        known = sorted(p.stem for p in SHIPPED_SUITES.glob("*.yaml"))
        raise SuiteError(f"unknown suite {name_or_path!r}; shipped suites: {', '.join(known)}"
                         + did_you_mean(name_or_path, known, after=";"))
    return shipped


def _mapping(where: str, value: Any) -> dict:
    return settings_mapping(where, value, error=SuiteError)


def _list(where: str, value: Any, entry: type, what: str) -> list:
    """A non-empty list of `entry` values (bools are not integers here, though Python counts them so)."""
    if not isinstance(value, list) or not value or not all(
            isinstance(v, entry) and not (isinstance(v, bool) and entry is not bool) for v in value):
        raise SuiteError(f"{where}: must be a non-empty list of {what}, got {value!r}")
    return value


def _model_kinds(where: str, value: Any, models: list[str]) -> dict[str, str]:
    """Declared kinds of hub models (known before they load, so runs they cannot take are left out)."""
    from bench.models.registry import KINDS, MODELS

    if not isinstance(value, dict):
        raise SuiteError(f"{where}: must map model names to kinds ({', '.join(KINDS)}), got {value!r}")
    for model, kind in value.items():
        if model not in models:
            raise SuiteError(f"{where}.{model}: not one of the suite's models ({', '.join(models)})")
        if kind not in KINDS:
            raise SuiteError(f"{where}.{model}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if model in MODELS and MODELS[model].kind != kind:
            raise SuiteError(f"{where}.{model}: a registered {MODELS[model].kind} model, not {kind}")
    return value


def _cannot_take(task_name: str, card, model: str, kind: str | None, method: str, settings: dict, *,
                 checkpointing: bool) -> str | None:
    """Why a run would only fail, where that is known before it loads anything (None: plan it)."""
    if checkpointing and not get_method(method).allows_checkpointing:
        return f"{task_name} / {method}: cannot train with gradient_checkpointing"
    if why := cannot_answer(kind, card):
        return f"{task_name} / {model}: {why}"
    if why := get_method(method).refusal(kind, card, settings):
        return f"{task_name} / {model} / {method}: {why}"
    return None


def _typed(where: str, key: str, value: Any, declared: str) -> Any:
    return typed_setting(where, key, value, declared, error=SuiteError)


def _settings(where: str, values: Any, fields: dict[str, Any], what: str) -> dict[str, Any]:
    return checked_settings(where, values, fields, what, error=SuiteError, hint=whose_setting)


def _refuse_repeats(where: str, values: list) -> None:
    """A value listed twice would plan the same run twice (one run id: the second is skipped as done)."""
    refuse_repeats(where, values, error=SuiteError)


# training settings a suite gives its own way: the run's seed comes from the suite's `seeds` list
SUITE_OWNED = {"seed": "set by the suite's `seeds: [...]` list, not per task, method or sweep"}


def _train_settings(where: str, values: dict[str, Any]) -> TrainSettings:
    """Training settings checked together (a range, or one setting against another), their fault
    named at `where`."""
    try:
        return TrainSettings(**values)
    except SettingsError as err:
        raise SuiteError(f"{where}: {err}") from None


def _train_fields() -> dict[str, Any]:
    return {k: v for k, v in TrainSettings.__dataclass_fields__.items() if k not in SUITE_OWNED}


def _refuse_owned(where: str, values: Any) -> None:
    for key, why in SUITE_OWNED.items():
        if isinstance(values, dict) and key in values:
            raise SuiteError(f"{where}: `{key}` is {why}")


def _train(where: str, values: Any) -> dict[str, Any]:
    _refuse_owned(where, values)
    return _settings(where, values, _train_fields(), "training setting")


def _sweep(where: str, values: Any, fields: dict[str, Any]) -> dict[str, list]:
    """key -> the values it takes, each typed like a setting."""
    sweep = {}
    for key, options in _mapping(where, values).items():
        if key not in fields:
            raise SuiteError(f"{where}: {unknown_name(key, sorted(fields), what='setting')}{whose_setting(key)}")
        if not isinstance(options, list) or not options:
            raise SuiteError(f"{where}: `{key}` must be a non-empty list of values, got {options!r}")
        sweep[key] = [_typed(where, key, option, declared_type(fields[key])) for option in options]
        _refuse_repeats(f"{where}.{key}", sweep[key])
    return sweep


def _method_configs(path: Path, entries: list) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each entry: {method, settings?, sweep?: {key: [values]}, train?: {...}} -> (method, settings,
    training overrides) per sweep point. `train` sets what differs by method, such as the learning
    rate; a sweep key that is a training setting (lr, batch_size...) goes to the overrides."""
    configs = []
    planned: dict[tuple, str] = {}  # each configuration -> the entry that plans it
    for index, entry in enumerate(entries):
        entry_name = f"methods[{index}]"
        where = f"{path} {entry_name}"
        merged = []  # sweep points that differ only in settings without effect (init_text without init=text)
        for point in _sweep_points(where, *_method_entry(where, entry)):
            if point.idle and planned.get(point.key) == entry_name:
                merged.append(point)
                continue
            if point.key in planned:
                label = method_label(point.method, sorted(point.settings.items()))
                unused = f"; {', '.join(point.idle)} changes nothing here" if point.idle else ""
                raise SuiteError(f"{where}: plans a run {planned[point.key]} already plans ({label}{unused}); "
                                 "list each configuration once")
            planned[point.key] = entry_name
            configs.append((point.method, point.settings, point.train))
        if merged:
            idle = sorted({key for point in merged for key in point.idle})
            warnings.warn(f"{where}: {', '.join(idle)} changes nothing in {len(merged)} of its sweep's points, each "
                          "the same run as another: each planned once", UserNotice, stacklevel=3)
    return configs


class _SweepPoint(NamedTuple):
    method: str
    settings: dict[str, Any]  # less those without effect
    train: dict[str, Any]  # the training overrides
    idle: list[str]  # settings given that change nothing here
    key: tuple  # the configuration as the run id sees it: a default written out is the default left out


def _method_entry(where: str, entry) -> tuple[Method, dict[str, Any], dict[str, Any], dict[str, list]]:
    """One `methods` entry checked: its method, settings, training overrides and sweep."""
    if not isinstance(entry, dict) or "method" not in entry:
        raise SuiteError(f"{where}: each entry needs `method:`")
    if unknown := sorted(set(entry) - set(ENTRY_KEYS)):
        raise SuiteError(f"{where}: {unknown_name(unknown[0], ENTRY_KEYS)}")
    if not isinstance(entry["method"], str):
        raise SuiteError(f"{where}: `method` must be a method name, got {entry['method']!r}")
    try:
        method = get_method(entry["method"])
    except MethodError as err:
        raise SuiteError(f"{where}: {err}") from None
    fields = method.settings_cls.__dataclass_fields__
    settings = _settings(f"{where}.settings", entry.get("settings"), fields, f"{method.name} setting")
    train = _train(f"{where}.train", entry.get("train"))
    _refuse_owned(f"{where}.sweep", entry.get("sweep"))
    sweep = _sweep(f"{where}.sweep", entry.get("sweep"), {**fields, **_train_fields()})
    if both := sorted(set(sweep) & {*settings, *train}):  # the sweep would override it at every point
        raise SuiteError(f"{where}: {both[0]} is both set and swept; give it under `sweep` only")
    return method, settings, train, sweep


def _sweep_points(where: str, method: Method, base_settings: dict[str, Any], train: dict[str, Any],
                  sweep: dict[str, list]) -> Iterator[_SweepPoint]:
    """Each point of an entry's sweep (one point without a sweep), checked."""
    keys = list(sweep)
    for values in itertools.product(*(sweep[k] for k in keys)) if keys else [()]:
        point = dict(zip(keys, values))  # a sweep may vary training settings too (e.g. lr)
        settings = {**base_settings, **{k: v for k, v in point.items() if k not in TRAIN_FIELDS}}
        point_train = {**train, **{k: v for k, v in point.items() if k in TRAIN_FIELDS}}
        settings = method.planned_settings(settings)
        try:
            without_effect = settings_without_effect(method.settings(**settings))
        except MethodError as err:
            raise SuiteError(f"{where}: {err}") from None
        resolved_train = _train_settings(f"{where} train", point_train)
        idle = [key for key in settings if key in without_effect]
        settings = {key: value for key, value in settings.items() if key not in without_effect}
        configuration = RunSpec(task="", model="", method=method.name, method_settings=settings,
                                train=resolved_train).configuration()
        yield _SweepPoint(method.name, settings, point_train, idle,
                          (method.name, json.dumps(configuration, sort_keys=True)))


def load_suite(name_or_path: str, *, results_dir: Path | None = None, tasks_dirs: tuple[str, ...] = ()) -> Suite:
    path = find_suite(name_or_path)
    data = read_yaml_mapping(path, what="a suite", error=lambda problem: SuiteError(f"{path}: {problem}"))
    if unknown := sorted(set(data) - SUITE_KEYS):  # first: a misspelt key is also a missing one
        raise SuiteError(f"{path}: {unknown_name(unknown[0], sorted(SUITE_KEYS))}")
    missing = {"name", "tasks", "models", "methods"} - set(data)
    if missing:
        raise SuiteError(f"{path}: missing key {sorted(missing)[0]!r}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise SuiteError(f"{path} name: must be non-empty text, got {data['name']!r}")
    if not is_folder_name(data["name"]):
        raise SuiteError(f"{path} name: {data['name']!r} is not a folder name (no / or ..)")
    if not isinstance(data.get("description", ""), str):
        raise SuiteError(f"{path} description: must be text, got {data['description']!r}")
    results_dir = Path(results_dir or DEFAULT_RESULTS / data["name"])  # made when the suite runs
    tasks = data["tasks"]
    if not isinstance(tasks, dict) or not tasks or not all(isinstance(name, str) for name in tasks):
        raise SuiteError(f"{path} tasks: must map task names to their budgets, e.g. {{sst2: {{steps: 50}}}}; "
                         f"got {data['tasks']!r}")
    models, kinds = _models(path, data)
    seeds = _seeds(path, data)
    defaults = _train(f"{path} train", data.get("train"))
    _train_settings(f"{path} train", defaults)  # out of range here is this key's fault, not the first task's
    configs = _method_configs(path, _list(f"{path} methods", data["methods"], object, "method entries"))
    runs, left_out = _plan(path, results_dir, tasks, models, kinds, configs, seeds, defaults, tasks_dirs=tasks_dirs)
    return Suite(name=data["name"], path=path, description=data.get("description", ""), results_dir=results_dir,
                 runs=_once_each(path, runs),
                 skipped=[reason + (f" ({count} runs)" if count > 1 else "")
                          for reason, count in sorted(collections.Counter(left_out).items())])


def _models(path: Path, data: dict) -> tuple[list[str], dict[str, str]]:
    """The suite's model names (a likely typo of a registered name refused) and the kinds it gives them."""
    models = _list(f"{path} models", data["models"], str, "model names")
    _refuse_repeats(f"{path} models", models)
    for model in models:
        try:
            refuse_typo(model)
        except ModelError as err:
            raise SuiteError(f"{path} models: {err}") from None
    return models, _model_kinds(f"{path} model_kinds", data.get("model_kinds") or {}, models)


def _seeds(path: Path, data: dict) -> list[int]:
    seeds = _list(f"{path} seeds", data.get("seeds", [0]), int, "integers, e.g. [0, 1, 2]")
    _refuse_repeats(f"{path} seeds", seeds)
    for seed in seeds:
        _train_settings(f"{path} seeds", {"seed": seed})
    return seeds


def _plan(path: Path, results_dir: Path, tasks: dict, models: list[str], kinds: dict[str, str], configs: list,
          seeds: list[int], defaults: dict, *, tasks_dirs: tuple[str, ...]) -> tuple[list[PlannedRun], list[str]]:
    """Every task x model x method config x seed as a planned run, or, where the model cannot take
    it (known before any model loads), as the reason it is left out: (runs, reasons)."""
    from bench.models.registry import MODELS
    from tasks import UnknownTask, find_task

    runs, left_out = [], []
    known_kinds = {**{m: MODELS[m].kind for m in models if m in MODELS}, **kinds}
    for task_name, budget in tasks.items():
        try:
            card = find_task(task_name, tasks_dirs=tasks_dirs)
        except UnknownTask as err:
            raise SuiteError(f"{path} tasks.{task_name}: {err}") from None
        task_train = {**defaults, **_train(f"{path} tasks.{task_name}", budget)}
        _train_settings(f"{path} tasks.{task_name}", task_train)
        for model, (method, settings, method_train), seed in itertools.product(models, configs, seeds):
            label = method_label(method, sorted({**settings, **method_train}.items()))
            run_train = TrainSettings(**watching_no_more_than_scored({**task_train, **method_train, "seed": seed}))
            cannot = _cannot_take(task_name, card, model, known_kinds.get(model), method, settings,
                                  checkpointing=run_train.gradient_checkpointing)
            if cannot:
                left_out.append(cannot)
                continue
            spec = RunSpec(task=task_name, model=model, method=method, method_settings=settings, train=run_train,
                           tasks_dirs=tasks_dirs, results_dir=results_dir, model_kind=kinds.get(model),
                           progress=False)
            runs.append(PlannedRun(spec=spec, label=label))
    return runs, left_out


def _once_each(path: Path, runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs with any the suite's defaults and task budgets make equal to an earlier one left out
    (`{method: lora}` and `{method: lora, train: {steps: 50}}` under a 50-step budget): one record
    would answer both, so the second would only ever show as already done."""
    first: dict[str, PlannedRun] = {}
    for run in runs:
        earlier = first.setdefault(run.spec.run_id(), run)
        if earlier is not run:
            warnings.warn(f"{path}: {run.spec.task} / {run.spec.model} / {run.label} is the same run as "
                          f"{earlier.label}; it runs once", UserNotice, stacklevel=3)
    return list(first.values())
