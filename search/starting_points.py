"""Known-good configs a search tries first, fitted into the space it searches."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from bench.yaml_values import is_number
from search.space import SearchSpace, nearest
from search.study import NOT_RUN_ATTR

# Starting points worth trying first, fitted into a user's narrowed space (see `_fit_to_space`).
KNOWN_GOOD = [
    # Lester et al.'s recipe (class-label init); 0.3 was with Adafactor, AdamW wants ~0.03
    {"method": "prompt_tuning", "num_virtual_tokens": 20, "prompt_tuning.init": "class_labels",
     "prompt_tuning.lr": 0.03},
    {"method": "prompt_tuning", "num_virtual_tokens": 100, "prompt_tuning.init": "sampled_vocab",
     "prompt_tuning.lr": 0.03},
    # PEFT's defaults for P-tuning and prefix tuning
    {"method": "p_tuning", "num_virtual_tokens": 20, "p_tuning.encoder": "mlp", "p_tuning.encoder_hidden_size": 128,
     "p_tuning.lr": 0.01},
    {"method": "prefix_tuning", "num_virtual_tokens": 20, "prefix_tuning.prefix_projection": False,
     "prefix_tuning.lr": 0.01},
]

REQUEUED_ATTR = "requeued_after_kill"
REQUEUES = 2  # a point whose every run gets its process killed (out of memory, say) is not run for ever


def requeue_starting_point(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """For a trial whose process was killed (its heartbeat went stale): a starting point is queued
    once, so put it back, as Ctrl-C does, or the study never runs it (Lester's recipe, say)."""
    if is_requeued(trial):
        study.enqueue_trial(trial.system_attrs["fixed_params"],
                            user_attrs={REQUEUED_ATTR: trial.user_attrs.get(REQUEUED_ATTR, 0) + 1})


def is_requeued(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a killed trial's point is queued again: a starting point, not yet queued `REQUEUES` times."""
    return bool(trial.system_attrs.get("fixed_params")) and trial.user_attrs.get(REQUEUED_ATTR, 0) < REQUEUES


def _fit_to_space(space: SearchSpace, point: dict) -> dict | None:
    """The starting point as trial parameters of this space: numbers clamped into narrowed ranges or
    taken to the nearest offered number, fixed parameters left to the space; None when its method,
    or a choice that is not a number, is not offered. The point names
    parameters as the default space keys them (`num_virtual_tokens`, `<method>.lr`)."""
    method = point["method"]
    if method not in space.methods:
        return None
    params = {p.name: p for p in space.params[method]}
    fitted = {"method": method} if len(space.methods) > 1 else {}
    for key, value in point.items():
        param = params.get(key.rpartition(".")[2])
        if key == "method" or param is None or param.kind == "fixed":
            continue
        if param.kind == "categorical":
            numbers = [c for c in param.choices if is_number(c)]
            if value not in param.choices and not (is_number(value) and numbers):
                return None
            # a number not offered takes the nearest offered one, as a range clamps it
            fitted[param.key(method)] = value if value in param.choices else nearest(numbers, value)
        else:
            fitted[param.key(method)] = type(param.low)(min(max(value, param.low), param.high))
    return fitted


def enqueue_known_good(study: optuna.Study, space: SearchSpace, *, classification: bool) -> None:
    for point in KNOWN_GOOD:
        if not classification and point.get("prompt_tuning.init") == "class_labels":
            continue
        params = _fit_to_space(space, point)
        if params is not None:
            study.enqueue_trial(params, skip_if_exists=True)


def refit_queued_points(study: optuna.Study, space: SearchSpace) -> tuple[int, int]:
    """Starting points still queued were fitted to the space the study had when they were queued: one
    this space cannot take as it is is withdrawn (failed as not run) and queued again fitted to it,
    or dropped when this space does not offer its method or choice. Returns how many were queued
    again and how many dropped."""
    requeued = dropped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        point = trial.system_attrs.get("fixed_params", {})
        prefixed = [key.partition(".")[0] for key in point if "." in key]
        method = point.get("method") or (prefixed[0] if prefixed else space.methods[0])
        refit = _fit_to_space(space, {**point, "method": method})
        if refit == point:
            continue
        study._storage.set_trial_user_attr(trial._trial_id, NOT_RUN_ATTR, "queued under another search space")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if refit is None:
            dropped += 1
        else:
            study.enqueue_trial(refit, skip_if_exists=True)
            requeued += 1
    return requeued, dropped
