"""`spbench tasks validate`: every problem of a card's data, split by split, where a run stops at the first."""

from __future__ import annotations

import warnings
from pathlib import Path

from tasks import TaskCardError
from tasks.notices import UserNotice, first_line

ROW_PROBLEMS_SHOWN = 10  # a split's bad rows listed by `tasks validate`; the rest are counted


def validate(args) -> int:
    from tasks import load_task
    from tasks.card import SPLITS
    from tasks.data import check_local_folder

    if not args.name:
        raise ValueError("tasks validate needs a card path")
    if Path(args.name).is_dir():
        raise ValueError(f"tasks validate checks one card file; {args.name} is a folder "
                         f"(`spbench tasks --tasks-dir {args.name}` lists its cards and those it leaves out)")
    task = load_task(args.name, tasks_dirs=tuple(args.tasks_dir))
    check_local_folder(task.card)  # once, not once a split
    bad, files_listed = {}, set()
    for split in SPLITS:  # every problem, where a run names the first
        if listed := _report_split(task, split, files_listed):
            bad[split] = listed
    if bad:
        raise TaskCardError(task.card.path, None, "bad rows or lines (listed above): "
                            + ", ".join(f"{count} in {split}" for split, count in bad.items()))
    task.check_metrics()  # as a run does before its model loads (it scores validation rows' answers)
    _note_short_train_split(task)
    print(f"{task.card.path}: valid")
    return 0


def _note_short_train_split(task) -> None:
    """A card's train_size beyond its train split is no error (a run trains on every row) but not what
    the card says: its runs' records would name a budget they never had."""
    size, rows = task.card.train_size, len(task.rows("train"))
    if size and size > rows:
        warnings.warn(f"{task.card.path}: [train_size] {size} is more than the {rows} rows of the train split; "
                      f"its runs train on all {rows}", UserNotice, stacklevel=2)


def _report_split(task, split: str, files_listed: set) -> int:
    """Print the split's row count and its problems; how many problems it has."""
    try:
        rows, problems = task.row_problems(split)
    except ValueError as err:
        return _report_unreadable_split(task, split, err, files_listed)
    return _report_rows(split, rows, problems, unparsed=[])


def _report_unreadable_split(task, split: str, err: ValueError, files_listed: set) -> int:
    """A split file a run would refuse: each line that is no JSON object, else why, then the problems
    of the rows that do read. A file already listed for another split is not listed again."""
    path, unparsed, parsed = _read_leniently(task.card, split)
    if unparsed and path is not None and path in files_listed:  # validation carved from train reads train's
        print(f"{split:<10} reads {path}, listed above")
        return 0
    files_listed.add(path)
    if not unparsed:  # every line reads (or there is no file): the split itself is refused, an empty one say
        print(f"{split:<10} refused:")
        return _print_listed([first_line(err)])
    if parsed is None:  # no rows to check until the file reads
        print(f"{split:<10} unreadable" + (" (its rows are checked once these lines are mended):" if path else ":"))
        return _print_listed(unparsed)
    rows, problems = task.row_problems(split, rows=parsed)
    return _report_rows(split, rows, problems, unparsed)


def _read_leniently(card, split: str):
    """The split file's path, its lines that are no JSON object and the rows that are; a file that is
    no gzip or UTF-8 has no path or rows, and its reason as its one line."""
    from tasks.data import read_leniently

    try:
        return read_leniently(card, split)
    except ValueError as unreadable:
        return None, [first_line(unreadable)], None


def _report_rows(split: str, rows: int, problems: list, unparsed: list[str]) -> int:
    said = ([f"{len(problems)} bad"] if problems else []) + (
        [f"{len(unparsed)} line{' is' if len(unparsed) == 1 else 's are'} no JSON object"] if unparsed else [])
    print(f"{split:<10} {rows:>6} rows " + (", ".join(said) + ":" if said else "ok"))
    return _print_listed(unparsed + [f"[{problem.key}] {problem.problem}" for problem in problems])


def _print_listed(listed: list[str]) -> int:
    for problem in listed[:ROW_PROBLEMS_SHOWN]:
        print(f"  {problem}")
    if len(listed) > ROW_PROBLEMS_SHOWN:
        print(f"  and {len(listed) - ROW_PROBLEMS_SHOWN} more")
    return len(listed)
