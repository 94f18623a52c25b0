"""`spbench`: the command line."""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
import time
from pathlib import Path

from bench.record import DEFAULT_RESULTS
from bench.user_warnings import show_warnings_to_users
from tasks import TaskCardError
from tasks.notices import first_line

RUN_EXAMPLES = """examples:
  spbench run --task sst2 --model minilm-l6 --method prompt_tuning --set num_virtual_tokens=20 --set lr=0.03 --steps 200
  spbench run --task squad_v1 --model smollm2-135m --method prompt_tuning --set init=text \\
      --set "init_text=Answer with a short span copied from the context." --steps 20 --eval-size 50
  spbench run --task sst2 --model minilm-l6 --method full_ft --steps 150 --batch-size 32
"""


def _add_run(sub) -> None:
    parser = sub.add_parser("run", help="train and evaluate one configuration",
                            epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="a YAML config (e.g. a search's best.yaml); flags override it")
    parser.add_argument("--task", help="task name (see `spbench tasks`) or a card path")
    parser.add_argument("--model", help="registry name (see `spbench models`), folder or hub id")
    parser.add_argument("--method", help="method name (see `spbench methods`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a method or training setting, e.g. num_virtual_tokens=20, init=class_labels, lr=0.03")
    parser.add_argument("--steps", type=int, help="training steps (default 200)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 16)")
    parser.add_argument("--seed", type=int, help="seed for data order and initialisation (default 0)")
    parser.add_argument("--eval-size", type=int, help="examples per evaluation split (default: all)")
    parser.add_argument("--train-size", type=int, help="training examples to draw (default: all)")
    parser.add_argument("--model-kind", choices=("encoder", "causal", "seq2seq"),
                        help="override the detected kind of a hub id or folder")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where records go (default results/)")
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    parser.add_argument("--gradient-checkpointing", action="store_true", default=None,
                        help="recompute activations in the backward pass: far less memory on long inputs, "
                             "same scores (not for prefix_tuning)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args) -> int:
    from bench.run import execute_run

    spec = _run_spec(args)
    if spec.record_path().is_file():  # the same config and seed: `bench` would skip it, `run` trains it again
        print(f"{spec.record_path()}: an earlier run of this config and seed; this run overwrites its adapter and "
              "record")
    record = execute_run(spec)
    _print_run(record)
    print(f"record: {spec.record_path()}")
    return 0


def _run_spec(args):
    """The run `spbench run` asks for: its --config, then flags and --set values over it."""
    from bench.errors import SettingsError
    from bench.methods import get_method
    from bench.overrides import split_overrides
    from bench.run_config import read_config
    from bench.run_spec import RunSpec
    from bench.train import TrainSettings
    from bench.train.config import watching_no_more_than_scored

    config = read_config(args.config) if args.config else {}
    task = args.task or (config.get("tasks") or [None])[0]
    if not args.task and len(config.get("tasks") or []) > 1:
        print(f"{args.config} holds {len(config['tasks'])} tasks ({', '.join(config['tasks'])}): running {task}; "
              "add --task to run another")
    model, method_name = args.model or config.get("model"), args.method or config.get("method")
    for flag, value in (("--task", task), ("--model", model), ("--method", method_name)):
        if not value:
            raise ValueError(f"{flag} is required (or give it in --config)")
    method = get_method(method_name)
    flags = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
             "eval_size": args.eval_size, "train_size": args.train_size,
             "gradient_checkpointing": args.gradient_checkpointing}
    set_method, set_train = split_overrides(args.overrides, method.settings_cls, TrainSettings)
    config_method, config_train = _config_settings(args.config, config, method)
    given = {k: v for k, v in flags.items() if v is not None}
    method_values, train_values = {**config_method, **set_method}, {**config_train, **set_train, **given}
    # never watch more than is scored, unless told to: by --set, or by a config that --eval-size does not override
    watched_as_told = "monitor_size" in set_train or ("monitor_size" in config_train and args.eval_size is None)
    from_config = {*config_method.keys() - set_method.keys(), *config_train.keys() - set_train.keys() - given.keys()}
    try:
        method.settings(**method_values)  # refused here, where the file a value came from can be named
        train = TrainSettings(**watching_no_more_than_scored(train_values, as_told=watched_as_told))
    except SettingsError as err:
        if any(re.search(rf"\b{re.escape(key)}=", str(err)) for key in from_config):
            raise type(err)(f"--config {args.config}: {err}") from None
        raise
    return RunSpec(task=task, model=model, method=method_name, method_settings=method_values,
                   # the config's card folders, then the command's, which win where both hold a name
                   train=train, tasks_dirs=(*config.get("tasks_dirs", []), *args.tasks_dir),
                   results_dir=args.results, model_kind=args.model_kind, progress=not args.quiet)


