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

from search.study import CONFIG_ATTR, RECORDS_ATTR

# trial user attr: {"method", "configuration"}, the configuration its run ids hash (defaults filled in,
# settings without effect left out), where the objective gives it
RUN_CONFIG_ATTR = "run_config"
REPEAT_OF_ATTR = "repeat_of"  # trial user attr: the number of the trial whose result this one took


def as_stored(config: dict) -> dict:
    """`config` as the storage gives it back (JSON: tuples read as lists), for comparing with a stored one."""
    return json.loads(json.dumps(config))


def result_of_repeat(trial: optuna.Trial, method: str, settings: dict, train: dict, *,
                     configuration: dict | None = None) -> float | tuple[float, ...] | None:
    """Keep the config `trial` sampled on it; where an earlier trial completed the same run, take its
    result (see `take_result`), else None: train it. Runs are the same where their `configuration`
    (what their run ids hash) is, if given: two sampled points can train one run (a prefix's encoder
    size without its projection, a default typed or left out); else where the sampled configs are."""
    config = {"method": method, "settings": settings, "train": train}
    trial.set_user_attr(CONFIG_ATTR, config)
    if configuration is not None:
        trial.set_user_attr(RUN_CONFIG_ATTR, {"method": method, "configuration": configuration})
    twin = finished_twin(trial)
    return None if twin is None else take_result(trial, twin)


def _same_run(trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> bool:
    """By the run configurations where both trials hold one; else (a trial of a study resumed from
    before they were kept) by the configs as sampled."""
    key = RUN_CONFIG_ATTR if RUN_CONFIG_ATTR in earlier.user_attrs and RUN_CONFIG_ATTR in trial.user_attrs \
        else CONFIG_ATTR
    return earlier.user_attrs.get(key) == as_stored(trial.user_attrs.get(key))


def finished_twin(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """The first completed trial of `trial`'s study that ran the run `trial` is about to, if any
    (`trial` itself is still running). A pruned one is not taken: the pruner stopped it against the
    trials of its time, and may let it go on now."""
    for earlier in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if _same_run(trial, earlier):
            return earlier
    return None


def take_result(trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> float | tuple[float, ...]:
    """Record on `trial` whose result it takes (and where that run's records are), and return the result."""
    trial.set_user_attr(REPEAT_OF_ATTR, twin.number)
    trial.set_user_attr(RECORDS_ATTR, twin.user_attrs.get(RECORDS_ATTR, []))
    return twin.value if len(twin.values) == 1 else tuple(twin.values)


def original(trials: list[optuna.trial.FrozenTrial], trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """The trial that ran `trial`'s config, `trial` itself unless it took another's result
    (`trials`: its study's trials, in number order)."""
    number = trial.user_attrs.get(REPEAT_OF_ATTR)
    return trial if number is None else trials[number]


def trained_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The completed trials that trained their config: a repeat took an earlier one's result, the
    same point again."""
    return [trial for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if REPEAT_OF_ATTR not in trial.user_attrs]
