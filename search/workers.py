"""The worker loop: trials run within the study's budget by this process and its worker processes,
failures kept with their reasons, interrupts and killed workers handled."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from bench import study_storage as storage
from bench.device import worker_share
from bench.errors import SettingsError
from bench.interrupts import hold_interrupts, interrupt_on, interrupted_by, interrupts_restored, quiet_trial_failures
from bench.models.registry import ModelError
from bench.user_warnings import show_warnings_to_users
from search.space import NoPromptFits
from search.starting_points import requeue_starting_point
from search.strategy import Strategy
from search.study import DONE, FAIL_REASON_ATTR, INTERRUPTED, NOT_RUN_ATTR, WORKER_ATTR, done_trials
from search.trial_lines import TrialLines, listed_by_reason, numbered
from search.worker_id import take_worker_id
from tasks.card import TaskCardError

INTERRUPT_GRACE_SECONDS = 10  # for workers to mark their interrupted trials failed
INTERRUPTED_EXIT = 130  # a process stopped by SIGINT, as shells report it
# what a worker is stopped with, as at Ctrl-C: not SIGINT, which a command started in the background
# of a script (`spbench search ... &`) and its workers inherit as ignored
STOP_SIGNAL = signal.SIGTERM
STOPPED_EXIT = 128 + STOP_SIGNAL  # a worker that STOP_SIGNAL stopped, as shells report it


class BudgetReached(Exception):
    """This trial would exceed the study's trial budget (another worker got there first)."""


class SearchError(ValueError):
    """Trials keep failing: the search stops instead of failing every trial it has left."""


FAILURES_IN_A_ROW = 5  # a config the model cannot take fails one trial; this many in a row is not the config
# errors about the model, the task or a space none of whose configs the model takes: the search stops at the first
NOT_THE_CONFIG = (ModelError, TaskCardError, NoPromptFits)


class StartingPointTaken(Exception):
    """This trial's queued starting point already ran in an earlier trial (queued twice)."""


HOLDING_A_SLOT = DONE + (TrialState.RUNNING,)  # a trial in these states takes one of the budget's n_trials