def _config_settings(path: Path, config: dict, method) -> tuple[dict, dict]:
    """The config's method settings and training settings, as they apply to `method`."""
    from bench.run_config import config_values
    from bench.train import TrainSettings
    from bench.yaml_values import settings_mapping

    if not config:
        return {}, {}
    train = config_values(path, config, "train", TrainSettings)
    if config.get("method") in (None, method.name):
        return config_values(path, config, "settings", method.settings_cls), train
    # written for another method: its settings and learning rate mean nothing to this one
    settings_mapping(f"--config {path} settings", config.get("settings"))  # refused still where malformed
    dropped_lr = train.pop("lr", None)
    left_out = [what for what, present in (("settings", config.get("settings")),
                                           ("learning rate", dropped_lr is not None)) if present]
    if left_out:
        print(f"{path}: its {' and '.join(left_out)} are {config['method']}'s, not applied to {method.name}")
    return {}, train


def _print_run(record) -> None:
    """A finished run in a few lines: what ran, at what cost, and its scores against the base model's
    zero-shot score, and against its own state before training where that was scored."""
    primary = record["task"]["primary_metric"]
    print(f"{record['task']['name']} / {record['model']['name']} / {record['method']['name']}  "
          f"({record['cost']['trainable_params']:,} trainable params, "
          f"{record['cost']['train_seconds']:.1f}s training)")
    base, initial = record.get("base_zero_shot") or {}, record.get("zero_shot") or {}
    for split, scores in record["scores"].items():
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != "n")
        gain = (record.get("improvement_pct") or {}).get(split)  # none over a zero-shot score <= 0
        versus = f"; zero-shot {primary}={base[split][primary]:.4f}" if split in base else ""
        versus += f", {gain:+.1f}%" if versus and gain is not None else ""
        versus += f"; before training {primary}={initial[split][primary]:.4f}" if split in initial else ""
        print(f"  {split:<10} {metrics}  (n={scores['n']}{versus})")


def _models(args) -> int:
    from bench.models import MODELS

    width = max([14, *map(len, MODELS)])  # a long name widens its column, not shifts the row
    print(f"{'name':<{width}} {'kind':<8} {'ready offline':<14} description")
    for spec in MODELS.values():
        state = "yes" if spec.is_ready() else ("on first use" if spec.is_installed() else "not installed")
        print(f"{spec.name:<{width}} {spec.kind:<8} {state:<14} {spec.description}")
        if not spec.is_installed():
            print(f"{'':<{width + 25}}install: {spec.install_hint}")
    print("\nAny hub id or local checkpoint folder also works as --model (kind detected from its config).")
    return 0


def _methods(args) -> int:
    import dataclasses
    import textwrap

    from bench.methods import METHODS

    print(f"{'name':<14} {'default lr':<11} description")
    for method in METHODS.values():  # wrapped to 100 columns, as a narrow terminal shows them
        first = f"{method.name:<14} {method.default_lr:<11g} "
        print(textwrap.fill(method.description, width=100, initial_indent=first, subsequent_indent=" " * 27))
        # as a run resolves them (a prefix's init follows from its projection)
        defaults = [f"{name}={value}" for name, value in dataclasses.asdict(method.settings()).items()]
        if defaults:
            print(textwrap.fill(", ".join(defaults), width=100, initial_indent=f"{'':<27}settings: ",
                                subsequent_indent=" " * 37))
    print("\nSet them with --method NAME --set key=value (a wrong value is refused with the values allowed).")
    return 0


