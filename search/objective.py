"""The objective: a trial samples a config and runs it through the shared run path (a config an
earlier trial completed takes that trial's result instead: see `search.repeats`).

Intermediate validation scores go to Optuna, so the pruner can stop weak trials early (with several
tasks, run one after another, a trial can be stopped on any of them); a run whose loss diverges is
pruned with the reason kept on the trial.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import socket
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import optuna

from bench.config_labels import card_of, precision
from bench.device import compute_precision
from bench.models import ModelPool
from bench.record_folder import SHIPPED_RESULTS, load_records, unfinished_runs
from bench.results import aggregate, best_full_ft
from bench.run import execute_run
from bench.run_checks import PromptTooLong
from bench.run_spec import RunSpec
from bench.shared_suite import SEARCH_RECORDS_ATTR
from bench.train import DivergedError, TrainSettings
from bench.verdict import learned_nothing
from search.pruning import report_with_error
from search.repeats import result_of_repeat
from search.space import NoPromptFits, SearchSpace
from search.study import HOST_ATTR, PRUNED_REASON_ATTR, RECORDS_ATTR, TASKS_ATTR, WORKER_ATTR
from search.worker_id import worker_id



class Reference(NamedTuple):
    """Full fine-tuning's validation score (mean over seeds) and the steps it trained; `learned_nothing`:
    how it compares with answering every example with the commonest class, where it is no better or
    not told apart (None: clear of it, or the records do not say)."""
    score: float
    steps: int
    learned_nothing: str | None = None


def full_ft_references(folder: Path, tasks: list[str], model: str, *, steps: int, eval_size: int | None,
                       batch_size: int | None = None, cards: dict[str, dict] | None = None
                       ) -> dict[str, Reference]:
    """Full fine-tuning's validation score per task for `model` (its mean over seeds), with the
    training steps of its runs, from existing bench records: chosen as `spbench results` chooses a
    reference (`best_full_ft`), among the runs most like the search's trials: of its budget (`steps`,
    `batch_size`) and validation examples (`eval_size`, None: whole splits) where there are any, else
    of its budget, else of its steps, else of any; within the latter three, those scored on the most
    examples. Runs on a training-data budget of their own (`--train-size`, a few-shot setting; the
    search's trials train on the card's) do not count.
    Records of another card or card version than a task's (`cards`: task -> {"version", "card"} as a
    study's definition holds them; another template, data or metric) do not count. The results
    shipped with the project (`results/reference`, trained on 2 CPU cores at another budget) are not
    a user's references, as in `spbench results`."""
    records, _ = load_records(folder, leave_out=SHIPPED_RESULTS) if folder.exists() else ([], [])

    def wanted(record: dict) -> bool:
        task, card = record["task"]["name"], (cards or {}).get(record["task"]["name"])
        # a record from before records named their card is taken to be of the card its name finds now
        same_card = card is None or (card["version"] == record["task"].get("version")
                                     and card["card"] == (card_of(record) or card["card"]))
        of_model = model in (record["model"]["name"], record["model"].get("source"))  # a folder: by its full path
        here = precision(record) in ("", compute_precision())  # computed as this machine's trials are
        card_data = record["train"].get("train_size") is None
        return record["method"]["name"] == "full_ft" and of_model and task in tasks and same_card and here \
            and card_data

    rows = aggregate([record for record in records if wanted(record)], split="validation")
    found = {}
    for task in tasks:
        of_task = [row for row in rows if row.task == task]
        budget = [row for row in of_task if row.steps == steps and batch_size in (None, row.batch_size)]
        for alike in ([row for row in budget if row.eval_size == eval_size], budget,
                      [row for row in of_task if row.steps == steps], of_task):
            # among runs scored on different numbers of examples, those scored on the most: the
            # best of a few-example smoke run is noise, and no reference where a real run exists
            most = max((_examples_scored(row) for row in alike), default=None)
            if (best := best_full_ft(row for row in alike if _examples_scored(row) == most)) is not None:
                found[task] = Reference(best.validation, best.steps, learned_nothing(best))
                break
    return found


def _examples_scored(row) -> float:
    """The validation examples behind a row's score: as its records counted them, else as asked."""
    if row.examples is not None:
        return row.examples
    return math.inf if row.eval_size is None else row.eval_size  # None: whole splits


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only an empty folder goes
    except OSError:
        pass


def trial_folder(results_dir: Path, number: int) -> Path:
    """Where trial `number` keeps its run records and adapters."""
    return results_dir / "trials" / f"trial_{number:04d}"


