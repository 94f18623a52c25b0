"""Finding task cards: the shipped ones under tasks/cards/, plus any user folders.

A task is found by the name its card declares (`name:`), never by its file name, so the listing,
`tasks show` and `run` agree. Folders are searched in order: the shipped cards, then each
`--tasks-dir` in the order given; a card in a later folder replaces an earlier one of the same
name, so a user's card overrides a shipped one whatever its file is called. Two cards declaring
the same name in one folder are refused: neither is more the user's choice than the other.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from bench.yaml_values import did_you_mean, read_yaml_mapping
from tasks.card import TaskCard, TaskCardError, load_card
from tasks.notices import SkippedInput, UserNotice

SHIPPED_CARDS = Path(__file__).parent / "cards"
CARD_SUFFIXES = (".yaml", ".yml")


def is_shipped(card_path: Path) -> bool:
    """Whether the card file is one of the project's own, however the path to it was reached (a
    checkout opened through a symlink reaches the same folder by another path)."""
    return Path(card_path).resolve().parent == SHIPPED_CARDS.resolve()


class UnknownTask(ValueError):
    """No card declares the task name asked for; the message lists the known ones."""


def _folders(tasks_dirs: tuple[str, ...]) -> list[Path]:
    folders = [SHIPPED_CARDS, *map(Path, tasks_dirs)]
    for folder in folders[1:]:
        if not folder.is_dir():
            raise FileNotFoundError(f"tasks folder not found: {folder}")
    return folders


def _folder_cards(folder: Path) -> tuple[dict[str, TaskCard], list[TaskCardError]]:
    """The folder's cards by name, and the errors of the cards that cannot be loaded."""
    loaded: dict[str, list[TaskCard]] = {}
    broken: list[TaskCardError] = []
    # a file named _*.yaml is a part other cards include (shared keys), not a task of its own
    for path in sorted(path for path in folder.iterdir() if path.suffix in CARD_SUFFIXES
                       and not path.name.startswith("_")):
        try:
            card = load_card(path)
        except TaskCardError as err:
            broken.append(err)
            continue
        loaded.setdefault(card.name, []).append(card)
    cards: dict[str, TaskCard] = {}
    for name, twins in loaded.items():
        if len(twins) == 1:
            cards[name] = twins[0]
            continue
        # none of them answers to the name: which one was meant is unknown
        files = ", ".join(card.path.name for card in twins)
        broken += [TaskCardError(card.path, "name", f"{name!r} is the name of {len(twins)} cards in the same "
                                 f"folder ({files}); give each card its own name", task_name=name) for card in twins]
    return cards, broken


def _scan(tasks_dirs: tuple[str, ...]) -> list[tuple[dict[str, TaskCard], list[TaskCardError]]]:
    """Each folder's cards and broken cards, in search order (shipped first)."""
    return [_folder_cards(folder) for folder in _folders(tasks_dirs)]


def _merged(scanned: list[tuple[dict[str, TaskCard], list[TaskCardError]]]) -> dict[str, TaskCard]:
    cards: dict[str, TaskCard] = {}
    for folder_cards, _ in scanned:
        cards.update(folder_cards)
    return cards


def available_tasks(tasks_dirs: tuple[str, ...] = ()) -> dict[str, TaskCard]:
    """name -> card; a user folder's card overrides a shipped one of the same name. A card that
    cannot be loaded is left out with a warning (`spbench tasks validate` shows its problem)."""
    scanned = _scan(tasks_dirs)
    for _, broken in scanned:
        for err in broken:
            warnings.warn(f"task card left out: {err}", SkippedInput, stacklevel=2)
    return _merged(scanned)


def _declared_name(path: Path) -> str | None:
    """The `name:` a card file declares, read without checking the rest; None where unreadable."""
    try:
        data = read_yaml_mapping(Path(path), what="a task card", error=ValueError)
    except ValueError:  # UnicodeDecodeError included
        return None
    return str(data["name"]) if data.get("name") is not None else None


_REPLACED_NOTED: set[Path] = set()


def _note_replaced(card: TaskCard, shipped: TaskCard | None) -> None:
    """Say, once a process, that a user's card answers to a shipped task's name: its scores are not
    the shipped task's."""
    if shipped is not None and card.path != shipped.path and card.path not in _REPLACED_NOTED:
        _REPLACED_NOTED.add(card.path)
        warnings.warn(f"task {card.name}: {card.path} replaces the shipped card of that name", UserNotice,
                      stacklevel=3)


def find_task(name_or_path: str, *, tasks_dirs: tuple[str, ...] = ()) -> TaskCard:
    """The card of that name as `available_tasks` lists it, or the card file at that path. Folders
    are asked from the last to the first, as a later one's card replaces an earlier one's; a card
    that cannot be loaded stops only the lookups it answers (by its declared name, and by its file
    name after the folder's valid cards), so one broken card in a folder does not block every
    other task."""
    if name_or_path.endswith(CARD_SUFFIXES):
        return load_card(name_or_path)
    scanned = _scan(tasks_dirs)
    for folder_cards, broken in reversed(scanned):
        for err in broken:
            if name_or_path in (err.task_name, _declared_name(err.path)):
                raise err
        if name_or_path in folder_cards:
            _note_replaced(folder_cards[name_or_path], scanned[0][0].get(name_or_path))
            return folder_cards[name_or_path]
        for err in broken:
            if name_or_path == Path(err.path).stem:
                raise err
    cards = _merged(scanned)
    # a file name is not a task name; say which name the file declares
    named = [f" ({card.path.name} declares name {card.name!r})" for card in cards.values()
             if card.path.stem == name_or_path]
    unloadable = "".join(f"; a card that cannot be loaded: {err}" for _, broken in scanned for err in broken)
    guess = "" if named else did_you_mean(name_or_path, cards, after=";")
    raise UnknownTask(f"unknown task {name_or_path!r}{''.join(named)}; known tasks: {', '.join(sorted(cards))}"
                      + guess + unloadable)
