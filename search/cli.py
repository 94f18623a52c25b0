"""`spbench search`: find the best prompt config for a task (or several) and a model."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from bench.interrupts import hold_interrupts, interrupting, interrupts_restored
from bench.record import DEFAULT_RESULTS
from search.pruning import MARGIN
from search.request import EVAL_EVERY, SearchRequest, search_request
from tasks.notices import counted

if TYPE_CHECKING:
    from search.strategy import Strategy

DESCRIPTION = """Search a space of prompt configs for the best validation score (or score
against a cost) of a model on a task, or on several. Each trial is a run with
its record; the same command resumes the study. The winner's best.yaml and
adapter, a table of the trials and charts go to --results/<study>/, and the
winner's test score is measured once, at the end."""

EXAMPLES = """examples:
  spbench search --task sst2 --model minilm-l6 --trials 30
  spbench search --task sst2,rte,boolq --model smollm2-135m --trials 40 --study multi
  spbench search --task sst2 --model minilm-l6 --objective score,trainable_params --trials 40
  spbench search --task sst2 --model minilm-l6 --trials 60 --workers 2 --storage postgresql://user@host/db
"""


def add_parser(sub) -> None:
    parser = sub.add_parser("search", help="Optuna search over prompt configs (resumable, multi-worker)",
                            description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="a task, or several separated by commas")
    parser.add_argument("--model", required=True, help="registry name (see `spbench models`), folder or hub id")
    parser.add_argument("--trials", type=int, help="finished trials (complete + pruned) the study should hold")
    parser.add_argument("--timeout", type=float,
                        help="seconds after which this command starts no trial (those running finish)")
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
    from bench.record import results_folder
    from search.references import task_references
    from search.space_checks import refuse_clashes
    from search.study import METRIC_ATTR, claim_study, fail_stale_trials, study_definition

    request = search_request(args)  # every check that needs no study: a command it refuses makes nothing
    study, url, strategy = _opened_study(request)
    claim_study(study, study_definition(request), directions=request.directions)
    refuse_clashes(study, request.space)  # the last refusal: the study is this command's from here on
    if request.storage:
        results_folder(request.folder)  # a refused command leaves no folder behind (a local study's holds it)
    stale = fail_stale_trials(study)  # before the space settles: a starting point such a trial held is queued again
    if len(request.cards) == 1:  # what its trials' scores are, in every line and chart that names them
        study.set_user_attr(METRIC_ATTR, request.cards[0].primary_metric)
    _announce(study, url, request, stale)  # the first line; the notes on the space and references follow it
    _settle_space(study, request)
    references = task_references(study, request)
    from search.objective import Objective  # seconds of imports (the run path): after every check

    objective = Objective(space=request.space, tasks=list(request.tasks), model=request.model, train=request.train,
                          results_dir=request.folder, cost=request.cost, references=references,
                          tasks_dirs=request.tasks_dirs)
    if _runs_trials(study, request):
        _note_no_pruning(request)
    from search.workers import STOP_SIGNAL

    with interrupting(STOP_SIGNAL):  # `kill` stops it as Ctrl-C does: a command started with `&` ignores Ctrl-C
        _search_and_export(study, url, objective, strategy, request)
    return 0


def _runs_trials(study: optuna.Study, request: SearchRequest) -> bool:
    from search.study import done_trials

    return not request.trials or done_trials(study) < request.trials


def _note_no_pruning(request: SearchRequest) -> None:
    """Where the flags leave the pruner nothing to stop a trial on, say so: no trial is stopped early."""
    if request.pruner == "none":
        return
    if request.multi_objective:
        print("no pruning: Optuna prunes single-objective studies only, so every trial trains its whole budget")
    elif len(request.tasks) == 1 and request.train.eval_every >= request.train.steps:
        # several tasks report at each one's end, and may be stopped there
        print(f"no pruning: a trial reports to the pruner every {request.train.eval_every} steps (--eval-every) and "
              f"trains {request.train.steps} (--steps), so only at its end")


