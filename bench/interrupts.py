"""Ctrl-C (SIGINT) while runs or trials are in flight: stop with a line, not a traceback, and let
the bookkeeping that keeps finished work finish first."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading


class _NoTracebackFor(logging.Filter):
    """Optuna logs a failed trial with its traceback; for Ctrl-C, or an error whose message says it
    all (the reason is kept on the trial too), that is noise."""

    def __init__(self, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record.exc_info = None
        return True


def quiet_trial_failures(*expected: type[BaseException]) -> None:
    """Optuna's log of a trial failed by Ctrl-C, or by one of the `expected` errors, keeps its one
    line and drops the traceback."""
    quiet = (KeyboardInterrupt, *expected)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoTracebackFor) and f.expected == quiet for f in handler.filters):
            handler.addFilter(_NoTracebackFor(quiet))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal handlers are set there only


def hold_interrupts() -> None:
    """Ignore further Ctrl-C until `interrupts_restored` ends: a second one would cut the first one's
    bookkeeping short (a trial left running, a starting point not queued again)."""
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def interrupts_restored():
    """Whatever `hold_interrupts` did inside the block is undone when it ends."""
    handler = signal.getsignal(signal.SIGINT) if _main_thread() else None
    try:
        yield
    finally:
        if handler is not None and signal.getsignal(signal.SIGINT) is not handler:
            signal.signal(signal.SIGINT, handler)
