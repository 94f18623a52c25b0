"""`spbench tasks`: list the task cards, show one with an example a split, or validate one."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.task_card_validation import validate
from tasks import TaskCardError

DESCRIPTION = """List the task cards (the shipped ones and those of --tasks-dir), show one with
a rendered example of each split, or check a card file and every row of its
data."""

EXAMPLES = """examples:
  spbench tasks
  spbench tasks show sst2
  spbench tasks validate my_cards/my_task.yaml"""


def add_parser(sub) -> None:
    parser = sub.add_parser("tasks", help="list task cards; `tasks show NAME`; `tasks validate PATH`",
                            description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=("list", "show", "validate"), default="list",
                        help="list the task cards (default), show one with an example a split, or validate a card "
                             "file and every row of its data")
    parser.add_argument("name", nargs="?", help="task name (show) or card path (validate)")
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    parser.set_defaults(handler=run)


def run(args) -> int:
    if args.action == "show":
        return _show(args)
    if args.action == "validate":
        return validate(args)
    return _list(args)


def _list(args) -> int:
    from tasks import available_tasks
    from tasks.registry import is_shipped

    if args.name:
        raise ValueError(f"tasks list takes no name (got {args.name!r}): `spbench tasks show {args.name}` shows one")
    cards = available_tasks(tuple(args.tasks_dir))  # a missing folder is refused before the table starts
    # a user's long task name or metric widens its column, not shifts the row
    width, metric_width = max([12, *map(len, cards)]), max([10, *(len(c.primary_metric) for c in cards.values())])
    print(f"{'name':<{width}} {'kind':<15} {'train/validation/test':<22} {'metric':<{metric_width}} source")
    for name, card in sorted(cards.items()):
        sizes = "/".join(_split_size(card, split) for split in ("train", "validation", "test"))
        source = card.source.get("hub") or Path(card.source["local"]).name
        budget = f", trains on {card.train_size}" if card.train_size else ""  # a few-shot variant
        # a user's card shows its file: it may answer to a shipped task's name
        yours = "" if is_shipped(card.path) else f", {card.path}"
        print(f"{name:<{width}} {card.kind:<15} {sizes:<22} {card.primary_metric:<{metric_width}} {source}  "
              f"(v{card.version}{budget}{yours})")
    return 0


def _split_size(card, split: str) -> str:
    from tasks.data import load_rows

    if "local" not in card.source:
        return "hub"
    try:
        return str(len(load_rows(card, split)))
    except (TaskCardError, ValueError):  # missing or unreadable: `spbench tasks validate` names the problem
        return "-"


def _show(args) -> int:
    from tasks import load_task

    if not args.name:
        raise ValueError("tasks show needs a task name")
    import yaml

    from tasks.card import merged_keys
    from tasks.registry import is_shipped

    task = load_task(args.name, tasks_dirs=tuple(args.tasks_dir))
    text = task.card.path.read_text(encoding="utf-8").rstrip()
    print(f"# {task.card.path}\n{text}\n")
    if "include" in yaml.safe_load(text):  # a variant: what it reads with the card it includes
        merged = yaml.safe_dump(merged_keys(task.card.path), sort_keys=False, allow_unicode=True, width=100,
                                default_flow_style=None).rstrip()
        print(f"# with what it includes, the card reads:\n{merged}\n")
    for split in ("train", "validation", "test"):
        example = task.examples(split, limit=1)[0]
        print(f"--- {split} ({len(task.rows(split))} rows), one example ---")
        print(example.prompt)
        label = f"  (class {task.card.classes[example.label]!r})" if example.label is not None else ""
        print(f"=> target: {example.target!r}{label}")
    if not is_shipped(task.card.path):  # a user's card: rows beyond those shown may be bad
        print(f"\n(one example a split; `spbench tasks validate {task.card.path}` checks every row)")
    return 0
