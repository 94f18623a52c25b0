"""Studies: storage, sampler and pruner choice, known-good starting points, and the worker loop."""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import socket
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState
from sqlalchemy.engine import URL

from bench.device import worker_share
from bench.interrupts import hold_interrupts, interrupts_restored, quiet_trial_failures
from bench.methods.registry import MethodError
from bench.models.registry import ModelError
from bench.user_warnings import show_warnings_to_users
from bench.yaml_values import is_number
from search.pruning import NoiseAwarePruner
from search.space import SearchSpace, nearest
from tasks.card import TaskCardError
from tasks.notices import first_line

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
# A killed worker's trial is marked failed once its heartbeat is GRACE seconds old.
HEARTBEAT_SECONDS = int(os.environ.get("SPBENCH_HEARTBEAT_SECONDS", "10"))
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS
SCHEMA_ATTEMPTS = 5
INTERRUPT_GRACE_SECONDS = 10  # for workers to mark their interrupted trials failed
INTERRUPTED_EXIT = 130  # a process stopped by SIGINT, as shells report it

# Starting points worth trying first, fitted into a user's narrowed space (see `_fit_to_space`).
KNOWN_GOOD = [
    # Lester et al.'s recipe (class-label init); 0.3 was with Adafactor, AdamW wants ~0.03
    {"method": "prompt_tuning", "num_virtual_tokens": 20, "prompt_tuning.init": "class_labels",
     "prompt_tuning.lr": 0.03},
    {"method": "prompt_tuning", "num_virtual_tokens": 100, "prompt_tuning.init": "sampled_vocab",
     "prompt_tuning.lr": 0.03},
    # PEFT's defaults for P-tuning and prefix tuning
    {"method": "p_tuning", "num_virtual_tokens": 20, "p_tuning.encoder": "mlp", "p_tuning.encoder_hidden_size": 128,
     "p_tuning.lr": 0.01},
    {"method": "prefix_tuning", "num_virtual_tokens": 20, "prefix_tuning.prefix_projection": False,
     "prefix_tuning.lr": 0.01},
]


def storage_url(study_dir: Path, url: str | None) -> str:
    if url:
        return url
    study_dir.mkdir(parents=True, exist_ok=True)
    # built, not pasted: a `?` or `#` in a folder name would end the database path of a pasted URL
    return URL.create("sqlite", database=str((study_dir / "study.db").resolve())).render_as_string()


def check_storage(url: str) -> None:
    """Refuse, with its reason, a storage URL that cannot be opened (not a URL, no driver, no such
    server or folder), before a command makes anything for it."""
    open_storage(url).remove_session()


REQUEUED_ATTR = "requeued_after_kill"
REQUEUES = 2  # a point whose every run gets its process killed (out of memory, say) is not run for ever


def requeue_starting_point(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """For a trial whose process was killed (its heartbeat went stale): a starting point is queued
    once, so put it back, as Ctrl-C does, or the study never runs it (Lester's recipe, say)."""
    queued, requeued = trial.system_attrs.get("fixed_params"), trial.user_attrs.get(REQUEUED_ATTR, 0)
    if queued and requeued < REQUEUES:
        study.enqueue_trial(queued, user_attrs={REQUEUED_ATTR: requeued + 1})


def parsed_storage_url(url: str, *, named: str = "--storage") -> URL:
    """`url` parsed, or refused as not a storage URL (a port that is not a number, say)."""
    try:
        return sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as err:
        raise ValueError(f"{named} {shown_storage(url)}: not a storage URL ({first_line(err)})") from None


def shown_storage(url: str) -> str:
    """A storage URL as messages print it: as typed, without its password."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # not parsed: the password is what runs to the last @
        return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def open_storage(url: str, *, retry_failed: int = 0, on_stale=None, existing_file: bool = False,
                 named: str = "--storage") -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so trials of killed workers are marked failed, not left running.
    `retry_failed` > 0 queues such a trial again (up to that many times); `on_stale(study, trial)`
    is called instead, when given. A URL that cannot be opened is refused with its reason, and,
    `existing_file`, an SQLite file that does not exist (opening it to read would create an empty one);
    errors call the URL by `named` (a study's own database was given by no flag)."""
    parsed = parsed_storage_url(url, named=named)
    database = parsed.database or ""
    if existing_file and parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file:") and not Path(database).is_file():
        raise ValueError(f"{named} {shown_storage(url)}: no such database file "
                         "(reading would create an empty one)")
    try:
        return _open_storage(url, retry_failed=retry_failed, on_stale=on_stale)
    except sqlalchemy.exc.ArgumentError as err:  # NoSuchModuleError too: an unknown scheme
        raise ValueError(f"{named} {shown_storage(url)}: not a storage URL "
                         f"({first_line(err)})") from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, RuntimeError) as err:  # unreachable, no driver, old schema
        folder = Path(database).parent
        missing_folder = parsed.get_backend_name() == "sqlite" and not folder.is_dir()
        hint = f"; its folder {folder} does not exist" if missing_folder else ""
        raise ValueError(f"{named} {shown_storage(url)}: cannot open it "
                         f"({first_line(err)}){hint}") from None