def _opened_study(request: SearchRequest) -> tuple[optuna.Study, str, Strategy]:
    """The study, new or resumed, with the sampler and pruner the flags ask for; its storage's URL,
    and that strategy (worker processes rebuild their sampler and pruner from it)."""
    from bench.record import results_folder, unusable_folder
    from bench.study_storage import check_storage, open_storage, optuna_warnings_only, storage_url
    from search.starting_points import requeue_starting_point
    from search.strategy import Strategy

    if request.storage:
        if problem := unusable_folder(request.folder):  # made once the study is this command's: checked now
            raise ValueError(f"results folder {request.folder}: {problem}")
        check_storage(request.storage)  # before a results folder is made for a study that cannot open
    else:
        results_folder(request.folder)  # the study's database goes in it (a shared study's: once it is this command's)
    url = storage_url(request.folder, request.storage)
    train = request.train
    strategy = Strategy(sampler=request.sampler, pruner=request.pruner, multi_objective=request.multi_objective,
                        seed=train.seed, min_steps=train.eval_every, max_steps=train.steps * len(request.tasks),
                        margin=request.prune_margin, shared_storage=request.storage is not None)
    storage = open_storage(url, on_stale=requeue_starting_point,
                           named="--storage" if request.storage else "the study's database")
    with optuna_warnings_only():  # its "A new study created" / "Using an existing study": the line below says which
        study = optuna.create_study(study_name=request.study, storage=storage, load_if_exists=True,
                                    directions=request.directions, pruner=strategy.make_pruner())
    strategy = dataclasses.replace(strategy, resumed_at=len(study.trials))
    study.sampler = strategy.make_sampler()
    return study, url, strategy


def _settle_space(study: optuna.Study, request: SearchRequest) -> None:
    """A changed space noted (its queued starting points refitted), a new study's starting points queued."""
    from bench.study_storage import optuna_warnings_only
    from search.space_checks import note_space_change
    from search.starting_points import enqueue_known_good

    with optuna_warnings_only():  # its "Trial with params ... already exists. Skipping enqueue."
        if _runs_trials(study, request):  # the space serves a trial still to run
            note_space_change(study, request.space)
        if not study.trials:
            enqueue_known_good(study, request.space, classification=all(c.is_classification for c in request.cards))


def _announce(study: optuna.Study, url: str, request: SearchRequest, stale: list[int]) -> None:
    """The study's opening line; `stale`: the trials just found left running by a killed command."""
    from bench.study_storage import shown_storage
    from search.starting_points import is_requeued
    from search.study import done_trials
    from search.trial_lines import numbered

    held = done_trials(study)
    resumed = f": resumed, {held} finished {'trial' if held == 1 else 'trials'}" if held else ""
    if stale:
        requeued = [number for number in stale if is_requeued(study.trials[number])]
        resumed += (f" ({numbered('trial', stale)} left running by a command that stopped without a word, marked "
                    f"failed and not counted{_queued_again(stale, requeued)})")
    print(f"study {study.study_name} on {shown_storage(url)}{resumed}"
          f"{'; a line for each trial as it ends' if _runs_trials(study, request) else ''}", flush=True)


def _queued_again(stale: list[int], requeued: list[int]) -> str:
    """Which of the killed trials' starting points will run again (Lester's recipe, say)."""
    if not requeued:
        return ""
    if requeued == stale:
        return "; its starting point queued again" if len(stale) == 1 else "; their starting points queued again"
    from search.trial_lines import numbered

    return f"; the starting point{'s' if len(requeued) > 1 else ''} of {numbered('trial', requeued)} queued again"


def _search_and_export(study: optuna.Study, url: str, objective, strategy: Strategy,
                       request: SearchRequest) -> None:
    """Run the trials still to run, then write out the study's outputs: also when the search is
    interrupted or fails, so that what finished is not lost."""
    from search.outputs import write_outputs
    from search.study import done_trials
    from search.workers import run_workers

    if request.trials and (held := done_trials(study)) >= request.trials:
        print(f"the study already holds {counted(held, 'finished trial')} (--trials {request.trials}): none to run; "
              "a larger --trials searches on")
    started = time.monotonic()
    with interrupts_restored():
        try:
            run_workers(study, url, objective, strategy=strategy, workers=request.workers, n_trials=request.trials,
                        timeout=request.timeout)
        except KeyboardInterrupt:
            hold_interrupts()  # a half-written best.yaml or adapter would be worse than waiting
            print(f"interrupted: writing out the {done_trials(study)} finished trials first", file=sys.stderr)
            write_outputs(study, request)
            raise
        except Exception:
            write_outputs(study, request)  # what finished before the error is written out all the same
            raise
    out_of_time = request.timeout and time.monotonic() - started >= request.timeout
    if out_of_time and done_trials(study) < (request.trials or math.inf):
        print(f"--timeout {request.timeout:g}s reached: no new trial started after it")
    write_outputs(study, request)
