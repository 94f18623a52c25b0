"""The warnings the project gives a person at the terminal, each shown as one line."""


class UserNotice(UserWarning):
    """Something about the input a person should know, as one line (not a developer's warning)."""


class SkippedInput(UserNotice):
    """A task card, run record or failure file that could not be read and was left out."""