def _tasks(args) -> int:
    from tasks import available_tasks
    from tasks.registry import is_shipped

    if args.action == "show":
        return _task_show(args)
    if args.action == "validate":
        return _task_validate(args)
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


def _task_show(args) -> int:
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


ROW_PROBLEMS_SHOWN = 10  # a split's bad rows listed by `tasks validate`; the rest are counted


def _task_validate(args) -> int:
    from tasks import load_task
    from tasks.card import SPLITS

    if not args.name:
        raise ValueError("tasks validate needs a card path")
    if Path(args.name).is_dir():
        raise ValueError(f"tasks validate checks one card file; {args.name} is a folder "
                         f"(`spbench tasks --tasks-dir {args.name}` lists its cards and those it leaves out)")
    task = load_task(args.name, tasks_dirs=tuple(args.tasks_dir))
    bad, files_listed = {}, set()
    for split in SPLITS:  # every problem, where a run names the first
        if listed := _report_split(task, split, files_listed):
            bad[split] = listed
    if bad:
        raise TaskCardError(task.card.path, None, "bad rows or lines (listed above): "
                            + ", ".join(f"{count} in {split}" for split, count in bad.items()))
    task.check_metrics()  # as a run does before its model loads (it scores validation rows' answers)
    print(f"{task.card.path}: valid")
    return 0


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
    unparsed = unparsed or [first_line(err)]
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


def _bench(args) -> int:
    from bench.suite import load_suite
    from bench.suite_runner import run_suite

    suite = load_suite(args.suite, results_dir=args.results, tasks_dirs=tuple(args.tasks_dir))
    print(f"suite {suite.name}: {len(suite.runs)} runs -> {suite.results_dir}")
    if suite.description.strip():  # its first sentence: what the suite is for
        print("  " + re.split(r"(?<=[.?!])\s", suite.description.strip(), maxsplit=1)[0])
    for reason in suite.skipped:
        print(f"  not planned: {reason}")
    if args.dry_run:
        return _print_plan(suite)
    started = time.perf_counter()
    if args.storage:
        from bench.shared_suite import run_shared_suite
        from bench.study_storage import GRACE_SECONDS

        shared = run_shared_suite(suite, args.storage, progress=not args.quiet)
        # a machine killed less than the heartbeat grace ago still shows its run as running
        running = (f" ({shared.running} still running on other machines, or on one killed less than "
                   f"{GRACE_SECONDS} s ago: rerun after that to take it over)" if shared.running else "")
        print(f"{shared.done}/{len(suite.runs)} runs complete in the shared study{running}, "
              f"in {time.perf_counter() - started:.0f}s")
        for name, reason in shared.failed:
            print(f"  FAILED {name}: {reason}")
        return 1 if shared.failed else 0
    outcome = run_suite(suite, progress=not args.quiet)
    print(f"done {len(outcome.done)}, already present {len(outcome.skipped)}, failed {len(outcome.failed)} "
          f"in {time.perf_counter() - started:.0f}s")
    for name, reason in outcome.failed:
        print(f"  FAILED {name}: {reason}")
    return 1 if outcome.failed else 0


def _print_plan(suite) -> int:
    """The planned runs, one a line, each with whether a readable record of it is already there (in
    the results folder: a shared suite's study may hold more)."""
    from bench.suite_runner import describe, record_damage

    present = 0
    for run in suite.runs:
        record = run.spec.record_path()
        done = record.exists() and record_damage(run, record) is None
        present += done
        print(f"{'done' if done else 'todo'}  {describe(run)}  ({run.spec.run_id()})")
    print(f"{len(suite.runs) - present} to run, {present} with a record in {suite.results_dir}")
    return 0


