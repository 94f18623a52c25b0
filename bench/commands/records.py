"""`spbench results`, `plot` and `report`: a folder's or a study's records as a table, plots or a
Markdown report."""

from __future__ import annotations

import textwrap
from pathlib import Path

from bench.commands.record_source import chosen_records, results_folder
from tasks.notices import counted


def add_parser(sub) -> None:
    for name, handler, help_text, shows in (
            ("results", results, "aggregate records into a table (terminal + results[_validation].csv)", "table shows"),
            ("plot", plot, "score-vs-cost, relative-to-full-FT, prompt length and init plots", "plots show"),
            ("report", report, "a Markdown report with tables, plots and environment", "report shows")):
        command = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        command.add_argument("folder", nargs="?", type=Path,
                             help="results folder, where records are read from and the output goes (default: "
                                  "results/, without the reference and search tables shipped there; with --storage, "
                                  "only where the output goes)")
        command.add_argument("--split", choices=("validation", "test"),
                             help=f"the split whose scores the {shows} (default test, or validation where no "
                                  "run has test scores: a search's trials score validation only)")
        command.add_argument("--storage", help="read records from a study (a shared suite's or a search's) "
                             "instead of the folder")
        command.add_argument("--study", help="that study's name (suite-<suite name>, or the search's)")
        if name == "plot":
            from bench.plots.data import COST_AXES

            command.add_argument("--axis", action="append", choices=tuple(COST_AXES),
                                 help="cost axis (repeatable; default trainable_params, train_flops)")
        command.set_defaults(handler=handler)


def results(args) -> int:
    from bench.results import aggregate, reruns_left_out, unscored
    from bench.results_table import SE_RULE, csv_name, format_table, write_csv

    records, failures, split, _ = chosen_records(args)
    rows = aggregate(records, split=split)
    print(format_table(rows))
    if rows:
        metrics = ", ".join(sorted({f"{row.task} {row.metric}" for row in rows}))
        print(f"\nscore: each task's primary metric on the {split} split ({metrics}), mean ± std over seeds; "
              f"SE: its standard error from the examples scored (a rough guide: {SE_RULE}); vs FT: over full "
              "fine-tuning's; vs 0-shot: % change from the base model's zero-shot score")
    _print_answers(rows, split, args)
    if left_out := unscored(records, split):
        print(f"\n{left_out} runs have no {split} scores and are not in the table (--split validation "
              "includes search trials)")
    print(f"\n{counted(len(records), 'run')} finished, {len(failures)} failed{reruns_left_out(records, rows, split)}; "
          f"csv: {write_csv(rows, results_folder(args) / csv_name(split))}")
    return 0


def _print_answers(rows, split: str, args) -> None:
    """The suite's answer, as the report opens with it: a paragraph a group of comparable runs, and on
    a line of its own (to paste whole) the run that makes a missing reference."""
    from bench.verdict import STUDY_VIEW_NOTE, reference_command, shared_error_basis, verdict_text, verdicts

    answers = verdicts(rows)
    shared = shared_error_basis(answers)
    for verdict in answers:
        print("\n" + textwrap.fill(verdict_text(verdict, split=split, quote="", say_error_basis=not shared),
                                   width=100, break_long_words=False))
        if not (command := reference_command(verdict, results_folder(args))):  # into the folder the report is in
            continue
        if args.storage:
            print(textwrap.fill(STUDY_VIEW_NOTE, width=100, initial_indent="  ", subsequent_indent="  "))
        else:
            print(f"  {command}")
    if shared:
        print("\n" + textwrap.fill(f"In each answer, {shared}.", width=100))


def plot(args) -> int:
    from bench.plots.render import render_all
    from bench.results import aggregate
    from bench.results_table import split_name

    records, _, split, _ = chosen_records(args)
    axes = tuple(args.axis or ("trainable_params", "train_flops"))
    paths = render_all(aggregate(records, split=split), results_folder(args) / split_name("plots", split),
                       split=split, axes=axes)
    print("\n".join(map(str, paths)))
    return 0


def report(args) -> int:
    from bench.report import write_report
    from bench.results import aggregate

    records, failures, split, left_out = chosen_records(args)
    rows = aggregate(records, split=split)
    print(write_report(results_folder(args), records=records, failures=failures, split=split, rows=rows,
                       left_out=left_out, from_study=bool(args.storage)))
    _print_answers(rows, split, args)
    return 0
