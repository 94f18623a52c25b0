"""The warnings the project gives a person at the terminal, each shown as one line."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


class UserNotice(UserWarning):
    """Something about the input a person should know, as one line (not a developer's warning)."""


class SkippedInput(UserNotice):
    """A task card, run record or failure file that could not be read and was left out."""


@contextlib.contextmanager
def skipped_inputs_kept() -> Iterator[list[str]]:
    """The warnings raised in the block, said as ever once it ends, and the messages of the
    `SkippedInput` ones among them kept in the list it gives: what a report writes down too."""
    kept: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield kept
    for caught_warning in caught:
        warnings.warn(caught_warning.message, caught_warning.category, stacklevel=3)
    kept += [str(w.message) for w in caught if issubclass(w.category, SkippedInput)]


def counted(number: int, noun: str) -> str:
    """"1 run", "2 runs": a count with its noun (a regular plural)."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def first_line(err: BaseException | str | None) -> str:
    """An error's message (or a text) cut to its first line, for a one-line refusal: libraries'
    messages run on for pages. Empty where there is no message."""
    lines = str(err or "").strip().splitlines()
    return lines[0] if lines else ""
