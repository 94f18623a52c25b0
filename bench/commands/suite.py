"""`spbench bench`: run a suite of tasks x models x methods x seeds, resumably, on one machine or shared
among several through an Optuna storage."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

DESCRIPTION = """Run every configuration a suite lists, each as `spbench run` would. Runs
already recorded are skipped (a damaged record is run again), so the same
command resumes; a failed run is recorded with its reason, the suite goes on,
and the command exits 1 at the end. With --storage, machines running the same
command share the runs out through the study."""

EXAMPLES = """examples:
  spbench bench --suite quick
  spbench bench --suite my_suite.yaml --results results/mine"""


def add_parser(sub) -> None:
    parser = sub.add_parser("bench", help="run a suite of tasks x models x methods x seeds (resumable)",
                            description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, help="a shipped suite (smoke | quick | standard | full, or the "
                        "search_table_* grids: bench/suites/), or a suite YAML file")
    parser.add_argument("--results", type=Path, help="where records go (default results/<the suite's name>)")
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true", help="list the planned runs (and which have a record); "
                        "run none")
    parser.add_argument("--storage", help="share the suite's runs among machines through this Optuna storage URL")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from bench.suite import load_suite
    from bench.suite_runner import run_suite

    suite = load_suite(args.suite, results_dir=args.results, tasks_dirs=tuple(args.tasks_dir))
    print(f"suite {suite.name}: {len(suite.runs)} runs -> {suite.results_dir}")
    if suite.description.strip():  # its first sentence: what the suite is for
        print("  " + re.split(r"(?<=[.?!])\s", suite.description.strip(), maxsplit=1)[0])
    for reason in suite.skipped:
        print(f"  not planned: {reason}")
    if args.dry_run:
        return _print_plan(suite, args.storage)
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
        if shared.not_done:  # failed here or elsewhere, or passed over by a machine with another version of the suite
            print(f"  {shared.not_done} not done, nor running anywhere (failed, or passed over by a machine with "
                  "another version of the suite, or queued again since): rerun this command to run them")
        for name, reason in shared.failed:
            print(f"  FAILED {name}: {reason}")
        return 1 if shared.failed else 0
    outcome = run_suite(suite, progress=not args.quiet)
    elsewhere = f", run by another process {len(outcome.elsewhere)}" if outcome.elsewhere else ""
    print(f"done {len(outcome.done)}, already present {len(outcome.skipped)}{elsewhere}, failed {len(outcome.failed)} "
          f"in {time.perf_counter() - started:.0f}s")
    for name, reason in outcome.failed:
        print(f"  FAILED {name}: {reason}")
    return 1 if outcome.failed else 0


def _not_ready_offline(models: list[str]) -> list[str]:
    """A line for each model of runs to do that this machine cannot load without a network or an install."""
    from bench.models.loading import hub_commit
    from bench.models.registry import MODELS, folder_source

    lines = []
    for model in models:
        if model in MODELS and not MODELS[model].is_installed():
            lines.append(f"model {model}: not installed ({MODELS[model].install_hint}); its runs will fail")
        elif model not in MODELS and folder_source(model) is None and hub_commit(model) is None:
            lines.append(f"model {model}: a hub id not in this machine's hub cache; its runs download it, and "
                         "fail without a network")
    return lines


def _print_plan(suite, storage: str | None) -> int:
    """The planned runs, one a line, each with whether it is done: a readable record in the results
    folder, or with `storage`, a completed trial of the shared study (which any machine may have run)."""
    from bench.suite_runner import changed_cards, describe, record_damage

    if storage:
        from bench.shared_suite import runs_done_in_study
        from bench.study_storage import shown_storage

        in_study = runs_done_in_study(suite, storage)
    present = []
    for planned in suite.runs:
        if storage:
            done = planned.spec.run_id() in in_study
        else:
            record = planned.spec.record_path()
            done = record.exists() and record_damage(planned, record) is None
        present += [planned] if done else []
        print(f"{'done' if done else 'todo'}  {describe(planned)}  ({planned.spec.run_id()})")
    where = (f"complete in the shared study on {shown_storage(storage)}" if storage
             else f"with a record in {suite.results_dir}")
    print(f"{len(suite.runs) - len(present)} to run, {len(present)} {where}")
    for line in [] if storage else changed_cards(present):
        print(line)
    done = {id(planned) for planned in present}
    todo = {planned.spec.model for planned in suite.runs if id(planned) not in done}
    for line in _not_ready_offline(sorted(todo)):
        print(line)
    return 0
