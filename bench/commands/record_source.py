"""The records `results`, `plot` and `report` read: a results folder's (without those shipped with the
project unless it is named) or a study's, and the split whose scores they show."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

from bench.record import DEFAULT_RESULTS
from tasks.notices import counted, first_line, skipped_inputs_kept


class ChosenRecords(NamedTuple):
    records: list
    failures: list[dict]  # of runs that did not finish
    split: str  # whose scores are shown
    left_out: list[str]  # a line for each record left out (unreadable, partial) and for unfinished runs


def results_folder(args) -> Path:
    """Where the records are read from and tables, plots and reports go."""
    return args.folder or DEFAULT_RESULTS


def chosen_records(args) -> ChosenRecords:
    """The records asked for, those of the runs that failed, the split to show (--split, else the
    default split for these records), and what was left out: said here, and kept for the report."""
    from bench.record_folder import SHIPPED_RESULTS, unfinished_runs, warn_mixed_flop_estimates, warn_mixed_task_states

    folder = results_folder(args)
    if args.study and not args.storage:
        raise ValueError(f"--study {args.study} needs --storage, the URL its study is in (a search's own is "
                         "sqlite:///<its results folder>/<study>/study.db; a shared suite's, the one its machines use)")
    if args.storage and not args.study:
        import optuna

        from bench.study_storage import open_storage

        held = optuna.get_all_study_names(open_storage(args.storage, existing_file=True))
        raise ValueError("--storage needs --study (suite-<suite name>, or a search's study); its studies: "
                         + (", ".join(held) or "none"))
    with skipped_inputs_kept() as left_out:  # said as before; what was left out goes into a report too
        records, failures = _load(args, folder)
    unfinished = [] if args.storage else unfinished_runs(folder, leave_out=() if args.folder else SHIPPED_RESULTS)
    if not records:
        _refuse_no_records(args, folder, failures, unfinished)
    if unfinished:
        note = _unfinished_note(unfinished)
        print(note, file=sys.stderr)
        left_out.append(note)
    split = args.split or _default_split(records)
    if not any(split in record["scores"] for record in records):  # nothing to tabulate: keep what was written
        raise ValueError(f"none of the {len(records)} runs has {split} scores")
    warn_mixed_flop_estimates(records)
    warn_mixed_task_states(records)
    return ChosenRecords(records, failures, split, left_out)


def _load(args, folder: Path) -> tuple[list, list[dict]]:
    from bench.record_folder import SHIPPED_RESULTS, load_records

    if args.storage:
        from bench.shared_suite import records_from_study

        return records_from_study(args.storage, args.study)
    if args.folder is None:  # your runs: those committed with the project are left out unless named
        shipped = [name for name in SHIPPED_RESULTS if (DEFAULT_RESULTS / name).is_dir()]
        if shipped:
            print(f"left out: {', '.join(str(DEFAULT_RESULTS / name) for name in shipped)} (shipped with the project; "
                  "name a folder to include it)", file=sys.stderr)
        return load_records(folder, leave_out=SHIPPED_RESULTS)
    return load_records(folder)


def _default_split(records) -> str:
    """test, unless no run has test scores (a search's trials score validation only)."""
    if any("test" in record["scores"] for record in records):
        return "test"
    print(f"none of the {len(records)} runs has test scores (a search's trials are scored on validation "
          "only): showing validation scores, optimistic for configs chosen on them", file=sys.stderr)
    return "validation"


def _refuse_no_records(args, folder: Path, failures: list[dict], unfinished: list[Path]) -> None:
    """Say why there is nothing to show: no such folder, or no finished run (each failed run named)."""
    from bench.study_storage import shown_storage

    if not args.storage and not folder.is_dir():
        raise FileNotFoundError(f"{'not a folder' if folder.exists() else 'no such folder'}: {folder}")
    where = shown_storage(args.storage) if args.storage else folder
    failed = "".join(f"\n  {failure.get('run') or failure.get('run_id', '?')}: "
                     f"{first_line(failure.get('reason')) or '?'}" for failure in failures)
    raise FileNotFoundError(f"no run records under {where}"
                            + (f"; {counted(len(failures), 'run')} failed:{failed}" if failures else "")
                            + (f"; {_unfinished_note(unfinished)}" if unfinished else ""))


def _unfinished_note(unfinished: list[Path]) -> str:
    shown = ", ".join(map(str, unfinished[:3])) + (", ..." if len(unfinished) > 3 else "")
    return (f"{len(unfinished)} run folder(s) hold an adapter but no record, runs stopped before they finished "
            f"(not in the table; rerun their commands): {shown}")
