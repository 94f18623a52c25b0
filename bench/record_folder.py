"""Reading a results folder: its complete run records, and the failures of runs that did not finish.
A damaged or partial file is skipped with a warning naming it, never read as a result."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path

from bench.config_labels import card_of
from bench.record import ADAPTER_FOLDER, SCHEMA_VERSION, RunRecord, read_record
from tasks.notices import SkippedInput, UserNotice

SHIPPED_RESULTS = ("reference", "search_tables")  # committed under results/ with the project: not a user's runs


def warn_mixed_flop_estimates(records: list[RunRecord]) -> None:
    """Records whose FLOPs two versions of the estimate made are not comparable by FLOPs: said once."""
    versions = [record["cost"].get("flops_estimate", 1) for record in records]
    if len(set(versions)) > 1:
        older = sum(version < max(versions) for version in versions)
        warnings.warn(f"{older} of {len(records)} runs estimate training FLOPs with an older formula (versions "
                      f"{', '.join(map(str, sorted(set(versions))))}): compare FLOPs only within a version, or rerun "
                      "them", UserNotice, stacklevel=2)


def warn_mixed_task_states(records: list[RunRecord]) -> None:
    """Records of one task version made from different contents of its card or data (an edit without
    a new `version`): their scores sit in one table row but may not compare. Said once a task."""
    states: dict[tuple, Counter] = {}
    for record in records:
        task = record["task"]
        if task.get("digest") is not None:  # records made before they kept one: not known
            # a user's card that replaces a shipped one of its name is another card (tables keep them apart)
            states.setdefault((task["name"], task.get("version"), card_of(record)), Counter())[task["digest"]] += 1
    for (name, version, _), counts in states.items():
        if len(counts) > 1:
            sizes = " and ".join(str(count) for _, count in counts.most_common())
            warnings.warn(f"task {name} (version {version}): its records came from {len(counts)} states of its card or "
                          f"data at that version ({sizes} records): their scores may not compare; give the card a new "
                          "`version` and run the older ones again", UserNotice, stacklevel=2)


def load_records(folder: Path, *, leave_out: tuple[str, ...] = ()) -> tuple[list[RunRecord], list[dict]]:
    """All complete records under `folder` (but not under its subfolders named in `leave_out`), and
    the failures left by runs that did not finish."""
    def found(pattern: str) -> list[Path]:
        return [path for path in sorted(Path(folder).rglob(pattern))
                if path.relative_to(folder).parts[0] not in leave_out]

    records, failures = [], []
    for path in found("record.json"):
        try:
            record = read_record(path)
            problem = record_problem(record)
        except KeyError as err:  # a record of an older or hand-edited shape
            problem = f"it has no {err.args[0]!r}"
        except (OSError, ValueError, TypeError, AttributeError) as err:
            problem = f"{type(err).__name__}: {err}"
        if problem:
            warnings.warn(f"record left out: {path}: {problem}", SkippedInput, stacklevel=2)
            continue
        records.append(record)
    finished = {record["run_id"] for record in records if "run_id" in record}
    for path in found("failure.json"):
        try:
            failure = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            failure = None
        if not isinstance(failure, dict) or not {"run", "reason"} <= set(failure):
            warnings.warn(f"failure file left out: {path}: unreadable", SkippedInput, stacklevel=2)
        elif failure.get("run_id") not in finished:  # a run that failed once and has finished since
            failures.append(failure)
    return records, failures


def unfinished_runs(folder: Path, *, leave_out: tuple[str, ...] = ()) -> list[Path]:
    """Run folders under `folder` holding an adapter but neither a record nor a failure: runs stopped
    between saving their adapter and writing their record (a killed or interrupted `spbench run`)."""
    return sorted(adapter.parent for adapter in Path(folder).rglob(ADAPTER_FOLDER)
                  if adapter.relative_to(folder).parts[0] not in leave_out
                  and not any((adapter.parent / name).exists() for name in ("record.json", "failure.json")))


def record_problem(record: RunRecord) -> str | None:
    """What every reader of records needs (tables, grid tables, references) and this record lacks
    (None: nothing). Raises on a record of another shape; a table checks its own fields (`bench.results`)."""
    version = record.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        return f"its schema_version {version!r} is no version number"
    if version > SCHEMA_VERSION:
        return f"schema version {version}, newer than this version of softprompt-bench reads ({SCHEMA_VERSION})"
    metric = record["task"]["primary_metric"]
    if "validation" not in record["scores"]:  # what tables and searches choose by
        return "no validation scores"
    for split, scores in record["scores"].items():
        value = scores.get(metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"no {metric} score on {split}"
        if not math.isfinite(value):  # no metric here gives one: an edited or damaged file
            return f"its {metric} score on {split} is {value}, which no table can rank"
    if not isinstance(record["cost"], dict):
        return "no cost figures"
    return None