def _open_storage(url: str, *, retry_failed: int, on_stale) -> optuna.storages.BaseStorage:
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    retry = on_stale or (optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retry_failed)
                         if retry_failed else None)

    def connect() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=retry)

    for _ in range(SCHEMA_ATTEMPTS - 1):
        try:
            return connect()
        except sqlalchemy.exc.DatabaseError as err:
            # Workers started together on a fresh database race to create Optuna's tables; the
            # loser's CREATE fails ("already exists") or its schema-version row collides with the
            # winner's (an integrity error), and a second look finds the tables made.
            if not (isinstance(err, sqlalchemy.exc.IntegrityError) or "already exists" in str(err)):
                raise
            time.sleep(random.uniform(0.2, 1.0))
    return connect()


def make_sampler(name: str, *, multi_objective: bool, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2" or (name == "auto" and multi_objective):
        return optuna.samplers.NSGAIISampler(seed=seed)
    # group=True keeps method-specific parameters in their own subspaces; constant_liar keeps
    # parallel workers from proposing the configs of each other's running trials
    return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed, n_startup_trials=8,
                                      constant_liar=True)


def make_pruner(name: str, *, min_steps: int, max_steps: int, margin: float) -> optuna.pruners.BasePruner:
    """The named pruner; with `margin` > 0 it stops a trial only when its score is that many standard
    errors below the score it needed to go on (see search/pruning.py)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        pruner, keep = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_steps), 1 / 2
    elif name == "successive_halving":  # one bracket of Hyperband: rungs at min_steps x 3^k, the top third goes on
        pruner, keep = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_steps, reduction_factor=3), 1 / 3
    else:
        pruner, keep = optuna.pruners.HyperbandPruner(min_resource=min_steps, max_resource=max_steps,
                                                      reduction_factor=3), 1 / 3
    return NoiseAwarePruner(pruner, keep=keep, margin=margin) if margin else pruner


@dataclass(frozen=True)
class Strategy:
    """How a study picks and stops trials. Optuna does not store a study's sampler or pruner, so
    every worker process rebuilds them from this (a process loading the study without them would
    run Optuna's defaults); each worker gets its own seed, or all would propose the same configs."""
    sampler: str
    pruner: str
    multi_objective: bool
    seed: int | None
    min_steps: int
    max_steps: int
    margin: float
    shared_storage: bool = False  # other machines may run the same command on the same study
    # trials the study held when this command started: a resumed study draws anew, not the random
    # start-up draws of the invocation before (the sampler's state is not stored with the study)
    resumed_at: int = 0

    def make_sampler(self, worker: int = 0) -> optuna.samplers.BaseSampler:
        seed = self.seed
        if seed is not None and self.resumed_at:
            seed = zlib.crc32(f"{seed}:resumed at {self.resumed_at}".encode())
        if seed is not None and self.shared_storage:
            # the same command on each machine, or twice on one: seeds differ by host and process
            seed = zlib.crc32(f"{seed}:{socket.gethostname()}:{os.getpid()}".encode())
        return make_sampler(self.sampler, multi_objective=self.multi_objective,
                            seed=None if seed is None else seed + worker)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner, min_steps=self.min_steps, max_steps=self.max_steps, margin=self.margin)


