"""The warnings the project gives a person at the terminal, each shown as one line."""

import os


class UserNotice(UserWarning):
    """Something about the input a person should know, as one line (not a developer's warning)."""


class SkippedInput(UserNotice):
    """A task card, run record or failure file that could not be read and was left out."""


def first_line(err: BaseException | str | None) -> str:
    """An error's message (or a text) cut to its first line, for a one-line refusal: libraries'
    messages run on for pages. Empty where there is no message."""
    lines = str(err or "").strip().splitlines()
    return lines[0] if lines else ""


def hub_offline_hint() -> str:
    """What to add to a failed hub lookup's message: where HF_HUB_OFFLINE is not set, that setting it
    makes such a lookup fail at once, not after a round of retries (tens of seconds without a network)."""
    # read as the hub reads it ("0" or "false" is not set)
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return ""
    return "; without a network, HF_HUB_OFFLINE=1 says so at once instead of retrying"
