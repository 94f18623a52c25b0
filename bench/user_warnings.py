"""Warnings as a person at the terminal should see them: the project's own (a record or task card
left out) as one line each, and library notices meant for developers left out (Optuna's
experimental flags on features used on purpose, a transformers deprecation raised inside PEFT)."""

from __future__ import annotations

import warnings

from tasks.notices import UserNotice

_LIBRARY_FORMAT = warnings.formatwarning


def _one_line(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, UserNotice):
        return f"spbench: warning: {message}\n"
    return _LIBRARY_FORMAT(message, category, filename, lineno, line)


def show_warnings_to_users() -> None:
    """Set up this process's warnings for the command line (each worker process calls it too)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.formatwarning = _one_line