def _fit_to_space(space: SearchSpace, point: dict) -> dict | None:
    """The starting point as trial parameters of this space: numbers clamped into narrowed ranges or
    taken to the nearest offered number, fixed parameters left to the space; None when its method,
    or a choice that is not a number, is not offered. The point names
    parameters as the default space keys them (`num_virtual_tokens`, `<method>.lr`)."""
    method = point["method"]
    if method not in space.methods:
        return None
    params = {p.name: p for p in space.params[method]}
    fitted = {"method": method} if len(space.methods) > 1 else {}
    for key, value in point.items():
        param = params.get(key.rpartition(".")[2])
        if key == "method" or param is None or param.kind == "fixed":
            continue
        if param.kind == "categorical":
            numbers = [c for c in param.choices if is_number(c)]
            if value not in param.choices and not (is_number(value) and numbers):
                return None
            # a number not offered takes the nearest offered one, as a range clamps it
            fitted[param.key(method)] = value if value in param.choices else nearest(numbers, value)
        else:
            fitted[param.key(method)] = type(param.low)(min(max(value, param.low), param.high))
    return fitted


def enqueue_known_good(study: optuna.Study, space: SearchSpace, *, classification: bool) -> None:
    for point in KNOWN_GOOD:
        if not classification and point.get("prompt_tuning.init") == "class_labels":
            continue
        params = _fit_to_space(space, point)
        if params is not None:
            study.enqueue_trial(params, skip_if_exists=True)


def _offered(distribution: optuna.distributions.BaseDistribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"choices {', '.join(map(str, distribution.choices))}"
    scale = "log" if distribution.log else "linear"
    kind = "integers" if isinstance(distribution, optuna.distributions.IntDistribution) else "numbers"
    return f"{kind} on a {scale} scale"


def space_clashes(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Parameters this space offers in a form the study's trials rule out. Optuna keeps one
    distribution per parameter name in a study: ranges may change, but not a categorical's
    choices, a number's scale, or its kind; a trial asking otherwise would fail."""
    stored: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        stored.update(trial.distributions)
    clashes = []
    for key, new in space.distributions().items():
        if key not in stored:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(stored[key], new)
        except ValueError:
            clashes.append(f"{key}: {_offered(stored[key])} in the study, {_offered(new)} now")
    return clashes


def refit_queued_points(study: optuna.Study, space: SearchSpace) -> tuple[int, int]:
    """Starting points still queued were fitted to the space the study had when they were queued: one
    this space cannot take as it is is withdrawn (failed as not run) and queued again fitted to it,
    or dropped when this space does not offer its method or choice. Returns how many were queued
    again and how many dropped."""
    requeued = dropped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        point = trial.system_attrs.get("fixed_params", {})
        prefixed = [key.partition(".")[0] for key in point if "." in key]
        method = point.get("method") or (prefixed[0] if prefixed else space.methods[0])
        refit = _fit_to_space(space, {**point, "method": method})
        if refit == point:
            continue
        study._storage.set_trial_user_attr(trial._trial_id, NOT_RUN_ATTR, "queued under another search space")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if refit is None:
            dropped += 1
        else:
            study.enqueue_trial(refit, skip_if_exists=True)
            requeued += 1
    return requeued, dropped


DEFINITION_ADDED_LATER = {"gradient_checkpointing": False}
# the flag that sets each key of a study's definition, as a refused resume names it
DEFINITION_FLAGS = {"tasks": "--task", "model": "--model", "objective": "--objective", "steps": "--steps",
                    "batch_size": "--batch-size", "eval_every": "--eval-every", "eval_size": "--eval-size",
                    "monitor_size": "--monitor-size (--eval-size unless given)", "seed": "--seed",
                    "gradient_checkpointing": "--gradient-checkpointing",
                    "cards": "--task (the cards the names find, and their versions)"}
# keys whose value in a study recorded before they counted is unknown: the first resume's is kept
RECORDED_ON_FIRST_RESUME = ("seed", "cards")


def claim_study(study: optuna.Study, definition: dict, *, directions: list[str]) -> None:
    """Tie the study to what its trials measure (tasks, model, objective, training budget): a rerun
    with other settings under the same name would mix incomparable trials, or, with another
    objective, fail every trial without end. A new study records the definition; a loaded one must match."""
    stored = study.user_attrs.get("definition")
    if stored is None and not study.trials:
        study.set_user_attr("definition", definition)
        return
    wanted = [d.upper() for d in directions]
    if [d.name for d in study.directions] != wanted:
        raise ValueError(f"study {study.study_name!r} optimizes {[d.name.lower() for d in study.directions]}, "
                         f"this command {directions}: pass another --study name for a new objective")
    unknown = [k for k in RECORDED_ON_FIRST_RESUME if stored and k in definition and k not in stored]
    if unknown:
        stored = {**stored, **{k: definition[k] for k in unknown}}
        study.set_user_attr("definition", stored)
    # a key added to definitions later reads, in a study recorded before, as its default then
    differing = {k: (stored.get(k, DEFINITION_ADDED_LATER.get(k)), v) for k, v in definition.items()
                 if stored and stored.get(k, DEFINITION_ADDED_LATER.get(k)) != v}
    if differing:
        changes = "; ".join(f"{DEFINITION_FLAGS.get(key, key)} {old!r} -> {new!r}"
                            for key, (old, new) in differing.items())
        raise ValueError(f"study {study.study_name!r} holds trials of other settings ({changes}): pass another "
                         "--study name, or the study's own settings to resume it")


def done_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE))


