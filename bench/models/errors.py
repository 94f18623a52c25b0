"""Why a model cannot be had or used; each message says what to do."""


class ModelError(ValueError):
    """A model that cannot be resolved or used; the message says what to do."""


class ModelUnavailable(ModelError):
    """A model that cannot be had at all here (unknown, not installed, no weights, hub unreachable),
    whatever the run asks of it."""
