"""Which trials won a search: the best one, the Pareto front, and the trials the validation set cannot
tell from the best. What the search's files, summary and plots all report."""

from __future__ import annotations

import optuna

from bench.record import read_record
from search.repeats import REPEAT_OF_ATTR, original, trained_trials
from search.study import DEFINITION_ATTR, RECORDS_ATTR
from tasks.metrics import PROPORTION_METRICS, standard_error


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """Best validation score; for two objectives, the best-scoring trial of the Pareto front. The
    trial that ran it, where a later one took its result."""
    best = study.best_trial if len(study.directions) == 1 else max(study.best_trials, key=lambda t: t.values[0])
    return original(study.get_trials(deepcopy=False), best)


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The Pareto front's trials that ran (a repeat took another's result), best score first."""
    return sorted((t for t in study.best_trials if REPEAT_OF_ATTR not in t.user_attrs), key=lambda t: -t.values[0])


def statistical_ties(study: optuna.Study) -> tuple[float, int, list[optuna.trial.FrozenTrial]] | None:
    """(standard error, validation size, other trials within one standard error of the best): trials
    the validation set cannot tell from the winner, best first. None where the score is not a
    proportion (F1, ROUGE, a mean over tasks), for two objectives, or without the winner's record.
    The study needs a completed trial."""
    if len(study.directions) > 1:
        return None
    best = best_trial(study)
    records = best.user_attrs.get(RECORDS_ATTR, [])
    if len(records) != 1:
        return None
    try:
        record = read_record(records[0])
    except OSError:  # run on another machine of a shared study
        return None
    n = record["scores"]["validation"].get("n")
    if record["task"]["primary_metric"] not in PROPORTION_METRICS or not n:
        return None
    error = standard_error(best.value, n, adjusted=True)  # as the results table gives it
    ties = [t for t in trained_trials(study) if t.number != best.number and t.value >= best.value - error]
    return error, n, sorted(ties, key=lambda t: -t.value)


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names as its command gave them (`score`, `trainable_params`...)."""
    return study.user_attrs.get(DEFINITION_ATTR, {}).get("objective", ["score", "cost"][:len(study.directions)])
