"""Finding task cards: the shipped ones under tasks/cards/, plus any user folders.

A task is found by the name its card declares (`name:`), never by its file name, so the listing,
`tasks show` and `run` agree. Folders are searched in order: the shipped cards, then each
`--tasks-dir` in the order given; a card in a later folder replaces an earlier one of the same
name, so a user's card overrides a shipped one whatever its file is called. Two cards declaring
the same name in one folder are refused: neither is more the user's choice than the other.
"""

from __future__ import annotations

from pathlib import Path

from tasks.card import TaskCard, TaskCardError, load_card

SHIPPED_CARDS = Path(__file__).parent / "cards"


def _folders(tasks_dirs: tuple[str, ...]) -> list[Path]:
    folders = [SHIPPED_CARDS, *map(Path, tasks_dirs)]
    for folder in folders[1:]:
        if not folder.is_dir():
            raise FileNotFoundError(f"tasks folder not found: {folder}")
    return folders


def _folder_cards(folder: Path) -> dict[str, TaskCard]:
    cards: dict[str, TaskCard] = {}
    for path in sorted(folder.glob("*.yaml")):
        card = load_card(path)
        if card.name in cards:
            raise TaskCardError(path, "name", f"{card.name!r} is also the name of {cards[card.name].path.name} "
                                "in the same folder; give each card its own name")
        cards[card.name] = card
    return cards


def available_tasks(tasks_dirs: tuple[str, ...] = ()) -> dict[str, TaskCard]:
    """name -> card; a user folder's card overrides a shipped one of the same name."""
    cards: dict[str, TaskCard] = {}
    for folder in _folders(tasks_dirs):
        cards.update(_folder_cards(folder))
    return cards


def find_task(name_or_path: str, *, tasks_dirs: tuple[str, ...] = ()) -> TaskCard:
    """The card of that name as `available_tasks` lists it, or the card file at that path."""
    if name_or_path.endswith((".yaml", ".yml")):
        return load_card(name_or_path)
    cards = available_tasks(tasks_dirs)
    if name_or_path in cards:
        return cards[name_or_path]
    # a file name is not a task name; say which name the file declares
    named = [f" ({card.path.name} declares name {card.name!r})" for card in cards.values()
             if card.path.stem == name_or_path]
    raise KeyError(f"unknown task {name_or_path!r}{''.join(named)}; known tasks: {', '.join(sorted(cards))}")
