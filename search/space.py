"""A search space read from YAML, checked before any trial runs, sampled per trial."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.errors import SettingsError
from bench.methods import get_method
from bench.methods.registry import MethodError
from bench.train import TrainSettings
from bench.yaml_values import (declared_type, did_you_mean, is_number, read_yaml_mapping, refuse_repeats,
                               typed_setting, unknown_name, yaml_number)

DEFAULT_SPACE = Path(__file__).parent / "spaces" / "default.yaml"
TRAIN_KEYS = {"lr", "batch_size", "weight_decay", "warmup_ratio"}  # training settings a space may search


class SpaceError(ValueError):
    """A search space that cannot be used; the message names the file and the parameter."""


class NoPromptFits(SpaceError):
    """Every prompt length the space offers is too long for the model beside the task's input: found
    by the first trial, as the model's positions are known once it loads."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # float | int | categorical | fixed
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    value: Any = None
    shared: bool = False  # declared under `shared`: one trial parameter for every method

    @property
    def varies(self) -> bool:
        """Whether trials can differ in it (a one-value range or choice is as fixed as a `value`)."""
        if self.kind == "categorical":
            return len(self.choices) > 1
        return self.kind != "fixed" and self.low != self.high

    def edge_values(self) -> tuple:
        """The values worth checking: the fixed value, every choice, or a range's bounds (the ends
        of what it can sample; once each where they are one value)."""
        if self.kind == "fixed":
            return (self.value,)
        if self.kind == "categorical":
            return self.choices
        return (self.low,) if self.low == self.high else (self.low, self.high)

    def key(self, method: str) -> str:
        """The trial parameter's name: shared ones keep theirs; the others are keyed by method, so
        each key keeps one distribution in the study (learning-rate ranges differ per method)."""
        return self.name if self.shared else f"{method}.{self.name}"

    def distribution(self) -> optuna.distributions.BaseDistribution | None:
        """What `suggest` asks the study for (None: a fixed value is not a trial parameter)."""
        if self.kind == "fixed":
            return None
        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)


PARAM_KEYS = {"low", "high", "log", "choices", "value"}
SPACE_KEYS = ("methods", "shared", "per_method")


def nearest(values, value: float) -> float:
    """The value of `values` closest to `value`: in ratio where all are positive (learning rates and
    prompt lengths are spaced by ratio), else in difference."""
    if value > 0 and all(v > 0 for v in values):
        return min(values, key=lambda v: abs(math.log(v) - math.log(value)))
    return min(values, key=lambda v: abs(v - value))


def _number(where: str, key: str, value: Any) -> float | int:
    """A range bound (numeric text, as YAML reads `1e-3`, is the number it spells)."""
    number = yaml_number(value)
    if number is None:
        raise SpaceError(f"{where}: `{key}` must be a number, got {value!r}")
    return number


def _param(where: str, name: str, spec: Any) -> Param:
    where = f"{where}.{name}"
    if not isinstance(spec, dict):
        return Param(name, "fixed", value=spec)
    if unknown := sorted(set(spec) - PARAM_KEYS):
        raise SpaceError(f"{where}: {unknown_name(unknown[0], sorted(PARAM_KEYS))}")
    shapes = [shape for shape in ({"value"}, {"choices"}, {"low", "high", "log"}) if shape & set(spec)]
    if len(shapes) > 1:
        raise SpaceError(f"{where}: give one of {{low, high}}, {{choices}} or {{value}}, not {', '.join(sorted(spec))}")
    if "value" in spec:
        return Param(name, "fixed", value=spec["value"])
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise SpaceError(f"{where}: `choices` must be a non-empty list")
        return Param(name, "categorical", choices=tuple(spec["choices"]))
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"{where}: give {{low, high}}, {{choices}} or {{value}}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: `log` must be true or false, got {log!r}")
    low, high = _number(where, "low", spec["low"]), _number(where, "high", spec["high"])
    if low > high:
        raise SpaceError(f"{where}: empty range, low {low} > high {high}")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log range needs low > 0, got {low}")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"  # until the setting's type is known
    return Param(name, kind, low=low, high=high, log=log)


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    methods: tuple[str, ...]
    params: dict[str, tuple[Param, ...]]  # method -> the parameters it samples (shared ones included)

    @property
    def is_default(self) -> bool:
        """Read from the shipped default space file (named with --space or not): the space that covers
        every kind of task, and may be narrowed to what a search can take."""
        return Path(self.path).resolve() == DEFAULT_SPACE.resolve()

    def digest(self) -> str:
        """What the space offers, as a short checksum (its file's path aside)."""
        offered = json.dumps({"methods": list(self.methods),
                              "params": {m: [dataclasses.asdict(p) for p in ps] for m, ps in self.params.items()}},
                             sort_keys=True, default=str)
        return hashlib.sha256(offered.encode()).hexdigest()[:16]

    def without_choice(self, method: str, name: str, choice: Any) -> SearchSpace:
        """This space with `choice` no longer offered for `method`'s categorical parameter `name`."""
        def narrowed(param: Param) -> Param:
            if param.name != name or param.kind != "categorical":
                return param
            return dataclasses.replace(param, choices=tuple(c for c in param.choices if c != choice))
        params = {m: tuple(map(narrowed, ps)) if m == method else ps for m, ps in self.params.items()}
        return dataclasses.replace(self, params=params)

    def without_method(self, method: str) -> SearchSpace:
        """This space with `method` and its parameters no longer offered."""
        return dataclasses.replace(self, methods=tuple(m for m in self.methods if m != method),
                                   params={m: ps for m, ps in self.params.items() if m != method})

    def shortest_prompt(self) -> int | None:
        """The fewest virtual tokens a trial of this space can have (None: a method samples no length,
        so trains at its default or has no prompt)."""
        lowest = []
        for params in self.params.values():
            lengths = [min(param.edge_values()) for param in params if param.name == "num_virtual_tokens"]
            if not lengths:
                return None
            lowest += lengths
        return int(min(lowest)) if lowest else None

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Every trial parameter this space can ask a study for, by its key."""
        found = {} if len(self.methods) == 1 else {"method": optuna.distributions.CategoricalDistribution(
            list(self.methods))}
        for method, params in self.params.items():
            found.update({p.key(method): p.distribution() for p in params if p.kind != "fixed"})
        return found

    def sample(self, trial: optuna.Trial) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(method, method settings, training settings); parameters of other methods are not sampled."""
        method = self.methods[0] if len(self.methods) == 1 else trial.suggest_categorical("method", list(self.methods))
        settings, train = {}, {}
        for param in self.params[method]:
            value = param.suggest(trial, param.key(method))
            (train if param.name in TRAIN_KEYS else settings)[param.name] = value
        return method, get_method(method).planned_settings(settings), train