def remove_failed_trials_leftovers(study: optuna.Study, results_dir: Path) -> list[int]:
    """Remove the runs failed trials left unfinished on this machine: a run stopped after saving its
    adapter (a process killed mid-run, say) keeps it without a record, which nothing reads and tables
    would name as a run to rerun (a failed trial is never resumed: its config runs again as a new
    trial). A finished task's run of a failed trial stays. The trials' numbers."""
    removed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        folder = trial_folder(results_dir, trial.number)
        if not folder.is_dir():
            continue
        unfinished = unfinished_runs(folder)
        for run in unfinished:
            shutil.rmtree(run, ignore_errors=True)
        _remove_if_empty(folder)
        if unfinished:
            removed.append(trial.number)
    return removed


@dataclass
class Objective:
    space: SearchSpace
    tasks: list[str]
    model: str
    train: TrainSettings
    results_dir: Path
    cost: str | None = None  # second objective (minimised) for `score,cost`
    references: dict[str, float] = dataclasses.field(default_factory=dict)
    tasks_dirs: tuple[str, ...] = ()

    def __post_init__(self):
        self.pool = ModelPool()  # base models loaded once per worker process
        self.on_start = None  # called with a trial that trains, once its config is sampled (see TrialLines)

    def _spec(self, task: str, method: str, settings: dict, train: dict, trial: optuna.Trial) -> RunSpec:
        return RunSpec(task=task, model=self.model, method=method, method_settings=settings,
                       train=dataclasses.replace(self.train, **train), tasks_dirs=self.tasks_dirs,
                       results_dir=trial_folder(self.results_dir, trial.number),
                       progress=False, eval_splits=("validation",))

    def _relative(self, task: str, score: float) -> float:
        reference = self.references.get(task)
        return score / reference if reference else score

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        method, settings, train = self.space.sample(trial)
        trial.set_user_attr(TASKS_ATTR, self.tasks)
        configuration = self._spec(self.tasks[0], method, settings, train, trial).configuration()
        if (repeated := result_of_repeat(trial, method, settings, train, configuration=configuration)) is not None:
            return repeated  # the same seeded run would give the same result
        trial.set_user_attr(HOST_ATTR, socket.gethostname())  # where its records and adapter are kept
        trial.set_user_attr(WORKER_ATTR, worker_id())  # which process ran it
        if self.on_start is not None:
            self.on_start(trial)
        prunable = self.cost is None  # Optuna prunes single-objective studies only
        scores, costs, records, kept = [], [], [], []
        for index, task in enumerate(self.tasks):
            # tasks run in the same order in every trial, so step `offset + s` is the same point of
            # the same task in each: the pruner compares like with like across several tasks too
            offset, last = index * self.train.steps, index == len(self.tasks) - 1

            def report(step: int, score: float, examples: int) -> None:
                if prunable:
                    report_with_error(trial, score, offset + step, examples=examples)
                    # a trial that has trained to the end is complete: nothing is left to save by stopping it
                    if not (last and step >= self.train.steps) and trial.should_prune():
                        reason = f"pruned at step {step} of {task} (validation {score:.4f})"
                        trial.set_user_attr(PRUNED_REASON_ATTR, reason)
                        raise optuna.TrialPruned(reason)

            spec = self._spec(task, method, settings, train, trial)
            try:
                record = execute_run(spec, on_eval=report, pool=self.pool)
            except DivergedError as err:
                trial.set_user_attr(PRUNED_REASON_ATTR, str(err))
                raise optuna.TrialPruned(str(err)) from None
            except PromptTooLong as err:
                shortest = self.space.shortest_prompt()
                if shortest is not None and shortest > err.room:  # every trial would fail so: stop at the first
                    fits = f"at most {err.room} fit" if err.room >= 1 else "none fits beside the card's input"
                    raise NoPromptFits(f"{self.space.path}: no prompt length it offers fits task {task!r} on "
                                       f"{self.model!r}: its shortest is {shortest} virtual tokens, and {fits} "
                                       f"(trial {trial.number}: {err})") from None
                raise
            finally:
                _remove_if_empty(Path(spec.results_dir))  # a trial stopped before it saved anything leaves no folder
            metric = record["task"]["primary_metric"]
            scores.append(self._relative(task, record["scores"]["validation"][metric]))
            costs.append(record["cost"][self.cost] if self.cost else 0.0)
            # absolute: a rerun from another working directory must find them
            records.append(str(spec.record_path().resolve()))
            kept.append(record)
        trial.set_user_attr(RECORDS_ATTR, records)
        trial.set_user_attr(SEARCH_RECORDS_ATTR, kept)  # `spbench results --storage` reads them from any machine
        score = statistics.fmean(scores)
        if not math.isfinite(score):
            raise optuna.TrialPruned("non-finite score")
        return (score, statistics.fmean(costs)) if self.cost else score

