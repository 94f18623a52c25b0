"""A search's summary as the terminal prints it: trials by how they ended, the best config, its ties,
the Pareto front and the failures."""

from __future__ import annotations

import optuna

from search.repeats import REPEAT_OF_ATTR
from search.study import DONE, FAIL_REASON_ATTR, INTERRUPTED, INTERRUPTED_SAID, NOT_RUN_ATTR
from search.trial_lines import config_text, cost_figure, listed_by_reason, said_values
from search.winner import best_trial, objective_names, pareto_front, statistical_ties


def summary(study: optuna.Study) -> str:
    states = optuna.trial.TrialState
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in states}
    failed = study.get_trials(deepcopy=False, states=(states.FAIL,))
    counts["not run"] = sum(NOT_RUN_ATTR in t.user_attrs for t in failed)
    counts["fail"] -= counts["not run"]  # ended before running anything: not a failure of a config
    finished = sum(counts[s.name.lower()] for s in DONE)
    ended = ", ".join(f"{state} {counts[state]}" for state in ("complete", "pruned") if counts[state])
    line = f"study {study.study_name}: {finished} finished {_trials(finished)}" + (f" ({ended})" if ended else "")
    repeats = [t.number for t in study.get_trials(deepcopy=False, states=(states.COMPLETE,))
               if REPEAT_OF_ATTR in t.user_attrs]
    if repeats:
        shown = ", ".join(map(str, repeats[:10])) + (" ..." if len(repeats) > 10 else "")
        line += (f", of which {len(repeats)} ({shown}) sampled a config an earlier trial had completed and "
                 "took its result without training")
    for state, said in (("fail", "failed"), ("not run", "not run")):
        if counts[state]:
            line += f"; {counts[state]} {said} (not counted)"
    if counts["running"]:
        line += f"; {counts['running']} running"
    if counts["waiting"]:
        line += f"; {counts['waiting']} queued (starting points not run yet)"
    lines = [line]
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        if counts["pruned"]:  # nothing to hand over: say why, and what would let a trial finish
            lines.append(f"no trial completed, so there is no best config: {counts['pruned']} stopped early (each "
                         "trial's pruned_reason in trials.csv says where); a larger --prune-margin stops fewer, "
                         "--pruner none stops none")
        return "\n".join(lines + _failures(study))
    trial = best_trial(study)
    lines.append(f"best: trial {trial.number} ({said_values(study, trial.values)}): {config_text(trial)}")
    ties = statistical_ties(study)
    if ties:
        lines.append(_ties_line(*ties))
    if len(study.directions) > 1:  # best.yaml holds the front's best score; the cheaper trade-offs are these
        front, cost = pareto_front(study), objective_names(study)[1]
        lines.append(f"Pareto front ({', '.join(objective_names(study))}), {len(front)} {_trials(len(front))}: "
                     + ", ".join(f"{t.number} ({t.values[0]:.4f}, {cost_figure(cost, t.values[1])})" for t in front))
    return "\n".join(lines + _failures(study))


def _trials(count: int) -> str:
    return "trial" if count == 1 else "trials"


KILLED = "its process stopped without a word (killed, or out of memory): no heartbeat"


def _failures(study: optuna.Study, shown: int = 5) -> list[str]:
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    # a trial failed with no reason stored is one whose process died (killed, out of memory): its
    # heartbeat went stale, and the storage failed it on the next start
    lines = [f"failed (not counted): trial {t.number} {config_text(t)}: "
             + _said(t.user_attrs.get(FAIL_REASON_ATTR, KILLED))
             for t in failed if NOT_RUN_ATTR not in t.user_attrs][-shown:]
    # workers raced for the last slots or for a starting point: nothing of these trials ran
    not_run = [(t.number, t.user_attrs[NOT_RUN_ATTR]) for t in failed if NOT_RUN_ATTR in t.user_attrs]
    return lines + [f"not run (not counted): {line}" for line in listed_by_reason(not_run)]


def _said(reason: str) -> str:
    return INTERRUPTED_SAID if reason == INTERRUPTED else reason


def _ties_line(error: float, n: int, tied: list[optuna.trial.FrozenTrial]) -> str:
    within = f"within one standard error ({error:.3f}, n={n} validation examples) of the best"
    if not tied:
        return f"no other trial {within}"
    listed = ", ".join(f"{t.number} ({t.value:.4f})" for t in tied[:10]) + (" ..." if len(tied) > 10 else "")
    return (f"{len(tied)} other {_trials(len(tied))} {within}: {listed}; the validation set cannot tell them "
            "apart (compare their costs, the cost_* columns of trials.csv)")
