"""The space a search runs on, checked before any trial: against its tasks (a value a task refuses),
its flags (a method gradient checkpointing cannot train) and its study (a parameter the earlier
trials rule out, a change of space the person should hear of)."""

from __future__ import annotations

from pathlib import Path

import optuna

from bench.methods import get_method
from search.space import SearchSpace, SpaceError, load_space
from search.starting_points import refit_queued_points
from search.study import SPACE_ATTR, done_trials, space_clashes


def space_for(path: Path | None, cards: list, *, checkpointing: bool) -> SearchSpace:
    """The space to search, checked before a study exists (a bad space is refused here, before any
    trial). The default space covers every kind of task and setting: it drops what these tasks or
    settings cannot take; a space of the user's that offers it is refused."""
    space = load_space(path)
    for method, name, value, why in list(_refused_values(space, cards)):
        if not space.is_default:
            raise SpaceError(f"{space.path}: {why}: remove {method}.{name}={value} from the space")
        space = space.without_choice(method, name, value)
        print(f"left out of the default space: {why}")
    return _without_uncheckpointable(space) if checkpointing else space


def _refused_values(space: SearchSpace, cards: list):
    """(method, parameter, value, why) for each value the space offers that its method refuses for
    one or more of the tasks, as the method's `refusal` says (prompt tuning's class-label init for a
    task without classes)."""
    for method in space.methods:
        for param in space.params.get(method, ()):
            refusal = get_method(method).refusal
            for value in param.edge_values():
                refused = [(card.name, why) for card in cards if (why := refusal(None, card, {param.name: value}))]
                if refused:  # the first task's reason, and the others that refuse it too
                    others = [name for name, _ in refused[1:]]
                    yield method, param.name, value, refused[0][1] + (f" (and {', '.join(others)})" if others else "")


def _without_uncheckpointable(space: SearchSpace) -> SearchSpace:
    """The default space without the methods gradient checkpointing cannot train; another space is refused."""
    refused = [m for m in space.methods if not get_method(m).allows_checkpointing]
    if not refused:
        return space
    if not space.is_default:
        raise SpaceError(f"{space.path}: {', '.join(refused)} cannot train with --gradient-checkpointing; "
                         "remove it from the space's methods or leave the flag off")
    for method in refused:
        space = space.without_method(method)
    print(f"{', '.join(refused)} left out of the default space: it cannot train with --gradient-checkpointing")
    return space


def refuse_clashes(study: optuna.Study, space: SearchSpace) -> None:
    """A space the study's earlier trials rule out is refused before any trial (see `space_clashes`)."""
    clashes = space_clashes(study, space)
    if not clashes:
        return
    methods = any(c.startswith("method:") for c in clashes) and space.is_default
    raise SpaceError(f"study {study.study_name!r} cannot search this space ({space.path}): {'; '.join(clashes)}. "
                     "Optuna keeps a parameter's choices and scale for the life of a study: search as before"
                     + (" (--gradient-checkpointing leaves prefix_tuning out of the default space)" if methods else "")
                     + ", or start another study (--study NAME)")


def note_space_change(study: optuna.Study, space: SearchSpace) -> None:
    """A resumed study may search another space (widened or narrowed: the scores stay comparable,
    the training budget being the same), but the person should know its trials come from both."""
    digest = space.digest()
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored and stored["digest"] == digest:
        return
    if stored:
        ran = done_trials(study)  # a failed or killed trial is not counted, here or in the budget
        print(f"the study's {ran} finished {'trial' if ran == 1 else 'trials'} came from another space "
              f"({stored['path']}); new ones come from {space.path}, and all are compared")
        requeued, dropped = refit_queued_points(study, space)
        if requeued or dropped:
            print(f"starting points queued under the earlier space: {requeued} queued again, fitted to this one; "
                  f"{dropped} dropped (their method or choice is not offered here)")
    study.set_user_attr(SPACE_ATTR, {"digest": digest, "path": str(space.path)})