class _Guarded:
    """The objective, started only while fewer than `n_trials` earlier trials are finished or
    running, with the reason of a failed trial kept on it.

    Trial numbers are handed out atomically by the storage, so workers racing for the last slots
    agree on which trials count; a surplus trial ends as FAIL with the reason, and is not done (a
    starting point it took from the queue is queued again). Machines starting one study together
    can each queue the starting points; a point an earlier trial ran is skipped the same way.
    """

    def __init__(self, objective, n_trials: int | None):
        self.objective, self.n_trials = objective, n_trials
        self.fatal: str | None = None

    def __call__(self, trial: optuna.Trial):
        # an interrupted trial is still RUNNING until Optuna marks it failed: it neither holds a slot
        # nor has run its starting point (queued again)
        trials = [t for t in trial.study.get_trials(deepcopy=False)
                  if t.number == trial.number or t.user_attrs.get(FAIL_REASON_ATTR) != INTERRUPTED]
        queued = next(t for t in trials if t.number == trial.number).system_attrs.get("fixed_params")
        earlier = [t for t in trials if t.number < trial.number and t.state in HOLDING_A_SLOT]
        self._refuse_taken_point(trial, earlier, queued)
        self._refuse_over_budget(trial, earlier, queued)
        return self._run(trial, queued)

    @staticmethod
    def _refuse_taken_point(trial: optuna.Trial, earlier: list, queued: dict | None) -> None:
        """A starting point queued twice (by machines starting the study together) runs once."""
        taken = [t.number for t in earlier if queued and t.system_attrs.get("fixed_params") == queued]
        if taken:
            raise _not_run(trial, StartingPointTaken(f"starting point {queued} already run by trial {taken[0]}"))

    def _refuse_over_budget(self, trial: optuna.Trial, earlier: list, queued: dict | None) -> None:
        """Every slot is held: this worker stops, and the starting point the trial took is queued again."""
        if self.n_trials is None or len(earlier) < self.n_trials:
            return
        if queued:
            trial.study.enqueue_trial(queued)
        trial.study.stop()
        raise _not_run(trial, BudgetReached(f"the study already holds {self.n_trials} finished or running trials"))

    def _run(self, trial: optuna.Trial, queued: dict | None):
        try:
            return self.objective(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            hold_interrupts()
            trial.set_user_attr(FAIL_REASON_ATTR, INTERRUPTED)
            if queued:  # a starting point is queued once: put it back, or the resumed study never runs it
                trial.study.enqueue_trial(queued)
            raise
        except Exception as err:
            trial.set_user_attr(FAIL_REASON_ATTR, f"{type(err).__name__}: {err}")
            if isinstance(err, NOT_THE_CONFIG):  # every trial would fail the same way: stop now
                self.fatal = f"trial {trial.number}: {type(err).__name__}: {err}"
                trial.study.stop()
            raise


def _not_run(trial: optuna.Trial, reason: Exception) -> Exception:
    """`reason`, kept on a trial failed before it ran anything (not a failure of its config)."""
    trial.set_user_attr(NOT_RUN_ATTR, str(reason))
    return reason


class _StopOnRepeatedFailures:
    """Stops this worker once its last FAILURES_IN_A_ROW trials all failed, keeping their reasons."""

    def __init__(self):
        self.failed: list[tuple[int, str]] = []  # (trial number, reason), the failures in a row so far

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if NOT_RUN_ATTR in trial.user_attrs:  # ended before its config ran: says nothing either way
            return
        reason = trial.user_attrs.get(FAIL_REASON_ATTR)
        self.failed = self.failed + [(trial.number, reason)] if trial.state == TrialState.FAIL and reason else []
        if len(self.failed) >= FAILURES_IN_A_ROW:
            study.stop()

    def describe(self) -> str:
        return "; ".join(listed_by_reason(self.failed))


def _has_room(study: optuna.Study, n_trials: int) -> bool:
    return len(study.get_trials(deepcopy=False, states=HOLDING_A_SLOT)) < n_trials


def optimize(study: optuna.Study, objective, *, n_trials: int | None, timeout: float | None,
             worker: int | None = None) -> None:
    """Run trials until the study holds `n_trials` finished (complete or pruned) trials.

    A trial that raises is marked failed, with its reason, and the search goes on (a config the
    model cannot take, such as a prompt longer than its positions); FAILURES_IN_A_ROW failures in a
    row, or an error about the model or the task, raise SearchError. When the last slots are held
    by running trials, this worker waits up to the heartbeat grace period rather than leave the
    budget short: a killed process's trial is then marked failed and its slot taken here (a live
    worker's trial finishes, and the budget with it); the command's own process says so (one line
    a command, not one a worker). Each trial's line, as it ends, is prefixed with its `worker`'s index
    where there are several (None: this process is the only one)."""
    deadline = time.monotonic() + timeout if timeout else None
    # their one line says it all (a config's own refusal too: too many virtual tokens for the model, say);
    # a trial that found its slot or starting point taken ran nothing, and the summary counts it; one
    # interrupted is named by the command's own line and the summary
    quiet_trial_failures(*NOT_THE_CONFIG, SettingsError, silent=(BudgetReached, StartingPointTaken, KeyboardInterrupt))
    failures = _StopOnRepeatedFailures()
    lines = TrialLines(worker)
    if hasattr(objective, "on_start"):  # the search's objective (a test's plain function has none)
        objective.on_start = lines.started
    callbacks = [failures, lines]
    callbacks += [optuna.study.MaxTrialsCallback(n_trials, states=DONE)] if n_trials else []
    patience = None  # until then, running trials may still turn out to be a killed process's
    silent: set[int] = set()  # running trials without a heartbeat as the wait began
    while not (n_trials and done_trials(study) >= n_trials):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        if not n_trials or _has_room(study, n_trials):
            guarded = _Guarded(objective, n_trials)
            # Optuna has marked an interrupted trial failed by the time it raises
            with interrupts_restored(), storage.optuna_warnings_only():
                study.optimize(guarded, timeout=left, callbacks=callbacks, catch=(Exception,), gc_after_trial=True)
            if guarded.fatal:
                raise SearchError(f"study {study.study_name!r} stopped: {guarded.fatal}")
            if len(failures.failed) >= FAILURES_IN_A_ROW:
                raise SearchError(f"study {study.study_name!r}: the last {FAILURES_IN_A_ROW} trials failed; "
                                  + failures.describe())
            if not n_trials:
                return
            patience = None  # trials ran: the slots they leave held may be a newly killed process's
            continue
        # the budget's last slots are held by running trials: wait for them, or for their heartbeats to go stale
        if patience is None:
            wait = storage.GRACE_SECONDS + 2 * storage.HEARTBEAT_SECONDS
            patience = time.monotonic() + wait
            silent = storage.running_without_heartbeat(study)
            if not worker:
                print(f"the budget's last trials are running: waiting up to {wait} s for them to finish, or for a "
                      "killed process's trial to be marked failed and its slot taken here", flush=True)
        if time.monotonic() > patience:
            # silent all along: a process killed as it took its trial, before the trial's first heartbeat
            if dead := _fail_trials(study, silent & storage.running_without_heartbeat(study)):
                if not worker:
                    print(f"{numbered('trial', dead)} sent no heartbeat in {wait} s (its process stopped as it "
                          "began): marked failed, its slot taken here", flush=True)
                patience = None
                continue
            return  # live workers' trials: they finish the budget themselves
        time.sleep(storage.HEARTBEAT_SECONDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def _fail_running_trials_of(study: optuna.Study, worker: str) -> list[int]:
    """Mark failed the trials the worker process of id `worker` (killed) left running; their numbers."""
    return _fail_trials(study, {trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                                if trial.user_attrs.get(WORKER_ATTR) == worker})


def _fail_trials(study: optuna.Study, numbers: set[int]) -> list[int]:
    """Mark failed these running trials of dead processes, putting a starting point back in the
    queue, as a stale heartbeat would (and as Optuna's own sweep does it, leaving a trial another
    process failed meanwhile alone); the numbers of those failed here."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number not in numbers:
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        requeue_starting_point(study, trial)
        failed.append(trial.number)
    return failed


def stop_with_parent(parent: int) -> None:
    """Have this process interrupted (as Ctrl-C would) by STOP_SIGNAL, which its command passes a
    Ctrl-C on with, and sent it when `parent` ends (Linux only): a command killed with SIGKILL
    cannot pass the signal on, and its workers would train on unseen."""
    interrupt_on(STOP_SIGNAL)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, STOP_SIGNAL)
    if os.getppid() != parent:  # it ended before the request was made
        os.kill(os.getpid(), STOP_SIGNAL)


@dataclass(frozen=True)
class _WorkerJob:
    """What a worker process is handed (pickled: the processes are spawned)."""
    study_name: str
    url: str
    objective: Any
    strategy: Strategy
    index: int  # this worker's, from 1 (the command's own process is 0)
    workers: int  # all of them, the command's own process included
    n_trials: int | None
    timeout: float | None
    parent: int  # the command's process id: the worker stops when it ends
    worker_id: str  # on the trials it runs


def _worker(job: _WorkerJob) -> None:
    show_warnings_to_users()
    take_worker_id(job.worker_id)
    try:
        stop_with_parent(job.parent)
        opened = storage.open_storage(job.url, on_stale=requeue_starting_point)
        study = optuna.load_study(study_name=job.study_name, storage=opened,
                                  sampler=job.strategy.make_sampler(job.index), pruner=job.strategy.make_pruner())
        with worker_share(job.index, job.workers):
            optimize(study, job.objective, n_trials=job.n_trials, timeout=job.timeout, worker=job.index)
    except SearchError as err:  # the reason, not a traceback of the worker process
        print(f"worker {job.index}: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's group: the main one reports it
        hold_interrupts()  # the command's passing it on, arriving now, would turn this exit into an error's
        # stopped by a signal sent to it alone (a memory guard's SIGTERM, say), not as its command was
        sys.exit(STOPPED_EXIT if interrupted_by() == STOP_SIGNAL else INTERRUPTED_EXIT)


def _killed_by(exitcode: int) -> str | None:
    """The signal a worker process was killed or stopped by, sent to it alone (a memory guard's SIGKILL or
    SIGTERM: its command goes on without it); None where it ended otherwise."""
    if exitcode < 0:
        return signal.Signals(-exitcode).name
    return STOP_SIGNAL.name if exitcode == STOPPED_EXIT else None


def run_workers(study: optuna.Study, url: str, objective, *, strategy: Strategy, workers: int,
                n_trials: int | None, timeout: float | None) -> None:
    """This process plus `workers - 1` more, all pulling trials from the same storage."""
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    jobs = [_WorkerJob(study_name=study.study_name, url=url, objective=objective, strategy=strategy, index=index,
                       workers=workers, n_trials=n_trials, timeout=timeout, parent=os.getpid(),
                       worker_id=uuid.uuid4().hex)
            for index in range(1, workers)]
    others = [context.Process(target=_worker, args=(job,)) for job in jobs]
    for process in others:
        process.start()
    try:
        with worker_share(0, workers):
            optimize(study, objective, n_trials=n_trials, timeout=timeout, worker=0 if others else None)
    except KeyboardInterrupt:
        # a Ctrl-C reached the workers too; a SIGINT sent to this process alone did not: pass it on
        hold_interrupts()  # until the command has written out what finished
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        for process in others:
            process.join(timeout=max(deadline - time.monotonic(), 0))
            if process.is_alive():
                os.kill(process.pid, STOP_SIGNAL)
        raise
    finally:
        for process in others:
            process.join()
    interrupted = [index for index, process in enumerate(others, start=1) if process.exitcode == INTERRUPTED_EXIT]
    killed = [(index, name) for index, process in enumerate(others, start=1)
              if (name := _killed_by(process.exitcode))]
    failed = [index for index, process in enumerate(others, start=1)
              if process.exitcode > 0 and process.exitcode not in (INTERRUPTED_EXIT, STOPPED_EXIT)]
    problems = [f"{numbered('worker', failed)} stopped with an error (printed above)"] if failed else []
    problems += [f"{numbered('worker', interrupted)} interrupted (Ctrl-C or SIGINT)"] if interrupted else []
    for index, name in killed:  # out of memory, say: its trial is failed now, not by a later command
        stranded = _fail_running_trials_of(study, jobs[index - 1].worker_id)
        print(f"worker {index} was killed ({name}): a trial it was running "
              "is not counted" + (f" ({numbered('trial', stranded)}, marked failed)" if stranded else ""),
              file=sys.stderr)
    left = None if timeout is None else timeout - (time.monotonic() - started)
    if killed and not problems and n_trials and done_trials(study) < n_trials and (left is None or left > 0):
        print("running the trials the budget still lacks in this process", file=sys.stderr)
        # on the share the others trained on, so that its time figures compare with theirs
        with worker_share(0, workers, alongside=False):
            optimize(study, objective, n_trials=n_trials, timeout=left, worker=0 if others else None)
    if problems:
        raise SearchError("; ".join(problems))