def _results(args) -> int:
    from bench.results import aggregate, reruns_left_out, unscored
    from bench.results_table import csv_name, format_table, write_csv

    records, failures, split = _records(args)
    rows = aggregate(records, split=split)
    print(format_table(rows))
    if rows:
        metrics = ", ".join(sorted({f"{row.task} {row.metric}" for row in rows}))
        print(f"\nscore: each task's primary metric on the {split} split ({metrics}), mean ± std over seeds; "
              "SE: its standard error from the examples scored (a rough guide: scores less than about 3 SE apart, "
              "2 standard errors of their difference, may differ by the examples drawn alone); vs FT: over full "
              "fine-tuning's; vs 0-shot: % change from the base model's zero-shot score")
    _print_answers(rows, split, args)
    if left_out := unscored(records, split):
        print(f"\n{left_out} runs have no {split} scores and are not in the table (--split validation "
              "includes search trials)")
    print(f"\n{len(records)} runs, {len(failures)} failed{reruns_left_out(records, rows, split)}; "
          f"csv: {write_csv(rows, _results_folder(args) / csv_name(split))}")
    return 0


def _print_answers(rows, split: str, args) -> None:
    """The suite's answer, as the report opens with it: a paragraph a group of comparable runs, and on
    a line of its own (to paste whole) the run that makes a missing reference."""
    from bench.verdict import reference_command, verdict_text, verdicts

    for verdict in verdicts(rows):
        print("\n" + textwrap.fill(verdict_text(verdict, split=split, quote=""), width=100,
                                   break_long_words=False))
        if command := reference_command(verdict, _results_folder(args)):  # into the folder the report is in
            print(f"  {command}")


def _results_folder(args) -> Path:
    """Where the records are read from and tables, plots and reports go."""
    return args.folder or DEFAULT_RESULTS


def _records(args):
    """The records asked for, those of the runs that failed, and the split to show: --split, else
    the default split for these records."""
    from bench.record_folder import SHIPPED_RESULTS, load_records, unfinished_runs, warn_mixed_flop_estimates

    folder = _results_folder(args)
    if args.study and not args.storage:
        raise ValueError(f"--study {args.study} needs --storage, the URL its study is in (a search's own is "
                         "sqlite:///<its results folder>/<study>/study.db; a shared suite's, the one its machines use)")
    if args.storage:
        from bench.shared_suite import records_from_study

        if not args.study:
            raise ValueError("--storage needs --study (suite-<suite name>, or a search's study)")
        records, failures = records_from_study(args.storage, args.study)
    elif args.folder is None:  # your runs: those committed with the project are left out unless named
        shipped = [name for name in SHIPPED_RESULTS if (DEFAULT_RESULTS / name).is_dir()]
        if shipped:
            print(f"left out: {', '.join(str(DEFAULT_RESULTS / name) for name in shipped)} (shipped with the project; "
                  "name a folder to include it)", file=sys.stderr)
        records, failures = load_records(folder, leave_out=SHIPPED_RESULTS)
    else:
        records, failures = load_records(folder)
    unfinished = [] if args.storage else unfinished_runs(folder, leave_out=() if args.folder else SHIPPED_RESULTS)
    if not records:
        _refuse_no_records(args, folder, failures, unfinished)
    if unfinished:
        print(_unfinished_note(unfinished), file=sys.stderr)
    split = args.split or _default_split(records)
    if not any(split in record["scores"] for record in records):  # nothing to tabulate: keep what was written
        raise ValueError(f"none of the {len(records)} runs has {split} scores")
    warn_mixed_flop_estimates(records)
    return records, failures, split


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
    runs = f"{len(failures)} run{'s' if len(failures) > 1 else ''}"
    raise FileNotFoundError(f"no run records under {where}" + (f"; {runs} failed:{failed}" if failures else "")
                            + (f"; {_unfinished_note(unfinished)}" if unfinished else ""))


def _unfinished_note(unfinished: list[Path]) -> str:
    shown = ", ".join(map(str, unfinished[:3])) + (", ..." if len(unfinished) > 3 else "")
    return (f"{len(unfinished)} run folder(s) hold an adapter but no record, runs stopped before they finished "
            f"(not in the table; rerun their commands): {shown}")


def _plot(args) -> int:
    from bench.plots.render import render_all
    from bench.results import aggregate
    from bench.results_table import split_name

    records, _, split = _records(args)
    axes = tuple(args.axis or ("trainable_params", "train_flops"))
    paths = render_all(aggregate(records, split=split), _results_folder(args) / split_name("plots", split),
                       split=split, axes=axes)
    print("\n".join(map(str, paths)))
    return 0