def _hint(extras: list[str], methods: list[str]) -> str:
    """How to mend `per_method` keys not among `methods`: a known method is to be listed, a misspelt
    one spelt as meant."""
    from bench.methods import METHODS

    known = [name for name in extras if name in METHODS]
    if known:
        return f" (add {', '.join(known)} to `methods` to search {'it' if len(known) == 1 else 'them'})"
    return next((hint for name in extras if (hint := did_you_mean(name, methods, after=";"))), "")


def _check_method_params(where: str, method: str, params: list[Param]) -> None:
    from bench.methods.registry import whose_setting

    fields = set(get_method(method).settings_cls.__dataclass_fields__) | TRAIN_KEYS
    for param in params:
        if param.name not in fields:  # a setting of another method (init under p_tuning) is misplaced, not misspelt
            raise SpaceError(f"{where}: {unknown_name(param.name, sorted(fields), what=f'{method} parameter')}"
                             f"{whose_setting(param.name)}")


def _checked(where: str, method: str, param: Param) -> Param:
    """`param` with the numeric kind its setting declares (an integer setting needs integer bounds),
    once every value the space can give it passes the method's (or training's) own checks: a bad
    bound or choice is refused now, not when a trial first samples it."""
    settings_cls = TrainSettings if param.name in TRAIN_KEYS else get_method(method).settings_cls
    declared = declared_type(settings_cls.__dataclass_fields__[param.name])
    if param.kind in ("int", "float") and declared.startswith("int"):
        if not (float(param.low).is_integer() and float(param.high).is_integer()):
            raise SpaceError(f"{where}.{param.name}: an integer setting needs integer bounds, got "
                             f"[{param.low}, {param.high}]")
        param = dataclasses.replace(param, kind="int", low=int(param.low), high=int(param.high))
    elif param.kind == "int" and declared.startswith("float"):
        param = dataclasses.replace(param, kind="float", low=float(param.low), high=float(param.high))
    if param.kind == "fixed":  # typed as a suite types a setting: 4.0 is the integer 4, 8.5 and `true` are not
        value = typed_setting(where, param.name, param.value, declared, error=SpaceError)
        param = dataclasses.replace(param, value=value)
    elif param.kind == "categorical":
        choices = tuple(typed_setting(where, param.name, c, declared, error=SpaceError) for c in param.choices)
        # 1 and 1.0 are one choice of a number setting (as text, "1" is another)
        same = [float(c) if is_number(c) else repr(c) for c in choices]
        if len(set(same)) < len(same):
            raise SpaceError(f"{where}.{param.name}: a choice is listed twice in {list(param.choices)}")
        param = dataclasses.replace(param, choices=choices)
    for value in param.edge_values():
        if declared == "bool" and not isinstance(value, bool):
            raise SpaceError(f"{where}.{param.name}: {value!r} is not true or false")
        try:
            settings_cls(**get_method(method).planned_settings({param.name: value}))
        except (SettingsError, TypeError) as err:
            raise SpaceError(f"{where}.{param.name}: value {value!r} is refused: {err}") from None
    return param


