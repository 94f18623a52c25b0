"""A suite shared by many machines through one Optuna study: each planned run is a queued trial.

Every machine runs the same `spbench bench --suite NAME --storage URL`. Queued (WAITING) trials
are handed out once each by the storage; a machine killed mid-run leaves its trial failed
(heartbeat) and Optuna's RetryHeartbeatStaleTrialCallback queues it again. Each finished run's record is
kept on its trial, so `spbench results --storage URL` sees the runs of every machine.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from bench.models import ModelPool
from bench.record import RunRecord
from bench.run import execute_run
from bench.suite import Suite

RECORD_ATTR, RUN_ATTR = "record", "run_id"
SEARCH_RECORDS_ATTR = "run_records"  # a search trial's records, one per task, for machines without its files


def study_name(suite: Suite) -> str:
    return f"suite-{suite.name}"


def open_suite_study(suite: Suite, url: str) -> optuna.Study:
    from search.study import open_storage

    storage = open_storage(url, retry_failed=2)
    try:  # the machine that creates the study queues the runs; the others find them queued
        study = optuna.create_study(study_name=study_name(suite), storage=storage, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name(suite), storage=storage)
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)):
            return study  # being queued right now by its creator, or finished and failed: nothing to add
        queued = {t.user_attrs.get(RUN_ATTR) for t in study.get_trials(deepcopy=False)}
        _enqueue(study, suite, skip=queued)  # a rerun after the creator died mid-queueing
        return study
    _enqueue(study, suite, skip=set())
    return study


def _enqueue(study: optuna.Study, suite: Suite, *, skip: set) -> None:
    for index, run in enumerate(suite.runs):
        if run.spec.run_id() not in skip:
            study.enqueue_trial({"run": index}, user_attrs={RUN_ATTR: run.spec.run_id()})


class _QueueEmpty(Exception):
    """No queued run was left when this trial started (another machine took the last one)."""


def run_shared_suite(suite: Suite, url: str) -> tuple[int, list[tuple[str, str]]]:
    study = open_suite_study(suite, url)
    pool, by_id = ModelPool(), {run.spec.run_id(): run for run in suite.runs}
    failures: list[tuple[str, str]] = []

    def objective(trial: optuna.Trial) -> float:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id is None:
            trial.study.stop()
            raise _QueueEmpty("no queued run left")
        taken = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.user_attrs.get(RUN_ATTR) == run_id and t.number < trial.number]
        if taken:  # queued twice by racing reruns: the earlier trial owns the run
            raise _QueueEmpty(f"run {run_id} is already done or running in trial {taken[0].number}")
        run = by_id[run_id]
        try:
            record = execute_run(run.spec, pool=pool)
        except Exception as err:
            failures.append((run_id, f"{type(err).__name__}: {err}"))
            raise
        trial.set_user_attr(RECORD_ATTR, record)
        return record["scores"]["validation"][record["task"]["primary_metric"]]

    def stop_when_queue_empty(study: optuna.Study, _trial) -> None:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.optimize(objective, callbacks=[stop_when_queue_empty], catch=(Exception,))
    done = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return done, failures


def records_from_study(url: str, name: str) -> list[RunRecord]:
    """The run records kept in a study: one per trial of a shared suite, one per task of a search trial."""
    study = optuna.load_study(study_name=name, storage=url)
    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if RECORD_ATTR in trial.user_attrs:
            records.append(trial.user_attrs[RECORD_ATTR])
        records.extend(trial.user_attrs.get(SEARCH_RECORDS_ATTR, []))
    return records
