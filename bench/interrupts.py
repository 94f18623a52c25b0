"""Ctrl-C (SIGINT) while runs or trials are in flight: stop with a line, not a traceback, and let
the bookkeeping that keeps finished work finish first."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading


ERROR_KEPT = "spbench_exc_info"  # a log record's error, kept where its traceback is dropped


class _NoTracebackFor(logging.Filter):
    """Optuna logs a failed trial with its traceback; for Ctrl-C, or an error whose message says it
    all (the reason is kept on the trial too), that is noise. A trial ended by a `silent` error ran
    nothing (another worker took its slot): both of Optuna's lines about it are dropped, and the
    search's summary counts it as not run."""

    def __init__(self, expected: tuple[type[BaseException], ...], silent: tuple[type[BaseException], ...] = ()):
        super().__init__()
        self.expected, self.silent = expected, silent
        self.silenced: str | None = None  # the trial whose second line is still to come

    def filter(self, record: logging.LogRecord) -> bool:
        failed = re.match(r"Trial (\d+) failed", str(record.msg))
        # the error as logged: another handler's filter of this kind may have dropped its traceback
        # from the record they share
        error = getattr(record, ERROR_KEPT, None) or record.exc_info
        if error and isinstance(error[1], self.silent):
            self.silenced = failed.group(1) if failed else None
            return False
        if failed and failed.group(1) == self.silenced:  # its second line, "failed with value None"
            self.silenced = None
            return False
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            setattr(record, ERROR_KEPT, record.exc_info)
            record.exc_info = None
        return True


def quiet_trial_failures(*expected: type[BaseException], silent: tuple[type[BaseException], ...] = ()) -> None:
    """Optuna's log of a trial failed by Ctrl-C, or by one of the `expected` errors, keeps its one
    line and drops the traceback; of one failed by a `silent` error, nothing is kept."""
    quiet = (KeyboardInterrupt, *expected)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoTracebackFor) and (f.expected, f.silent) == (quiet, silent)
                   for f in handler.filters):
            handler.addFilter(_NoTracebackFor(quiet, silent))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal handlers are set there only


# the signals that interrupt this process as Ctrl-C does: SIGINT, and those `interrupt_on` adds (the
# signal a search worker is stopped with); the last one that did
_INTERRUPTING = [signal.SIGINT]
_last_interruption: list[int] = []


def _interrupt(signum, frame):
    _last_interruption[:] = [signum]
    raise KeyboardInterrupt


def interrupt_on(signum: signal.Signals) -> None:
    """Have `signum` interrupt this process as Ctrl-C does (KeyboardInterrupt), whatever it was set to
    when the process started, and be held with Ctrl-C by `hold_interrupts`."""
    if not _main_thread():
        return
    signal.signal(signum, _interrupt)
    if signum not in _INTERRUPTING:
        _INTERRUPTING.append(signum)


def interrupted_by() -> int | None:
    """The signal `interrupt_on` set that last interrupted this process (None: none did; Ctrl-C's own
    SIGINT keeps Python's handler)."""
    return _last_interruption[0] if _last_interruption else None


@contextlib.contextmanager
def interrupting(signum: signal.Signals):
    """`interrupt_on(signum)` for the block; the signal's handler as it was after it."""
    if not _main_thread():
        yield
        return
    previous, added = signal.getsignal(signum), signum not in _INTERRUPTING
    interrupt_on(signum)
    try:
        yield
    finally:
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if added:
            _INTERRUPTING.remove(signum)


def hold_interrupts() -> None:
    """Ignore further Ctrl-C until `interrupts_restored` ends: a second one would cut the first one's
    bookkeeping short (a trial left running, a starting point not queued again)."""
    if _main_thread():
        for signum in _INTERRUPTING:
            signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def interrupts_restored():
    """Whatever `hold_interrupts` did inside the block is undone when it ends."""
    handlers = {signum: signal.getsignal(signum) for signum in _INTERRUPTING} if _main_thread() else {}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)