def _check_together(where: str, method: str, params: tuple[Param, ...]) -> None:
    """Each value a parameter can take, with the values the space fixes for the others: settings
    that pass one at a time can be refused together (`init: text` with `init_text: ''`, a prefix's
    `init: real_tokens` with its projection), which would fail every trial that drew them. Values
    of two varying parameters are not tried in pairs."""
    settings_cls = get_method(method).settings_cls
    own = [p for p in params if p.name not in TRAIN_KEYS]
    # a one-value choice or range is as fixed as a `value`
    fixed = {p.name: p.edge_values()[0] for p in own if not p.varies}
    trials = [(None, fixed)] + [(p, {**fixed, p.name: value}) for p in own if p.varies for value in p.edge_values()]
    for param, settings in trials:
        settings = get_method(method).planned_settings(settings)  # as `sample` fills it in
        try:
            settings_cls(**settings)
        except (SettingsError, TypeError) as err:
            value = "" if param is None else f"{param.name}={settings[param.name]!r} with "
            raise SpaceError(f"{where}: {value}the fixed {fixed} is refused: {err}") from None


def _mapping(path: Path, key: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpaceError(f"{path} {key}: must be a mapping of parameter names to their ranges, got {value!r}")
    return value


def _refuse_unused_shared(path: Path, shared: list[Param], params: dict[str, tuple[Param, ...]]) -> None:
    """A shared parameter no method samples is refused: it was meant to be searched (misspelt, most often)."""
    methods = list(params)
    for param in shared:
        if any(p.shared and p.name == param.name for m in methods for p in params[m]):
            continue
        overriding = [m for m in methods if any(p.name == param.name for p in params[m])]
        if overriding:
            why = f"every method ({', '.join(overriding)}) gives its own under per_method"
        else:  # a misspelling, most often: what the methods take, and the nearest of it
            known = sorted(set(TRAIN_KEYS).union(*(get_method(m).settings_cls.__dataclass_fields__ for m in methods)))
            why = f"no setting of {', '.join(methods)} has this name{did_you_mean(param.name, known)} " \
                  f"(known: {', '.join(known)})"
        raise SpaceError(f"{path} shared: parameter {param.name!r} is never used: {why}")


def load_space(path: Path | str | None = None) -> SearchSpace:
    path = Path(path) if path else DEFAULT_SPACE
    data = read_yaml_mapping(path, what="a search space (keys methods, shared, per_method)",
                             error=lambda problem: SpaceError(f"{path}: {problem}"))
    if unknown := sorted(set(data) - set(SPACE_KEYS)):
        raise SpaceError(f"{path}: {unknown_name(unknown[0], SPACE_KEYS)}")
    methods = data.get("methods") or []
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise SpaceError(f"{path} methods: must be a list of method names, got {methods!r}")
    if not methods:
        raise SpaceError(f"{path}: `methods` must list at least one method")
    refuse_repeats(f"{path} methods", methods, error=SpaceError)
    per_method = _mapping(path, "per_method", data.get("per_method"))
    shared = [dataclasses.replace(_param(f"{path} shared", n, s), shared=True)
              for n, s in _mapping(path, "shared", data.get("shared")).items()]
    params: dict[str, tuple[Param, ...]] = {}
    for method in methods:
        try:
            method_obj = get_method(method)
        except MethodError as err:
            raise SpaceError(f"{path} methods: {err}") from None
        if method_obj.trains_base_weights:
            raise SpaceError(f"{path} methods: {method} trains the whole model and leaves no prompt; it is the "
                             "reference point `spbench bench` compares against, not a searchable method")
        own = [_param(f"{path} per_method.{method}", n, s)
               for n, s in _mapping(path, f"per_method.{method}", per_method.get(method)).items()]
        # a parameter declared for the method itself overrides the shared one of the same name
        applicable = [p for p in shared if (p.name in method_obj.settings_cls.__dataclass_fields__
                                            or p.name in TRAIN_KEYS) and p.name not in {o.name for o in own}]
        _check_method_params(f"{path} per_method.{method}", method, own)
        params[method] = tuple([_checked(f"{path} shared ({method})", method, p) for p in applicable]
                               + [_checked(f"{path} per_method.{method}", method, p) for p in own])
        _check_together(f"{path} per_method.{method}", method, params[method])
    _refuse_unused_shared(path, shared, params)
    if extras := sorted(set(per_method) - set(methods)):
        raise SpaceError(f"{path} per_method: {', '.join(map(repr, extras))} not in `methods`" + _hint(extras, methods))
    if len(methods) == 1 and not any(p.varies for p in params[methods[0]]):
        declared = "every parameter fixed" if params[methods[0]] else "no parameter declared"
        raise SpaceError(f"{path}: nothing to search: one method ({methods[0]}) with {declared}; a space searches "
                         "only what it declares (copy search/spaces/default.yaml to start from its ranges): give a "
                         "parameter a range or choices, or train that config with `spbench run`")
    return SearchSpace(path=path, methods=tuple(methods), params=params)
