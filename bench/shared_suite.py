"""A suite shared by many machines through one Optuna study: each planned run is a queued trial.

Every machine runs the same `spbench bench --suite NAME --storage URL`. Queued (WAITING) trials
are handed out once each by the storage; a machine killed mid-run leaves its trial failed
(heartbeat) and Optuna's RetryHeartbeatStaleTrialCallback queues it again; a run that raised is
queued again when the command is rerun. Each finished run's record, and each failure's reason, is
kept on its trial, so `spbench results --storage URL` sees the runs of every machine.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from bench.device import compute_precision
from bench.interrupts import quiet_trial_failures
from bench.models import ModelPool
from bench.record import RunRecord, results_folder
from bench.suite import Suite, SuiteError
from bench.suite_runner import describe, run_planned
from tasks.notices import UserNotice, counted, first_line

RECORD_ATTR, RUN_ATTR, FAILURE_ATTR = "record", "run_id", "failure"
PASSED_OVER_ATTR = "passed_over"  # why a trial ended without running its run (queued twice, or by another plan)
QUEUED_ATTR = "runs_queued"  # on the study, once its creator has queued every run
PRECISION_ATTR = "precision"  # on the study: the device/dtype its creator computes in (see compute_precision)
QUEUEING_WAIT_SECONDS = 60  # how long a machine joining waits for the creator to finish queueing
SEARCH_RECORDS_ATTR = "run_records"  # a search trial's records, one per task, for machines without its files


def study_name(suite: Suite) -> str:
    return f"suite-{suite.name}"


def open_suite_study(suite: Suite, url: str) -> optuna.Study:
    from bench.study_storage import open_storage, optuna_warnings_only

    storage = open_storage(url, retry_failed=2)
    try:  # the machine that creates the study queues the runs; the others find them queued
        with optuna_warnings_only():  # its "A new study created": the suite's own lines say what runs
            study = optuna.create_study(study_name=study_name(suite), storage=storage, direction="maximize")
        study.set_user_attr(PRECISION_ATTR, compute_precision())
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name(suite), storage=storage)
        _check_is_a_suites(study)
        _wait_for_queueing(study)  # else a machine joining a few seconds late queues the runs a second time
        _check_precision(study)  # set by the creator before it queues: read once the runs are queued
        # a killed machine's run is queued again now: left to the workers' own checks, the last run of
        # a suite would wait forever, as no worker starts while nothing is queued
        optuna.storages.fail_stale_trials(study)
        # a rerun: runs that failed are queued again, as a local suite's rerun redoes them (and runs
        # not queued at all, when the creator died mid-queueing). A machine joining late cannot be
        # told from a rerun, so it too gives each failed run one more try.
        taken = {t.user_attrs.get(RUN_ATTR) for t in study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))}
        _enqueue(study, suite, skip=taken)
        return study
    _enqueue(study, suite, skip=set())
    return study


def _check_precision(study: optuna.Study) -> None:
    """Refuse to join a study whose runs compute on another device or in another dtype: their run ids
    differ (a GPU's bf16 run is another run than a CPU's fp32 one), so this machine would find none
    of the queued runs in its plan and run the whole suite again."""
    theirs, ours = study.user_attrs.get(PRECISION_ATTR), compute_precision()
    if theirs is not None and theirs != ours:  # a study from before it was kept is not checked
        raise SuiteError(f"study {study.study_name} runs in {theirs}, and this machine computes in {ours}: its runs "
                         "would be other runs; machines of one shared suite must compute alike (give this machine's "
                         "runs a storage or suite name of their own)")


def _check_is_a_suites(study: optuna.Study) -> None:
    """Refuse a study of that name holding trials that are no suite's runs (a search named
    `suite-…`): its runs queued there would be taken for the search's failed trials and starting points."""
    trials = study.get_trials(deepcopy=False)
    if trials and not any(RUN_ATTR in trial.user_attrs for trial in trials):
        raise SuiteError(f"study {study.study_name} holds {counted(len(trials), 'trial')}, none of them a suite's run "
                         "(a search's, or another program's): give the suite another name, or the search another "
                         "--study")


def _wait_for_queueing(study: optuna.Study) -> None:
    if QUEUED_ATTR in study.user_attrs:
        return
    print(f"waiting up to {QUEUEING_WAIT_SECONDS} s for the machine that created study {study.study_name} to "
          "queue its runs", file=sys.stderr, flush=True)
    deadline = time.monotonic() + QUEUEING_WAIT_SECONDS
    while QUEUED_ATTR not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(1)


def _enqueue(study: optuna.Study, suite: Suite, *, skip: set) -> None:
    for index, run in enumerate(suite.runs):
        if run.spec.run_id() not in skip:
            study.enqueue_trial({"run": index}, user_attrs={RUN_ATTR: run.spec.run_id()})
    study.set_user_attr(QUEUED_ATTR, True)


class _QueueEmpty(Exception):
    """No queued run was left when this trial started (another machine took the last one)."""


