"""Noise-aware pruning: a trial is stopped only when its score is clearly below the rung's threshold."""

import optuna
import pytest

from search.pruning import REPORT_ERRORS_ATTR, NoiseAwarePruner, report_with_error
from search.strategy import make_pruner
from tasks.metrics import standard_error

EXAMPLES = 400
ALWAYS = optuna.pruners.ThresholdPruner(lower=2.0)  # wants to stop every trial
NEVER = optuna.pruners.NopPruner()


def study_with(scores: list[float], pruner: optuna.pruners.BasePruner, direction: str = "maximize") -> optuna.Study:
    """A study whose finished trials scored `scores` at step 10, each with its standard error."""
    study = optuna.create_study(direction=direction, pruner=pruner)
    for score in scores:
        study.add_trial(optuna.trial.create_trial(
            value=score, intermediate_values={10: score},
            user_attrs={REPORT_ERRORS_ATTR: {"10": standard_error(score, EXAMPLES)}}))
    return study


def stopped_at(study: optuna.Study, score: float, *, with_error: bool = True) -> bool:
    trial = study.ask()
    if with_error:
        report_with_error(trial, score, 10, examples=EXAMPLES)
    else:
        trial.report(score, 10)
    return trial.should_prune()


def test_a_trial_within_noise_of_the_threshold_goes_on():
    # the best third of the others starts at 0.70; two standard errors of the difference at n=400 is 0.066
    pruner = NoiseAwarePruner(ALWAYS, keep=1 / 3, margin=2.0)
    assert not stopped_at(study_with([0.70, 0.60, 0.50], pruner), 0.66)
    assert stopped_at(study_with([0.70, 0.60, 0.50], pruner), 0.62)
    # at margin 0 any gap is enough, as for the wrapped pruner alone
    assert stopped_at(study_with([0.70, 0.60, 0.50], NoiseAwarePruner(ALWAYS, keep=1 / 3, margin=0.0)), 0.66)


def test_the_wrapped_pruner_decides_first_and_alone_without_errors():
    assert not stopped_at(study_with([0.70, 0.60, 0.50], NoiseAwarePruner(NEVER, keep=1 / 3, margin=2.0)), 0.10)
    # a trial that reports no standard error (older studies) is left to the wrapped pruner
    assert stopped_at(study_with([0.70, 0.60, 0.50], NoiseAwarePruner(ALWAYS, keep=1 / 3, margin=2.0)), 0.69,
                      with_error=False)
    # the first trial to reach a step has nothing to be compared with
    assert stopped_at(study_with([], NoiseAwarePruner(ALWAYS, keep=1 / 3, margin=2.0)), 0.69)


def test_minimized_scores_are_compared_the_other_way():
    pruner = NoiseAwarePruner(optuna.pruners.ThresholdPruner(upper=-1.0), keep=1 / 2, margin=2.0)
    # the better half of the others (lower is better) ends at 0.40
    assert not stopped_at(study_with([0.30, 0.40, 0.60, 0.70], pruner, "minimize"), 0.44)
    assert stopped_at(study_with([0.30, 0.40, 0.60, 0.70], pruner, "minimize"), 0.50)


def test_make_pruner_wraps_with_the_pruners_promotion_share():
    assert isinstance(make_pruner("hyperband", min_steps=10, max_steps=50, margin=0), optuna.pruners.HyperbandPruner)
    noise_aware = make_pruner("median", min_steps=10, max_steps=50, margin=2.0)
    assert isinstance(noise_aware, NoiseAwarePruner) and noise_aware._keep == 0.5
    assert make_pruner("hyperband", min_steps=10, max_steps=50, margin=2.0)._keep == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="margin >= 0"):
        NoiseAwarePruner(ALWAYS, keep=0.5, margin=-1)
