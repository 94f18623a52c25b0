"""`spbench search`: find the best prompt config for a task (or several) and a model."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import optuna
import yaml

from bench.interrupts import hold_interrupts, interrupts_restored
from bench.record import DEFAULT_RESULTS
from bench.yaml_values import refuse_repeats
from search.pruning import MARGIN

EXAMPLES = """examples:
  spbench search --task sst2 --model minilm-l6 --trials 30
  spbench search --task sst2,rte,boolq --model smollm2-135m --trials 40 --study multi
  spbench search --task sst2 --model minilm-l6 --objective score,trainable_params --trials 40
  spbench search --task sst2 --model minilm-l6 --trials 60 --workers 2 --storage postgresql://user@host/db
"""


EVAL_EVERY = 20  # steps between reports to the pruner, unless --eval-every says


def add_parser(sub) -> None:
    parser = sub.add_parser("search", help="Optuna search over prompt configs (resumable, multi-worker)",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="a task, or several separated by commas")
    parser.add_argument("--model", required=True, help="registry name (see `spbench models`), folder or hub id")
    parser.add_argument("--trials", type=int, help="finished trials (complete + pruned) the study should hold")
    parser.add_argument("--timeout", type=float, help="seconds this invocation may search")
    parser.add_argument("--study", help="study name (default: <tasks>__<model>, plus __<cost> for score,cost)")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite file under results/<study>/)")
    parser.add_argument("--objective", default="score", help="score, or score,COST with COST one of the record's "
                        "cost figures (trainable_params, train_seconds, train_flops, peak_memory_bytes, ...; "
                        "default score)")
    parser.add_argument("--space", type=Path, help="search space YAML (default search/spaces/default.yaml)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes on one storage (default 1)")
    parser.add_argument("--sampler", default="auto", choices=("auto", "tpe", "nsga2", "random"),
                        help="default auto: multivariate TPE, NSGA-II for score,COST")
    parser.add_argument("--pruner", default="hyperband", choices=("hyperband", "successive_halving", "median", "none"),
                        help="default hyperband")
    parser.add_argument("--prune-margin", type=float, default=MARGIN,
                        help="stop a trial only if its score is this many standard errors below the score it "
                             f"needed to go on (scores measured on few examples differ by noise; 0: any gap; "
                             f"default {MARGIN:g})")
    parser.add_argument("--steps", type=int, default=100, help="training steps per trial (default 100)")
    parser.add_argument("--batch-size", type=int, default=16, help="training examples per step (default 16)")
    parser.add_argument("--eval-every", type=int, help=f"steps between reports to the pruner (default {EVAL_EVERY})")
    parser.add_argument("--monitor-size", type=int, help="validation examples per report (default: --eval-size, "
                        "so the pruner sees the score it predicts, with the smallest noise margin)")
    parser.add_argument("--eval-size", type=int, default=300,
                        help="validation/test examples for final scores (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampler and the trials' training; local "
                        "worker i samples with seed + i, and with --storage the seed is mixed with a random id of "
                        "the process, so processes sharing a study do not propose the same configs (and a "
                        "shared study's sampling is not reproducible); a resume mixes in the trials the study holds, "
                        "so it does not draw the last run's configs again (default 0)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="trials recompute activations in the backward pass: far less memory on long inputs, "
                             "same scores, more time (prefix_tuning, which cannot, leaves the default space)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="folder of the study's folder (default results/)")
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from bench.config_labels import card_file
    from bench.record import results_folder
    from bench.study_storage import check_storage, open_storage, optuna_warnings_only, shown_storage, storage_url
    from bench.train import TrainSettings
    from search.costs import RECOMPUTATION_COSTS, objectives_named
    from search.space_checks import note_space_change, refuse_clashes, space_for
    from search.starting_points import enqueue_known_good, requeue_starting_point
    from search.strategy import Strategy
    from search.study import claim_study, done_trials
    from tasks import load_task

    args = _checked_flags(args)
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    if not tasks:
        raise ValueError(f"--task {args.task!r} names no task")
    refuse_repeats("--task", tasks)
    objectives = objectives_named(args.objective)
    cards = []
    for name in tasks:  # a bad data file, row or metric is named now, not by failed trials
        task = load_task(name, tasks_dirs=tuple(args.tasks_dir))
        task.checked_splits()
        task.check_metrics()
        cards.append(task.card)
    without_classes = [c.name for c in cards if not c.is_classification]
    space = space_for(args.space, cards, checkpointing=args.gradient_checkpointing)
    args = _settled_model_and_card_folders(args, cards, tasks)
    tasks = [card.name for card in cards]  # found again by name in those folders
    multi = len(objectives) == 2
    name = _study_name(args, tasks, objectives)
    folder = args.results / name
    monitor_size = args.eval_size if args.monitor_size is None else args.monitor_size
    train = TrainSettings(steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every,
                          monitor_size=monitor_size, eval_size=args.eval_size, seed=args.seed,
                          gradient_checkpointing=args.gradient_checkpointing)
    if args.storage:
        check_storage(args.storage)  # before a results folder is made for a study that cannot open
    results_folder(folder)  # after every check: a refused command leaves no folder behind
    url = storage_url(folder, args.storage)
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    strategy = Strategy(sampler=args.sampler, pruner=args.pruner, multi_objective=multi, seed=args.seed,
                        min_steps=args.eval_every, max_steps=args.steps * len(tasks), margin=args.prune_margin,
                        shared_storage=args.storage is not None)
    storage = open_storage(url, on_stale=requeue_starting_point,
                           named="--storage" if args.storage else "the study's database")
    with optuna_warnings_only():  # its "A new study created" / "Using an existing study": the line below says which
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, directions=directions,
                                    pruner=strategy.make_pruner())
    strategy = dataclasses.replace(strategy, resumed_at=len(study.trials))
    study.sampler = strategy.make_sampler()
    if multi and args.pruner != "none":
        print("no pruning: Optuna prunes single-objective studies only, so every trial trains its whole budget")
    definition = {"tasks": tasks, "model": args.model, "objective": objectives, "steps": args.steps,
                  "batch_size": args.batch_size, "eval_every": args.eval_every, "monitor_size": train.monitor_size,
                  "eval_size": args.eval_size, "seed": args.seed,  # the seed trains every trial: one per study
                  # a user's card that replaces a shipped one of its name, or a new version, is another task
                  "cards": {card.name: {"version": card.version, "card": card_file(card.path)} for card in cards}}
    if multi and objectives[1] in RECOMPUTATION_COSTS:  # scores are the same either way; these costs are not
        definition["gradient_checkpointing"] = args.gradient_checkpointing
    claim_study(study, definition, directions=directions)
    refuse_clashes(study, space)
    with optuna_warnings_only():  # its "Trial with params ... already exists. Skipping enqueue."
        note_space_change(study, space)
        if not study.trials:
            enqueue_known_good(study, space, classification=not without_classes)
    references = _references(study, args, tasks, definition["cards"]) if len(tasks) > 1 else {}
    from search.objective import Objective  # seconds of imports (the run path): after every check

    objective = Objective(space=space, tasks=tasks, model=args.model, train=train, results_dir=folder,
                          cost=objectives[1] if multi else None, references=references,
                          tasks_dirs=tuple(args.tasks_dir))
    held = done_trials(study)
    resumed = f": resumed, {held} finished {'trial' if held == 1 else 'trials'}" if held else ""
    print(f"study {name} on {shown_storage(url)}{resumed}; a line for each trial as it ends", flush=True)
    _search_and_export(study, url, objective, strategy, args, folder, train)
    return 0


def _settled_model_and_card_folders(args, cards: list, tasks: list[str]) -> argparse.Namespace:
    """`--model` refused before a study exists (not by its first trial) when unknown or unable to
    answer a task; then the arguments with `model` as a folder's full path, and `tasks_dir` with the
    folders of the cards given as files (`tasks` as typed), so best.yaml reruns from anywhere and a
    resume from another directory is the same study."""
    from bench.models import MODELS, ModelError, resolve_model
    from bench.run_checks import cannot_answer
    from tasks import find_task
    from tasks.registry import CARD_SUFFIXES

    model = resolve_model(args.model)
    for card in cards:
        if why := cannot_answer(model.kind, card):
            raise ModelError(f"model {args.model!r} / task {card.name!r}: {why}")
    tasks_dirs = list(dict.fromkeys([*args.tasks_dir, *(str(card.path.parent) for card, task in zip(cards, tasks)
                                                        if task.endswith(CARD_SUFFIXES))]))
    refuse_repeats("--task (the names the cards declare)", [card.name for card in cards])
    for card in cards:  # a card's folder may hold another card of a name given here: that would answer instead
        if (found := find_task(card.name, tasks_dirs=tuple(tasks_dirs)).path) != card.path:
            raise ValueError(f"--task {card.name}: with the folders of the cards given as files, that name finds "
                             f"{found}, not {card.path}; give each task once, by a name or a file that only it takes")
    return argparse.Namespace(**{**vars(args), "model": model.name if model.name in MODELS else model.source,
                                 "tasks_dir": tasks_dirs})


def _study_name(args, tasks: list[str], objectives: list[str]) -> str:
    from bench.names import is_folder_name

    name = args.study or (f"{'+'.join(tasks)}__{Path(args.model).name}"
                          + (f"__{objectives[1]}" if len(objectives) == 2 else ""))
    if not is_folder_name(name):
        raise ValueError(f"--study {name!r} is not a folder name (no / or ..): the study's files go to "
                         f"{args.results}/<study>/")
    return name


def _search_and_export(study: optuna.Study, url: str, objective, strategy, args, folder: Path, train) -> None:
    """Run the trials still to run, then write out the study's outputs: also when the search is
    interrupted or fails, so that what finished is not lost."""
    from search.study import done_trials
    from search.workers import run_workers

    if args.trials and (held := done_trials(study)) >= args.trials:
        print(f"the study already holds {held} finished trials (--trials {args.trials}): none to run; a larger "
              "--trials searches on")
    started = time.monotonic()
    with interrupts_restored():
        try:
            run_workers(study, url, objective, strategy=strategy, workers=args.workers, n_trials=args.trials,
                        timeout=args.timeout)
        except KeyboardInterrupt:
            hold_interrupts()  # a half-written best.yaml or adapter would be worse than waiting
            print(f"interrupted: writing out the {done_trials(study)} finished trials first", file=sys.stderr)
            _export(study, folder, args, train)
            raise
        except Exception:
            _export(study, folder, args, train)  # what finished before the error is written out all the same
            raise
    if args.timeout and time.monotonic() - started >= args.timeout and done_trials(study) < (args.trials or math.inf):
        print(f"--timeout {args.timeout:g}s reached: no new trial started after it")
    _export(study, folder, args, train)


def _checked_flags(args) -> argparse.Namespace:
    """Numbers a search cannot use, refused before anything is made (a negative timeout would end the
    search before its first trial, NaN never); the arguments with --eval-every's default filled in
    once checked."""
    if args.trials is None and args.timeout is None:
        raise ValueError("give --trials and/or --timeout")
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be 1 or more, got {args.trials}")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    for flag, value in (("--workers", args.workers), ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--eval-every", args.eval_every), ("--eval-size", args.eval_size),
                        ("--monitor-size", args.monitor_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be 1 or more, got {value}")
    if args.monitor_size is not None and args.monitor_size > args.eval_size:
        raise ValueError(f"--monitor-size {args.monitor_size} is more than --eval-size {args.eval_size}: reports "
                         "would score more validation examples than the final score")
    if args.eval_every is not None and args.eval_every > args.steps:
        raise ValueError(f"--eval-every {args.eval_every} is more than --steps {args.steps}: no trial would report "
                         "before its end, so none could be pruned")
    if not (math.isfinite(args.prune_margin) and args.prune_margin >= 0):  # NaN would switch pruning off unsaid
        raise ValueError(f"--prune-margin must be 0 or more standard errors, got {args.prune_margin}")
    # a budget shorter than the default spacing reports only at its end, as asked
    return argparse.Namespace(**{**vars(args), "eval_every": args.eval_every or EVAL_EVERY})


def _export(study: optuna.Study, folder: Path, args, train) -> None:
    from search.export import write_best, write_trials_table
    from search.objective import remove_failed_trials_leftovers
    from search.plots import write_plots
    from search.summary import summary
    from search.trial_lines import numbered

    print(summary(study))
    if removed := remove_failed_trials_leftovers(study, folder):
        print(f"removed the unfinished runs of failed {numbered('trial', removed)} in {folder / 'trials'} (an "
              "adapter saved without a record, by a run stopped after saving it): nothing reads them")
    if any(t.state != optuna.trial.TrialState.WAITING for t in study.trials):
        print(f"trials: {write_trials_table(study, folder)}")
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        best = write_best(study, folder, model=args.model, train_defaults=train, tasks_dirs=tuple(args.tasks_dir))
        print(f"best config: {best}")
        reference = _one_task_reference(study, args)
        if against := _against_full_ft(study, args, reference):
            print(against)
        test = yaml.safe_load(best.read_text()).get("test")
        if isinstance(test, dict):  # scored once, for the winner; a machine that did not run it says why instead
            print("test split (scored once, for the winner): " + "; ".join(
                f"{task} " + " ".join(f"{k}={v:.4f}" if k != "n" else f"n={v}" for k, v in scores.items())
                for task, scores in test.items()))
        elif test:
            print(f"test split: {test}")
        full_ft = reference[1][0] if reference and reference[1] else None
        for path in write_plots(study, folder / "plots", full_ft=full_ft):
            print(f"plot: {path}")


def _references(study: optuna.Study, args, tasks: list[str], cards: dict[str, dict] | None = None
                ) -> dict[str, float]:
    """Full fine-tuning's score per task, which several tasks' scores are divided by: taken from the
    bench records when the study starts and kept in it, so a resumed study keeps one scale. Unless
    every task has one, every task is scored raw (a mean of ratios and raw scores means nothing)."""
    from search.objective import full_ft_references
    from search.study import REFERENCES_ATTR

    references = study.user_attrs.get(REFERENCES_ATTR)
    if references is not None:
        print("scoring each task " + (f"relative to full fine-tuning: {_listed(references)}" if references
                                      else "raw (no full fine-tuning score of every task when the study started)"))
        return references
    results, model = args.results, args.model
    found = full_ft_references(results, tasks, model, steps=args.steps, eval_size=args.eval_size,
                               batch_size=args.batch_size, cards=cards)
    missing = [task for task in tasks if task not in found]
    if missing:
        commands = "; ".join(_full_ft_command(args, task) for task in missing)
        print(f"no full fine-tuning record of {model} on {', '.join(missing)} under {results}: every task scored "
              f"raw, not relative (`{commands}` makes them; a new study picks them up)")
    else:
        budgets = ", ".join(f"{task} {budget} steps" for task, (_, budget) in found.items())
        print(f"scoring each task relative to full fine-tuning: {_listed({t: v for t, (v, _) in found.items()})} "
              f"(the best full fine-tuning config by validation score under {results}, mean over seeds: {budgets})")
    references = {} if missing else {task: value for task, (value, _) in found.items()}
    study.set_user_attr(REFERENCES_ATTR, references)
    return references


def _full_ft_command(args, task: str) -> str:
    """The run that trains `task`'s full fine-tuning reference at the search's own budget, so that it
    is trained and scored as the trials are."""
    from bench.verdict import full_ft_command

    return full_ft_command(task, args.model, steps=args.steps, batch_size=args.batch_size, eval_size=args.eval_size,
                           tasks_dir=list(args.tasks_dir), results=args.results)


# a one-task search's task, and its full fine-tuning score and steps from the bench records (None: none)
TaskReference = tuple[str, tuple[float, int] | None]


def _one_task_reference(study: optuna.Study, args) -> TaskReference | None:
    """For a search of one task: the task, and full fine-tuning's validation score and steps from the
    bench records (None where there is none); None for several tasks, whose trials are scored relative
    to it already."""
    from search.objective import full_ft_references
    from search.study import DEFINITION_ATTR

    definition = study.user_attrs.get(DEFINITION_ATTR) or {}
    if len(definition.get("tasks", ())) != 1:
        return None
    [task] = definition["tasks"]
    found = full_ft_references(args.results, [task], args.model, steps=args.steps, eval_size=args.eval_size,
                               batch_size=args.batch_size, cards=definition.get("cards"))
    return task, found.get(task)


def _against_full_ft(study: optuna.Study, args, reference: TaskReference | None) -> str | None:
    """The winner's validation score against full fine-tuning's `reference` (see _one_task_reference)."""
    from search.winner import best_trial

    if reference is None:
        return None
    (task, found), score = reference, best_trial(study).values[0]
    if found is None:
        return (f"no full fine-tuning record of {args.model} on {task} under {args.results} to measure the winner "
                f"against (`{_full_ft_command(args, task)}` makes one)")
    reference, steps = found
    relative = f" is {score / reference:.3f}× full fine-tuning's" if reference > 0 else " against full fine-tuning's"
    return (f"the winner's validation {score:.4f}{relative} {reference:.4f} (its best run under {args.results} by "
            f"validation, mean over seeds, {steps} steps; the trials trained {args.steps})")


def _listed(references: dict[str, float]) -> str:
    return ", ".join(f"{task} {value:.4f}" for task, value in references.items())
