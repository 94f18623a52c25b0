"""The error of settings a run cannot take, shared by the checks of its method and training settings."""


class SettingsError(ValueError):
    """A run's settings refused: a training setting out of range, a `--set` naming no setting, or (as
    `MethodError`) a method's own settings or their fit to the model and task."""
