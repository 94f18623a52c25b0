"""Finding task cards: the shipped ones under tasks/cards/, plus any user folders."""

from __future__ import annotations

from pathlib import Path

from tasks.card import TaskCard, load_card

SHIPPED_CARDS = Path(__file__).parent / "cards"


def _card_paths(tasks_dirs: tuple[str, ...]) -> list[Path]:
    folders = [SHIPPED_CARDS, *map(Path, tasks_dirs)]
    for folder in folders[1:]:
        if not folder.is_dir():
            raise FileNotFoundError(f"tasks folder not found: {folder}")
    return [p for folder in folders for p in sorted(folder.glob("*.yaml"))]


def available_tasks(tasks_dirs: tuple[str, ...] = ()) -> dict[str, TaskCard]:
    """name -> card; a user folder's card overrides a shipped one of the same name."""
    return {card.name: card for card in map(load_card, _card_paths(tasks_dirs))}


def find_task(name_or_path: str, *, tasks_dirs: tuple[str, ...] = ()) -> TaskCard:
    if name_or_path.endswith((".yaml", ".yml")):
        return load_card(name_or_path)
    for path in reversed(_card_paths(tasks_dirs)):
        if path.stem == name_or_path:
            return load_card(path)
    cards = available_tasks(tasks_dirs)
    if name_or_path in cards:
        return cards[name_or_path]
    raise KeyError(f"unknown task {name_or_path!r}; known tasks: {', '.join(sorted(cards))}")
