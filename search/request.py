"""What `spbench search` is asked to do, read from its flags once and checked before anything is
made: the tasks and their cards, the model, the space, the objectives, the study's name and folder,
every trial's training budget, and how long and on how many workers to search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.yaml_values import refuse_repeats

if TYPE_CHECKING:
    from bench.train import TrainSettings
    from search.space import SearchSpace
    from tasks.card import TaskCard

EVAL_EVERY = 20  # steps between reports to the pruner, unless --eval-every says


@dataclass(frozen=True)
class SearchRequest:
    """A search as the command asks for it, every flag checked (see `search_request`)."""
    cards: tuple[TaskCard, ...]
    model: str  # a registry name or a folder's full path, so that best.yaml reruns from anywhere
    tasks_dirs: tuple[str, ...]  # --tasks-dir, then the folders of the cards given as files
    objectives: tuple[str, ...]  # score, or score and a cost
    space: SearchSpace
    study: str
    results: Path
    storage: str | None  # None: a SQLite file in the study's folder
    train: TrainSettings  # every trial's, under the training settings the space samples
    trials: int | None
    timeout: float | None
    workers: int
    sampler: str
    pruner: str
    prune_margin: float

    @property
    def tasks(self) -> tuple[str, ...]:
        """The names the cards declare, found again by name in `tasks_dirs`."""
        return tuple(card.name for card in self.cards)

    @property
    def folder(self) -> Path:
        return self.results / self.study

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) == 2

    @property
    def cost(self) -> str | None:
        """The second objective, minimised (None: the score alone)."""
        return self.objectives[1] if self.multi_objective else None

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.multi_objective else ["maximize"]

    @property
    def card_versions(self) -> dict[str, dict]:
        """Each task's card file (relative to the folder it was found in) and version."""
        from bench.config_labels import card_file

        return {card.name: {"version": card.version, "card": card_file(card.path)} for card in self.cards}


def search_request(args) -> SearchRequest:
    """The search the arguments ask for, refused where a flag, a task, the space or the model cannot
    serve it: the flags and the space first, which take no model code to check."""
    from search.costs import objectives_named
    from search.space_checks import space_for

    _refuse_unusable_flags(args)
    names = _task_names(args.task)
    objectives = objectives_named(args.objective)
    cards = _checked_cards(names, args.tasks_dir)
    space = space_for(args.space, cards, checkpointing=args.gradient_checkpointing)
    model, tasks_dirs = _settled_model_and_card_folders(args.model, args.tasks_dir, cards, names)
    tasks = tuple(card.name for card in cards)  # found again by name in those folders
    study = _study_name(args.study, tasks, model, objectives, args.results)
    return SearchRequest(cards=tuple(cards), model=model, tasks_dirs=tuple(tasks_dirs),
                         objectives=tuple(objectives), space=space, study=study, results=args.results,
                         storage=args.storage, train=_trial_settings(args), trials=args.trials, timeout=args.timeout,
                         workers=args.workers, sampler=args.sampler, pruner=args.pruner, prune_margin=args.prune_margin)


def _refuse_unusable_flags(args) -> None:
    """Numbers a search cannot use, refused before anything is made (a negative timeout would end the
    search before its first trial, NaN never)."""
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
    # Optuna prunes single-objective studies only; several tasks report at each one's end too
    prunes = args.pruner != "none" and "," not in args.objective and len(_task_names(args.task)) == 1
    if prunes and args.eval_every is not None and args.eval_every > args.steps:
        raise ValueError(f"--eval-every {args.eval_every} is more than --steps {args.steps}: no trial would report "
                         "before its end, so none could be pruned")
    if not (math.isfinite(args.prune_margin) and args.prune_margin >= 0):  # NaN would switch pruning off unsaid
        raise ValueError(f"--prune-margin must be 0 or more standard errors, got {args.prune_margin}")


def _task_names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"--task {text!r} names no task")
    refuse_repeats("--task", names)
    return names


def _checked_cards(names: list[str], tasks_dirs: list[str]) -> list[TaskCard]:
    from tasks import load_task

    cards = []
    for name in names:  # a bad data file, row or metric is named now, not by failed trials
        task = load_task(name, tasks_dirs=tuple(tasks_dirs))
        task.checked_splits()
        task.check_metrics()
        cards.append(task.card)
    return cards


def _settled_model_and_card_folders(model: str, tasks_dirs: list[str], cards: list[TaskCard],
                                    names: list[str]) -> tuple[str, list[str]]:
    """`model` refused before a study exists (not by its first trial) when unknown or unable to
    answer a task; then `model` as a registry name or a folder's full path, and `tasks_dirs` with the
    folders of the cards given as files (`names` as typed), so best.yaml reruns from anywhere and a
    resume from another directory is the same study."""
    from bench.models import MODELS, ModelError, resolve_model
    from bench.run_checks import cannot_answer
    from tasks import find_task
    from tasks.registry import CARD_SUFFIXES

    resolved = resolve_model(model)
    for card in cards:
        if why := cannot_answer(resolved.kind, card):
            raise ModelError(f"model {model!r} / task {card.name!r}: {why}")
    tasks_dirs = list(dict.fromkeys([*tasks_dirs, *(str(card.path.parent) for card, name in zip(cards, names)
                                                    if name.endswith(CARD_SUFFIXES))]))
    refuse_repeats("--task (the names the cards declare)", [card.name for card in cards])
    for card in cards:  # a card's folder may hold another card of a name given here: that would answer instead
        if (found := find_task(card.name, tasks_dirs=tuple(tasks_dirs)).path) != card.path:
            raise ValueError(f"--task {card.name}: with the folders of the cards given as files, that name finds "
                             f"{found}, not {card.path}; give each task once, by a name or a file that only it takes")
    return (resolved.name if resolved.name in MODELS else resolved.source), tasks_dirs


def _study_name(given: str | None, tasks: tuple[str, ...], model: str, objectives: list[str], results: Path) -> str:
    from bench.names import is_folder_name

    if given is not None and not given.strip():  # `--study $NAME` with NAME unset: not the default study, unasked
        raise ValueError("--study names no study (leave the flag out for the default name, "
                         f"{_default_study_name(tasks, model, objectives)})")
    name = given or _default_study_name(tasks, model, objectives)
    if not is_folder_name(name):
        raise ValueError(f"--study {name!r} is not a folder name (no / or ..): the study's files go to "
                         f"{results}/<study>/")
    return name


def _default_study_name(tasks: tuple[str, ...], model: str, objectives: list[str]) -> str:
    return f"{'+'.join(tasks)}__{Path(model).name}" + (f"__{objectives[1]}" if len(objectives) == 2 else "")


def _trial_settings(args) -> TrainSettings:
    from bench.train import TrainSettings

    return TrainSettings(steps=args.steps, batch_size=args.batch_size,
                         # a budget shorter than the default spacing reports only at its end, as asked
                         eval_every=args.eval_every or EVAL_EVERY,
                         monitor_size=args.eval_size if args.monitor_size is None else args.monitor_size,
                         eval_size=args.eval_size, seed=args.seed, gradient_checkpointing=args.gradient_checkpointing,
                         # a trial is judged on its final validation score: its untrained state's score (all
                         # of its validation examples, generated answers for a QA task) would be read by no one
                         score_initial=False)
