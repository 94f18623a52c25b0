"""What a search prints and writes when it ends, or stops: the summary, trials.csv, best.yaml with
the winner's test score, the winner against full fine-tuning, and the plots."""

from __future__ import annotations

import shlex

import optuna
import yaml

from search.export import write_best, write_trials_table
from search.objective import remove_failed_trials_leftovers
from search.plots import write_plots
from search.references import against_full_ft, one_task_reference
from search.request import SearchRequest
from search.summary import summary
from search.trial_lines import numbered


def write_outputs(study: optuna.Study, request: SearchRequest) -> None:
    folder = request.folder
    print(summary(study))
    if removed := remove_failed_trials_leftovers(study, folder):
        print(f"removed the leftovers of failed {numbered('trial', removed)} in {folder / 'trials'} (files of a "
              "run stopped before its record was written): nothing reads them")
    if any(t.state != optuna.trial.TrialState.WAITING for t in study.trials):
        print(f"trials: {write_trials_table(study, folder)}")
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return
    best = write_best(study, folder, model=request.model, train_defaults=request.train, tasks_dirs=request.tasks_dirs)
    print(f"best config: {best}")
    test = yaml.safe_load(best.read_text()).get("test")
    if isinstance(test, dict):  # the winner's adapters were copied here (not where it ran on another machine)
        print(_adapter_line(folder, request.tasks))
    reference = one_task_reference(study, request)
    if against := against_full_ft(study, request, reference):
        print(against)
    if line := _test_line(test):
        print(line)
    for path in write_plots(study, folder / "plots", full_ft=reference.score if reference else None):
        print(f"plot: {path}")


def _adapter_line(folder, tasks: tuple[str, ...]) -> str:
    one = len(tasks) == 1
    adapters = folder / "best_adapter" / (tasks[0] if one else "<task>")
    command = f"spbench predict {shlex.quote(str(folder))}" + ("" if one else " --task TASK")
    return f"best adapter: {adapters} (PEFT format; answer new inputs with `{command}`)"


def _test_line(test) -> str | None:
    """best.yaml's test scores, scored once, for the winner; a machine that did not score them says why instead."""
    if isinstance(test, dict):
        return "test split (scored once, for the winner): " + "; ".join(
            f"{task} " + " ".join(f"{k}={v:.4f}" if k != "n" else f"n={v}" for k, v in scores.items())
            for task, scores in test.items())
    return f"test split: {test}" if test else None
