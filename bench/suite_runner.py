"""Run a suite: every planned run through the one run path, resumable and failure-tolerant.

A run whose record exists is skipped (rerunning a killed suite redoes only unfinished runs);
a run that fails leaves `failure.json` with its reason and the suite goes on. A run another process
is training in the same folder is passed over (bench/run_claim.py).
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from bench.models import ModelPool
from bench.record import SCHEMA_VERSION, RunRecord, read_record, results_folder, write_json_atomic
from bench.record_folder import record_problem
from bench.run import execute_run
from bench.run_claim import claim
from bench.suite import PlannedRun, Suite


@dataclass
class SuiteOutcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # record already present
    elsewhere: list[str] = field(default_factory=list)  # trained (or failed) by another process meanwhile
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)


def record_damage(run: PlannedRun, path: Path) -> str | None:
    """What is wrong with a run's existing record at `path` (None: nothing). Records are written
    whole, so only a damaged disk or a hand edit leaves a bad one; the run is then trained again,
    not counted done."""
    try:
        record = read_record(path)
        if record.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:  # a newer version's whole record: done
            return None
        return record_problem(record) or (None if record.get("run_id") == run.spec.run_id() else "another run's id")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"{type(err).__name__}: {err}"


def changed_cards(done: list[PlannedRun]) -> list[str]:
    """For runs whose records are taken as done: a line for each card (or its data) edited since
    those records were made without a new version, whose records then pass for the card's now."""
    from tasks import find_task
    from tasks.digest import content_digest
    from tasks.notices import counted

    found: dict[Path, list[PlannedRun]] = {}
    for run in done:
        try:
            card = find_task(run.spec.task, tasks_dirs=run.spec.tasks_dirs)
            kept = read_record(run.spec.record_path())["task"].get("digest")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # the run says what is wrong, if it runs
            continue
        if kept is not None and kept != content_digest(card):  # records made before they kept it: not known
            found.setdefault(card.path, []).append(run)
    return [f"task {runs[0].spec.task}: {counted(len(runs), 'record')} here came from another state of {path} or "
            f"its data, at the same version: kept as done; give the card a new `version` to train them on it as it is"
            for path, runs in found.items()]


def describe(run: PlannedRun) -> str:
    return f"{run.spec.task} / {run.spec.model} / {run.label} / seed {run.spec.train.seed}"


def keep_failure(run: PlannedRun, err: Exception, *, seconds: float) -> dict:
    """What `failure.json` keeps of a run that raised `err`, written beside where its record would
    be (call it while handling the error). A folder that refuses the file does not lose the
    failure: its reason says so, and the caller reports it all the same."""
    entry = {"run": describe(run), "run_id": run.spec.run_id(), "reason": f"{type(err).__name__}: {err}",
             "seconds": seconds, "traceback": traceback.format_exc()}
    try:
        write_json_atomic(entry, run.spec.record_path().parent / "failure.json")
    except OSError as unwritable:
        entry["reason"] += f" (and its failure.json could not be written: {unwritable.strerror or unwritable})"
    return entry


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@dataclass
class RunOutcome:
    """One planned run's end: its record, or the error it raised with what `failure.json` keeps of it."""

    seconds: float
    record: RunRecord | None = None
    error: Exception | None = None
    failure: dict | None = None  # keep_failure's entry

    def line(self) -> str:
        """"done in 12 s", or "failed after 12 s (the reason's first line)"."""
        if self.failure is None:
            return f"done in {duration(self.seconds)}"
        return f"failed after {duration(self.seconds)} ({self.failure['reason'].splitlines()[0]})"


def run_planned(run: PlannedRun, pool: ModelPool, *, progress: bool) -> RunOutcome:
    """One planned run through the run path. A failure is kept beside where its record would be
    (`failure.json`, which a later success removes) and returned, not raised: one failed run does
    not stop a suite. An interruption (Ctrl-C) is raised."""
    started = time.perf_counter()
    run.spec.progress = progress
    try:
        record = execute_run(run.spec, pool=pool)
    except Exception as err:
        seconds = time.perf_counter() - started
        return RunOutcome(seconds, error=err, failure=keep_failure(run, err, seconds=seconds))
    (run.spec.record_path().parent / "failure.json").unlink(missing_ok=True)  # failed before, done now
    return RunOutcome(time.perf_counter() - started, record=record)


def run_suite(suite: Suite, *, progress: bool = True) -> SuiteOutcome:
    """Progress is a bar at a terminal; written to a file or a pipe, it is one line per run."""
    results_folder(suite.results_dir)  # a file in the way is named before the first run, not after it
    outcome, pool = SuiteOutcome(), ModelPool()
    terminal = progress and sys.stderr.isatty()
    records = [run.spec.record_path() for run in suite.runs]  # once: every progress line looks at the rest
    present = [record.exists() and record_damage(run, record) is None for run, record in zip(suite.runs, records)]
    failures_seen = [_stamp(record.parent / "failure.json") for record in records]  # another process's come after
    for line in changed_cards([run for run, done in zip(suite.runs, present) if done]):
        print(line, file=sys.stderr)
    # runs already done start the bar, so its rate and time left are those of runs trained here
    with tqdm(total=len(suite.runs), initial=sum(present), desc=f"suite {suite.name}", unit="run",
              disable=not terminal) as bar:
        ran_seconds, ran = 0.0, 0  # runs trained here to the end, for the time left (a failure is no measure)

        def finished(number: int, name: str, how: str, *, counted: bool = True) -> None:
            if counted:
                bar.update()
            if progress and not terminal:
                left = sum(not later.exists() for later in records[number:])  # the rest to train
                eta = f"; about {duration(ran_seconds / ran * left)} left" if ran and left else ""
                print(f"[{number}/{len(suite.runs)}] {name}: {how}{eta}", file=sys.stderr, flush=True)

        for number, (run, record) in enumerate(zip(suite.runs, records), 1):
            name = describe(run)
            bar.set_postfix_str(name[:60])
            if present[number - 1]:
                outcome.skipped.append(name)
                finished(number, name, "record exists, skipped", counted=False)
                continue
            with claim(record.parent) as ours:
                if not ours or _ended_elsewhere(run, record, failures_seen[number - 1]):
                    outcome.elsewhere.append(name)
                    how = "being trained by another process" if not ours else "run by another process meanwhile"
                    finished(number, name, f"{how}, skipped")
                    continue
                if record.exists():
                    print(f"{name}: its record {record} is unreadable ({record_damage(run, record)}); running it "
                          "again", file=sys.stderr)
                ended = run_planned(run, pool, progress=progress)
            if ended.failure is None:
                outcome.done.append(name)
                ran_seconds, ran = ran_seconds + ended.seconds, ran + 1
            else:
                outcome.failed.append((name, ended.failure["reason"]))
            finished(number, name, ended.line())
    return outcome


def _ended_elsewhere(run: PlannedRun, record: Path, failure_seen: tuple | None) -> bool:
    """Whether another `bench` on this folder finished or failed the run after this one planned it
    (it claimed the run first and has let it go): a record, or a failure.json other than the one
    seen when planning (told by its inode and time, not by clocks)."""
    if record.exists() and record_damage(run, record) is None:
        return True
    failure = _stamp(record.parent / "failure.json")
    return failure is not None and failure != failure_seen


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns
