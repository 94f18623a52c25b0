"""Noise-aware pruning: a pruner's decision to stop a trial stands only when the validation examples
behind the scores can tell the trial apart from the ones that go on.

Early in training a score measured on a few hundred examples moves by several points from noise
alone, while the configs that end best often sit near chance until their warm-up is over. A rung
that stops trials within noise of the promotion threshold stops good configs on noise, and TPE then
reads them as poor. Each trial reports the standard error of every intermediate score, and a trial
is stopped only if its score is more than `margin` standard errors (of the difference) below the
score it needed to go on.
"""

from __future__ import annotations

import math

import optuna

from tasks.metrics import standard_error

MARGIN = 2.0  # standard errors of the difference: about a 95% two-sided test
REPORT_ERRORS_ATTR = "report_standard_errors"  # trial user attr: {str(step): standard error of its score}


def report_with_error(trial: optuna.Trial, score: float, step: int, *, examples: int) -> None:
    """`trial.report` that also keeps the standard error of a score over `examples` validation
    examples where a noise-aware pruner reads it (a score outside [0, 1], of a metric on another
    scale, gets 0: the pruner decides on any gap)."""
    errors = {**trial.user_attrs.get(REPORT_ERRORS_ATTR, {}), str(step): standard_error(score, examples)}
    trial.set_user_attr(REPORT_ERRORS_ATTR, errors)
    trial.report(score, step)


class NoiseAwarePruner(optuna.pruners.BasePruner):
    """Stops a trial when `wrapped` would and the trial's score at this step is more than `margin`
    standard errors below the promotion threshold: the score of the best `keep` share of the other
    trials that reported at the same step. Trials that report no standard error are left to
    `wrapped` alone."""

    def __init__(self, wrapped: optuna.pruners.BasePruner, *, keep: float, margin: float):
        if not 0 < keep <= 1 or margin < 0:
            raise ValueError(f"keep must be in (0, 1] and margin >= 0, got keep={keep}, margin={margin}")
        self._wrapped, self._keep, self._margin = wrapped, keep, margin

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if not self._wrapped.prune(study, trial):
            return False
        step = trial.last_step
        error = _error(trial, step)
        if error is None or self._margin == 0:
            return True
        others = sorted(((t.intermediate_values[step], _error(t, step)) for t in study.get_trials(deepcopy=False)
                         if t.number != trial.number and step in t.intermediate_values),
                        key=lambda pair: pair[0], reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
        if not others:
            return True
        threshold, threshold_error = others[max(math.ceil(len(others) * self._keep) - 1, 0)]
        gap = self._margin * math.hypot(error, error if threshold_error is None else threshold_error)
        value = trial.intermediate_values[step]
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return value < threshold - gap
        return value > threshold + gap


def _error(trial: optuna.trial.FrozenTrial, step: int) -> float | None:
    return trial.user_attrs.get(REPORT_ERRORS_ATTR, {}).get(str(step))
