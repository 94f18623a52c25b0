"""One line for each trial as it ends, in the search's words: Optuna's own log line gives the space's
parameter keys, says nothing of why a trial was pruned, and repeats the study's name on resume. Also
trials named by number, as every line of the search names them (`trials 0, 2: reason`)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from bench.config_labels import method_label, settings_as_run, settings_without_effect_in, shown_settings
from search.repeats import CONFIG_ATTR, REPEAT_OF_ATTR
from search.study import PRUNED_REASON_ATTR, score_label
from search.winner import best_trial, objective_names


def config_text(trial: optuna.trial.FrozenTrial) -> str:
    """A trial's config as tables label its run (`p_tuning[encoder=mlp,...,lr=0.01]`), with any other
    training setting it sampled; its raw parameters where it never sampled one."""
    config = trial.user_attrs.get(CONFIG_ATTR)
    if not config or not {"method", "settings", "train"} <= set(config):
        return str(config or trial.params)
    # every setting, defaults too, as the tables label the trial's run
    settings = settings_as_run(config["method"], config["settings"])
    shown = shown_settings(settings, settings_without_effect_in(config["method"], settings))
    return method_label(config["method"], shown + sorted(config["train"].items()))


SLOW_TRIAL_SECONDS = 60  # trials at least this long are announced as they start, not only as they end


class TrialLines:
    """The study callback that prints a completed or pruned trial's line (a failed one's is Optuna's
    warning); `worker` prefixes them where several processes share the search (the command's own is 0)."""

    def __init__(self, worker: int | None = None):
        self.prefix = f"worker {worker}: " if worker is not None else ""
        self.slow = True  # until a trial has shown it: the first one may take minutes (a generation task's)

    def started(self, trial: optuna.Trial) -> None:
        """Say that a trial started training, where trials take long enough that its end may be minutes off."""
        if self.slow:
            print(f"{self.prefix}trial {trial.number} started: {config_text(trial)}", flush=True)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        line = trial_line(study, trial)
        if line:
            print(self.prefix + line, flush=True)
        # a trial trained to its end tells how long the next may take (a repeat trained nothing, a pruned one part)
        if trial.duration and trial.state == TrialState.COMPLETE and REPEAT_OF_ATTR not in trial.user_attrs:
            self.slow = trial.duration.total_seconds() >= SLOW_TRIAL_SECONDS


def trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
    took = f" in {trial.duration.total_seconds():.0f} s" if trial.duration else ""
    if trial.state == TrialState.PRUNED:
        reason = trial.user_attrs.get(PRUNED_REASON_ATTR, "pruned")
        reason = reason if reason.startswith("pruned") else f"pruned: {reason}"  # a diverging loss's, say
        return f"trial {trial.number} {reason}{took}: {config_text(trial)}"
    if trial.state != TrialState.COMPLETE:
        return None
    if REPEAT_OF_ATTR in trial.user_attrs:
        return (f"trial {trial.number} sampled trial {trial.user_attrs[REPEAT_OF_ATTR]}'s config and took its "
                f"result without training: {config_text(trial)}")
    if len(study.directions) > 1:
        return f"trial {trial.number} complete: {said_values(study, trial.values)}{took}: {config_text(trial)}"
    best = best_trial(study)  # the trial that ran the best config, where a later one repeated it
    so_far = "the best so far" if best.number == trial.number else f"best so far trial {best.number}, {best.value:.4f}"
    return (f"trial {trial.number} complete: {score_label(study)} {trial.value:.4f} ({so_far}){took}: "
            f"{config_text(trial)}")


# whole numbers, said with thousands separators
COUNTED_COSTS = ("trainable_params", "peak_memory_bytes", "artifact_bytes")


def said_values(study: optuna.Study, values) -> str:
    """A trial's objective values in words: its validation score by the metric's name, a cost by its own
    (`validation accuracy 0.8125, trainable_params 25,350`)."""
    def said(name: str, value: float) -> str:
        return f"{score_label(study)} {value:.4f}" if name == "score" else f"{name} {cost_figure(name, value)}"
    return ", ".join(said(name, value) for name, value in zip(objective_names(study), values))


def cost_figure(name: str, value: float) -> str:
    return f"{value:,.0f}" if name in COUNTED_COSTS else f"{value:.4g}"


def listed_by_reason(pairs) -> list[str]:
    """`trials 0, 2: reason`, one line per reason (in order of first appearance), from (number, reason) pairs."""
    by_reason: dict[str, list[int]] = {}
    for number, reason in pairs:
        by_reason.setdefault(reason, []).append(number)
    return [f"{numbered('trial', numbers)}: {reason}" for reason, numbers in by_reason.items()]


def numbered(noun: str, numbers: list[int]) -> str:
    """`trial 4` or `trials 0, 2`."""
    return f"{noun}{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"
