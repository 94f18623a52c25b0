"""The warning the project gives when a command leaves an input out and goes on without it."""


class SkippedInput(UserWarning):
    """A task card, run record or failure file that could not be read and was left out."""
