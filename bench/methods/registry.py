"""The method registry: each method is one `register_method` call with a checked settings dataclass.

A new method is a module here that registers itself when imported: add it to the import in
`bench/methods/__init__.py`, give it a colour in `bench.plots.draw.METHOD_COLOURS` (a test asks for
both) and a line in the README's table of methods. Its `build` returns the trainable model (a PEFT
model, or the base model itself); what differs between PEFT's prompt-learning methods and the
others is read from PEFT's `is_prompt_learning`, not from method names. What a method cannot
train (`refusal`) is refused before a model loads, left out of suites and of the default search
space; what a planned config leaves to the project is filled in by `planned_settings`.

Registering stays light: a method module imports PEFT and torch inside its `build` (PEFT's own
pieces shared by several methods are in `peft_common`), so `spbench methods`, a search space's
check and a suite's plan do not wait seconds for imports they never use.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import SettingsError
from bench.yaml_values import did_you_mean

if TYPE_CHECKING:
    import torch

METHODS: dict[str, Method] = {}


class MethodError(SettingsError):
    """A method that is unknown, misconfigured or unsupported for a model/task."""


@dataclass(frozen=True)
class Method:
    name: str
    settings_cls: type  # dataclass of the method's own settings, checked in __post_init__
    # (base model, settings, task card) -> trainable model (a PEFT model or the base model itself)
    build: Callable[..., torch.nn.Module]
    default_lr: float
    description: str  # one line for `spbench methods`
    # whether the trained model can recompute its activations in the backward pass (gradient checkpointing)
    allows_checkpointing: bool = True
    # whether it trains the base model's own weights (full fine-tuning), which then load in fp32
    # whatever the compute dtype, rather than from the checkpoint rounded to bf16
    trains_base_weights: bool = False
    # (model kind or None when unknown, task card, settings mapping) -> why the method cannot train such a
    # run (None: it can), known before a model loads: `build` refuses with it, a suite leaves the run out
    refusal: Callable[[str | None, Any, dict], str | None] = lambda kind, card, settings: None
    # settings mapping -> the same with what a suite's or a search's config leaves to the project
    # filled in (prompt tuning's text where init=text names none); `spbench run` asks the user instead
    planned_settings: Callable[[dict], dict] = lambda settings: settings

    def settings(self, **values: Any):
        try:
            return self.settings_cls(**values)
        except TypeError as err:
            raise MethodError(f"method {self.name!r}: {err}") from None


def settings_without_effect(settings) -> dict:
    """A method's settings that its other settings make irrelevant (init_text without init=text),
    with the value a run id reads for them; a settings class that has none defines no `without_effect`."""
    return getattr(settings, "without_effect", dict)()


def whose_setting(name: str) -> str:
    """"; init is a setting of prefix_tuning and prompt_tuning only", where `name` is a setting of some
    methods (given to another, it is misplaced, not misspelt); else ""."""
    owners = sorted(method.name for method in METHODS.values() if name in method.settings_cls.__dataclass_fields__)
    return f"; {name} is a setting of {' and '.join(owners)} only" if owners else ""


def register_method(method: Method) -> Method:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", method.name):
        raise ValueError(f"method name {method.name!r} must be lower_snake_case")
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    if not dataclasses.is_dataclass(method.settings_cls):
        raise TypeError(f"method {method.name!r}: settings_cls must be a dataclass")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}"
                          + did_you_mean(name, METHODS, after=";"))
    return METHODS[name]


def check_range(method: str, key: str, value: Any, *, low: float | None = None, high: float | None = None,
                choices: tuple | None = None) -> None:
    """Raise a MethodError naming the method, key and bad value."""
    if choices is not None and value not in choices:
        guess = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
        raise MethodError(f"{method}.{key}={value!r} is not one of {', '.join(map(str, choices))}{guess}")
    if isinstance(value, float) and math.isnan(value):  # no comparison refuses it
        raise MethodError(f"{method}.{key}=nan is not a number")
    if low is not None and value < low or high is not None and value > high:
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise MethodError(f"{method}.{key}={value!r} is out of range {bounds}")