def _report(args) -> int:
    from bench.report import write_report
    from bench.results import aggregate

    records, failures, split = _records(args)
    rows = aggregate(records, split=split)
    print(write_report(_results_folder(args), records=records, failures=failures, split=split, rows=rows))
    _print_answers(rows, split, args)
    return 0


def _search(args) -> int:
    from search.cli import run

    return run(args)


def _predict(args) -> int:
    from bench.predict import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spbench", description="soft-prompt search and benchmarking")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    sub.add_parser("models", help="list named models and whether each is ready offline")
    sub.add_parser("methods", help="list the methods, their default learning rates and settings")
    bench = sub.add_parser("bench", help="run a suite of tasks x models x methods x seeds (resumable)",
                           epilog="examples:\n  spbench bench --suite quick\n  spbench bench --suite my_suite.yaml "
                                  "--results results/mine", formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--suite", required=True, help="a shipped suite (smoke | quick | standard | full, or the "
                       "search_table_* grids: bench/suites/), or a suite YAML file")
    bench.add_argument("--results", type=Path, help="where records go (default results/<the suite's name>)")
    bench.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--dry-run", action="store_true", help="list the planned runs (and which have a record); "
                       "run none")
    bench.add_argument("--storage", help="share the suite's runs among machines through this Optuna storage URL")
    from search.cli import add_parser as add_search_parser

    add_search_parser(sub)
    from bench.predict import add_parser as add_predict_parser

    add_predict_parser(sub)
    for name, help_text in (("results", "aggregate records into a table (terminal + results[_validation].csv)"),
                            ("plot", "score-vs-cost, relative-to-full-FT, prompt length and init plots"),
                            ("report", "a Markdown report with tables, plots and environment")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("folder", nargs="?", type=Path,
                             help="results folder (default: results/, without the reference and search tables "
                             "shipped there)")
        command.add_argument("--split", choices=("validation", "test"),
                             help="the split whose scores the table shows (default test, or validation where no "
                                  "run has test scores: a search's trials score validation only)")
        command.add_argument("--storage", help="read records from a study (a shared suite's or a search's) "
                             "instead of the folder")
        command.add_argument("--study", help="that study's name (suite-<suite name>, or the search's)")
        if name == "plot":
            from bench.plots.data import COST_AXES

            command.add_argument("--axis", action="append", choices=tuple(COST_AXES),
                                 help="cost axis (repeatable; default trainable_params, train_flops)")
    tasks = sub.add_parser("tasks", help="list task cards; `tasks show NAME`; `tasks validate PATH`",
                           epilog="examples:\n  spbench tasks\n  spbench tasks show sst2\n"
                                  "  spbench tasks validate my_cards/my_task.yaml",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks.add_argument("action", nargs="?", choices=("list", "show", "validate"), default="list")
    tasks.add_argument("name", nargs="?", help="task name (show) or card path (validate)")
    tasks.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    return parser


RESUMABLE = {  # what an interrupted command kept, and how to go on
    "bench": "finished runs are kept: the same command runs the others",
    "search": "finished trials are kept: the same command resumes the study",
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    show_warnings_to_users()
    args = build_parser().parse_args(argv)
    handlers = {"run": _run, "models": _models, "methods": _methods, "tasks": _tasks, "bench": _bench,
                "results": _results, "plot": _plot, "report": _report, "search": _search, "predict": _predict}
    try:
        return handlers[args.command](args)
    # every domain error here is a ValueError, but a diverged run's (bench.train.DivergedError)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"spbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `spbench tasks | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail too
        return 0
    except OSError as err:  # a folder it may not write, a full disk: the path and the reason, not a traceback
        path = err.filename2 or err.filename  # a rename into place names the place second
        where = f"{path}: " if path else ""
        reason = err.strerror or first_line(err) or type(err).__name__
        print(f"spbench {args.command}: error: {where}{reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback; what finished is on disk already
        resume = RESUMABLE.get(args.command)
        print(f"spbench {args.command}: interrupted" + (f"; {resume}" if resume else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