class BudgetReached(Exception):
    """This trial would exceed the study's trial budget (another worker got there first)."""


class SearchError(ValueError):
    """Trials keep failing: the search stops instead of failing every trial it has left."""


FAIL_REASON_ATTR = "fail_reason"
INTERRUPTED = "interrupted (Ctrl-C or SIGINT) before its config was judged"
NOT_RUN_ATTR = "not_run"  # trial user attr: why a trial ended before it ran (budget full, point already run)
FAILURES_IN_A_ROW = 5  # a config the model cannot take fails one trial; this many in a row is not the config
NOT_THE_CONFIG = (ModelError, TaskCardError)  # errors about the model or the task: the search stops at the first


class StartingPointTaken(Exception):
    """This trial's queued starting point already ran in an earlier trial (queued twice)."""


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
        counted = DONE + (TrialState.RUNNING,)
        queued = next(t for t in trials if t.number == trial.number).system_attrs.get("fixed_params")
        taken = [t.number for t in trials if queued and t.number < trial.number and t.state in counted
                 and t.system_attrs.get("fixed_params") == queued]
        if taken:
            raise _not_run(trial, StartingPointTaken(f"starting point {queued} already run by trial {taken[0]}"))
        if self.n_trials is not None and sum(t.number < trial.number and t.state in counted
                                             for t in trials) >= self.n_trials:
            if queued:
                trial.study.enqueue_trial(queued)
            trial.study.stop()
            raise _not_run(trial, BudgetReached(f"the study already holds {self.n_trials} finished or running trials"))
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


def listed_by_reason(pairs) -> list[str]:
    """`trials 0, 2: reason`, one line per reason (in order of first appearance), from (number, reason) pairs."""
    by_reason: dict[str, list[int]] = {}
    for number, reason in pairs:
        by_reason.setdefault(reason, []).append(number)
    return [f"{numbered('trial', numbers)}: {reason}" for reason, numbers in by_reason.items()]