def run_shared_suite(suite: Suite, url: str, *, progress: bool = False) -> SharedOutcome:
    """This machine's share of the suite's runs; `progress`: a line per run it finishes, and each
    run's own progress."""
    study = open_suite_study(suite, url)  # a storage that cannot open is named before a folder is made
    results_folder(suite.results_dir)
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
            raise _passed_over(trial, f"run {run_id} is already done or running in trial {taken[0].number}")
        if run_id not in by_id:  # queued by a plan of another version of the suite (a run since left out)
            warnings.warn(f"study {trial.study.study_name}: run {run_id} is not in this suite's plan (another version "
                          "of the suite queued it: the file changed since, or differs on another machine): passed over",
                          UserNotice, stacklevel=2)
            raise _passed_over(trial, f"run {run_id} is not in this suite's plan")
        run = by_id[run_id]
        if progress:
            print(f"trial {trial.number}: {describe(run)}{_tried_before(trial.study, run_id, trial.number)}",
                  file=sys.stderr, flush=True)
        ended = run_planned(run, pool, progress=progress)
        if progress:
            print(f"trial {trial.number}: {ended.line()}", file=sys.stderr, flush=True)
        if ended.failure is not None:
            trial.set_user_attr(FAILURE_ATTR, ended.failure)  # `spbench results --storage` reports it from any machine
            failures.append((ended.failure["run"], ended.failure["reason"]))
            raise ended.error  # the trial fails with the run's own error
        trial.set_user_attr(RECORD_ATTR, ended.record)
        return ended.record["scores"]["validation"][ended.record["task"]["primary_metric"]]

    def stop_when_queue_empty(study: optuna.Study, _trial) -> None:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    # a failed run's own line says why (and the summary again), a queue left empty or Ctrl-C is said
    # by the command: Optuna's lines about such trials would only repeat them
    quiet_trial_failures(silent=(Exception, KeyboardInterrupt))
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        from bench.study_storage import optuna_warnings_only

        with optuna_warnings_only():
            study.optimize(objective, callbacks=[stop_when_queue_empty], catch=(Exception,))
    # this plan's runs only: the study also holds runs of the suite as it was written before (other steps, say)
    def runs_in(state: TrialState) -> set[str]:
        return {t.user_attrs.get(RUN_ATTR) for t in study.get_trials(deepcopy=False, states=(state,))} & set(by_id)

    done = runs_in(TrialState.COMPLETE)
    running = runs_in(TrialState.RUNNING) - done  # a run queued twice may show a trial running after it completed
    return SharedOutcome(len(done), len(running), failures, not_done=len(set(by_id) - done - running))


def _passed_over(trial: optuna.Trial, reason: str) -> _QueueEmpty:
    """The trial's end where it runs nothing, kept on it: no failure of its run."""
    trial.set_user_attr(PASSED_OVER_ATTR, reason)
    return _QueueEmpty(reason)


def _tried_before(study: optuna.Study, run_id: str, number: int) -> str:
    """", again: trial 5 failed (…)" where an earlier trial of this run failed: a killed machine's run
    queued again, or a failed run given another try by a rerun."""
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if t.user_attrs.get(RUN_ATTR) == run_id and t.number < number and PASSED_OVER_ATTR not in t.user_attrs]
    if not failed:
        return ""
    last = failed[-1]
    reason = first_line((last.user_attrs.get(FAILURE_ATTR) or {}).get("reason")) or \
        "its machine was killed, or lost its connection"
    return f" (again: trial {last.number} of this run failed: {reason})"


@dataclass
class SharedOutcome:
    done: int  # runs completed in the study, by any machine
    running: int  # runs other machines are still training
    failed: list[tuple[str, str]]  # (run, reason) of this machine's failures
    not_done: int = 0  # runs of this plan neither complete nor running: failed, passed over by another plan, or
    # queued again by another machine after this one stopped


def runs_done_in_study(suite: Suite, url: str) -> set[str]:
    """The run ids of the suite a shared study has completed (none where the study does not exist yet,
    nor its SQLite file: a dry run makes none)."""
    from bench.study_storage import missing_sqlite_file, open_storage

    if missing_sqlite_file(url):
        return set()
    storage = open_storage(url)
    if study_name(suite) not in optuna.get_all_study_names(storage):
        return set()
    study = optuna.load_study(study_name=study_name(suite), storage=storage)
    _check_is_a_suites(study)  # the run itself would be refused
    return {t.user_attrs.get(RUN_ATTR) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}


def records_from_study(url: str, name: str) -> tuple[list[RunRecord], list[dict]]:
    """The run records kept in a study (one per trial of a shared suite, one per task of a search
    trial), and the failures of a shared suite's runs that no trial has completed."""
    from bench.study_storage import open_storage

    storage = open_storage(url, existing_file=True)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        held = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise ValueError(f"no study named {name!r} in that storage (its studies: {held})") from None
    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if RECORD_ATTR in trial.user_attrs:
            records.append(trial.user_attrs[RECORD_ATTR])
        records.extend(trial.user_attrs.get(SEARCH_RECORDS_ATTR, []))
    completed = {record.get("run_id") for record in records}
    failures = {trial.user_attrs[FAILURE_ATTR]["run_id"]: trial.user_attrs[FAILURE_ATTR]
                for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                if FAILURE_ATTR in trial.user_attrs}  # the latest failure of each run
    return records, [failure for run_id, failure in failures.items() if run_id not in completed]
