"""A trial whose config an earlier trial already ran to the end takes that trial's result.

Every trial of a study trains with the study's one seed, so running the same config again gives
the same scores at the full price. TPE proposes such repeats once it closes in on the best region
of a space of choices and integers (a space that fixes the learning rate or lists its values, say);
Optuna's maintainers advise catching them in the objective (optuna/optuna#2021). A continuous
learning rate makes them rare, not impossible.
"""

from __future__ import annotations

import json

import optuna

CONFIG_ATTR = "config"  # trial user attr: {"method", "settings", "train"} as the trial sampled them
REPEAT_OF_ATTR = "repeat_of"  # trial user attr: the number of the trial whose result this one took


def as_stored(config: dict) -> dict:
    """`config` as the storage gives it back (JSON: tuples read as lists), for comparing with a stored one."""
    return json.loads(json.dumps(config))


def result_of_repeat(trial: optuna.Trial, method: str, settings: dict, train: dict) -> float | tuple[float, ...] | None:
    """Keep the config `trial` sampled on it (what later trials are compared with); where an earlier
    trial completed that config, take its result (see `take_result`), else None: train it."""
    config = {"method": method, "settings": settings, "train": train}
    trial.set_user_attr(CONFIG_ATTR, config)
    twin = finished_twin(trial, config)
    return None if twin is None else take_result(trial, twin)


def finished_twin(trial: optuna.Trial, config: dict) -> optuna.trial.FrozenTrial | None:
    """The first completed trial of `trial`'s study that ran `config`, if any (`trial` itself is
    still running). A pruned one is not taken: the pruner stopped it against the trials of its
    time, and may let it go on now."""
    stored = as_stored(config)
    for earlier in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if earlier.user_attrs.get(CONFIG_ATTR) == stored:
            return earlier
    return None


def take_result(trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> float | tuple[float, ...]:
    """Record on `trial` whose result it takes (and where that run's records are), and return the result."""
    trial.set_user_attr(REPEAT_OF_ATTR, twin.number)
    trial.set_user_attr("records", twin.user_attrs.get("records", []))
    return twin.value if len(twin.values) == 1 else tuple(twin.values)


def original(trials: list[optuna.trial.FrozenTrial], trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """The trial that ran `trial`'s config, `trial` itself unless it took another's result
    (`trials`: its study's trials, in number order)."""
    number = trial.user_attrs.get(REPEAT_OF_ATTR)
    return trial if number is None else trials[number]