def numbered(noun: str, numbers: list[int]) -> str:
    """`trial 4` or `trials 0, 2`."""
    return f"{noun}{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


def _has_room(study: optuna.Study, n_trials: int) -> bool:
    return len(study.get_trials(deepcopy=False, states=DONE + (TrialState.RUNNING,))) < n_trials


def optimize(study: optuna.Study, objective, *, n_trials: int | None, timeout: float | None) -> None:
    """Run trials until the study holds `n_trials` finished (complete or pruned) trials.

    A trial that raises is marked failed, with its reason, and the search goes on (a config the
    model cannot take, such as a prompt longer than its positions); FAILURES_IN_A_ROW failures in a
    row, or an error about the model or the task, raise SearchError. When the last slots are held
    by running trials, this worker waits up to the heartbeat grace period rather than leave the
    budget short: a killed process's trial is then marked failed and its slot taken here (a live
    worker's trial finishes, and the budget with it)."""
    deadline = time.monotonic() + timeout if timeout else None
    # their one line says it all (a config's own refusal too: too many virtual tokens for the model, say)
    quiet_trial_failures(*NOT_THE_CONFIG, MethodError, BudgetReached, StartingPointTaken)
    failures = _StopOnRepeatedFailures()
    callbacks = [failures] + ([optuna.study.MaxTrialsCallback(n_trials, states=DONE)] if n_trials else [])
    patience = None  # until then, running trials may still turn out to be a killed process's
    while not (n_trials and done_trials(study) >= n_trials):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        if not n_trials or _has_room(study, n_trials):
            guarded = _Guarded(objective, n_trials)
            with interrupts_restored():  # Optuna has marked an interrupted trial failed by the time it raises
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
        patience = patience or time.monotonic() + GRACE_SECONDS + 2 * HEARTBEAT_SECONDS
        if time.monotonic() > patience:  # live workers' trials: they finish the budget themselves
            return
        time.sleep(HEARTBEAT_SECONDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def _worker(study_name: str, url: str, objective, strategy: Strategy, index: int, workers: int,
            n_trials: int | None, timeout: float | None) -> None:
    show_warnings_to_users()
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url, on_stale=requeue_starting_point),
                                  sampler=strategy.make_sampler(index), pruner=strategy.make_pruner())
        with worker_share(index, workers):
            optimize(study, objective, n_trials=n_trials, timeout=timeout)
    except SearchError as err:  # the reason, not a traceback of the worker process
        print(f"worker {index}: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's group: the main one reports it
        sys.exit(INTERRUPTED_EXIT)


def run_workers(study: optuna.Study, url: str, objective, *, strategy: Strategy, workers: int,
                n_trials: int | None, timeout: float | None) -> None:
    """This process plus `workers - 1` more, all pulling trials from the same storage."""
    context = multiprocessing.get_context("spawn")
    others = [context.Process(target=_worker, args=(study.study_name, url, objective, strategy, index, workers,
                                                    n_trials, timeout))
              for index in range(1, workers)]
    for process in others:
        process.start()
    try:
        with worker_share(0, workers):
            optimize(study, objective, n_trials=n_trials, timeout=timeout)
    except KeyboardInterrupt:
        # a Ctrl-C reached the workers too; a SIGINT sent to this process alone did not: pass it on
        hold_interrupts()  # until the command has written out what finished
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        for process in others:
            process.join(timeout=max(deadline - time.monotonic(), 0))
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        raise
    finally:
        for process in others:
            process.join()
    interrupted = [index for index, process in enumerate(others, start=1) if process.exitcode == INTERRUPTED_EXIT]
    failed = [index for index, process in enumerate(others, start=1) if process.exitcode not in (0, INTERRUPTED_EXIT)]
    problems = [f"{numbered('worker', failed)} stopped with an error (printed above)"] if failed else []
    problems += [f"{numbered('worker', interrupted)} interrupted (SIGINT)"] if interrupted else []
    if problems:
        raise SearchError("; ".join(problems))
