"""Full fine-tuning's scores from the bench records, which a search measures its trials against: a
search of several tasks scores each task relative to its reference; a one-task search compares its
winner with its task's."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import optuna

if TYPE_CHECKING:
    from search.request import SearchRequest


class TaskReference(NamedTuple):
    """A one-task search's task, with full fine-tuning's validation score and training steps from the
    bench records (None: no record of it)."""
    task: str
    score: float | None = None
    steps: int | None = None
    learned_nothing: str | None = None  # how it compares with the commonest class, where it may have learned nothing


def task_references(study: optuna.Study, request: SearchRequest) -> dict[str, float]:
    """Full fine-tuning's score per task, which several tasks' scores are divided by: taken from the
    bench records when the study starts and kept in it, so a resumed study keeps one scale. Unless
    every task has one, every task is scored raw (a mean of ratios and raw scores means nothing); a
    single task is scored raw, its winner compared at the end (see `one_task_reference`)."""
    from search.objective import full_ft_references
    from search.study import REFERENCES_ATTR, WEAK_REFERENCES_ATTR

    if len(request.tasks) < 2:
        return {}
    references = study.user_attrs.get(REFERENCES_ATTR)
    if references is not None:
        print("scoring each task " + (f"relative to full fine-tuning: {_listed(references)}" if references
                                      else "raw (no full fine-tuning score of every task when the study started)"))
        _warn_weak(study.user_attrs.get(WEAK_REFERENCES_ATTR, {}))  # said again on every resume
        return references
    results, model, train = request.results, request.model, request.train
    found = full_ft_references(results, list(request.tasks), model, steps=train.steps, eval_size=train.eval_size,
                               batch_size=train.batch_size, cards=request.card_versions)
    missing = [task for task in request.tasks if task not in found]
    if missing:
        commands = "; ".join(_full_ft_command(request, task) for task in missing)
        print(f"no full fine-tuning record of {model} on {', '.join(missing)} under {results}: every task scored "
              f"raw, not relative (`{commands}` makes them; a new study picks them up)")
    else:
        budgets = ", ".join(f"{task} {reference.steps} steps" for task, reference in found.items())
        print(f"scoring each task relative to full fine-tuning: {_listed({t: r.score for t, r in found.items()})} "
              f"(the best full fine-tuning config by validation score under {results}, mean over seeds: {budgets})")
        weak = {task: reference.learned_nothing for task, reference in found.items() if reference.learned_nothing}
        _warn_weak(weak)
        study.set_user_attr(WEAK_REFERENCES_ATTR, weak)
    references = {} if missing else {task: reference.score for task, reference in found.items()}
    study.set_user_attr(REFERENCES_ATTR, references)
    return references


def _warn_weak(weak: dict[str, str]) -> None:
    """The references at or near chance, each with how it compares with the commonest class: a ratio to
    chance says little of a trial."""
    for task, learned_nothing in weak.items():
        print(f"  {task}: full fine-tuning {learned_nothing} on validation: it may not have learned at its budget, "
              "and a trial's ratio to it says little")


def one_task_reference(study: optuna.Study, request: SearchRequest) -> TaskReference | None:
    """For a search of one task: the task, and full fine-tuning's validation score and steps from the
    bench records; None for several tasks, whose trials are scored relative to it already."""
    from search.objective import full_ft_references
    from search.study import DEFINITION_ATTR

    definition = study.user_attrs.get(DEFINITION_ATTR) or {}
    if len(definition.get("tasks", ())) != 1:
        return None
    [task] = definition["tasks"]
    train = request.train
    found = full_ft_references(request.results, [task], request.model, steps=train.steps, eval_size=train.eval_size,
                               batch_size=train.batch_size, cards=definition.get("cards"))
    if task not in found:
        return TaskReference(task)
    return TaskReference(task, found[task].score, found[task].steps, found[task].learned_nothing)


def against_full_ft(study: optuna.Study, request: SearchRequest, reference: TaskReference | None) -> str | None:
    """The winner's validation score against full fine-tuning's `reference` (see `one_task_reference`)."""
    from search.study import score_label
    from search.winner import best_trial

    if reference is None:
        return None
    score = best_trial(study).values[0]
    if reference.score is None:
        return (f"no full fine-tuning record of {request.model} on {reference.task} under {request.results} to "
                f"measure the winner against (`{_full_ft_command(request, reference.task)}` makes one)")
    relative = (f" is {score / reference.score:.3f}× full fine-tuning's" if reference.score > 0
                else " against full fine-tuning's")
    weak = (f"; full fine-tuning {reference.learned_nothing}: it may not have learned at its budget, and the "
            "comparison says little") if reference.learned_nothing else ""
    return (f"the winner's {score_label(study)} {score:.4f}{relative} {reference.score:.4f} (its best run under "
            f"{request.results} by validation, mean over seeds, {reference.steps} steps; the trials trained "
            f"{request.train.steps}){weak}")


def _full_ft_command(request: SearchRequest, task: str) -> str:
    """The run that trains `task`'s full fine-tuning reference at the search's own budget, so that it
    is trained and scored as the trials are."""
    from bench.verdict import full_ft_command

    train = request.train
    return full_ft_command(task, request.model, steps=train.steps, batch_size=train.batch_size,
                           eval_size=train.eval_size, tasks_dir=list(request.tasks_dirs), results=request.results)


def _listed(references: dict[str, float]) -> str:
    return ", ".join(f"{task} {value:.4f}" for task, value in references.items())
