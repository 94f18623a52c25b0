"""A planned run claimed by the process training it, so that two `spbench bench` commands on one
results folder (started twice, or in two terminals to use more cores) share its runs out instead of
both training each one.

The claim is an advisory lock (flock) on a file in the run's folder: the system releases it when
its process ends, however it ends (SIGKILL included), so a killed command leaves no stale claim.
Where there is no flock (Windows) or the file system refuses locks or the file, the run is trained
unclaimed, as before claims existed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

CLAIM_FILE = ".training"


@contextmanager
def claim(run_folder: Path) -> Iterator[bool]:
    """Yields True while this process holds the run's claim (or none can be taken), False where
    another process holds it."""
    handle = _locked(run_folder / CLAIM_FILE) if fcntl is not None else None
    if handle is False:
        yield False
        return
    try:
        yield True
    finally:
        if handle is not None:
            # gone before the lock is let go: a process that opened it meanwhile finds it unlinked and
            # opens the path anew (see _locked), after the run's record or failure is written
            (run_folder / CLAIM_FILE).unlink(missing_ok=True)
            os.close(handle)


def _locked(path: Path) -> int | bool | None:
    """An open, locked descriptor of `path`; False where another process holds the lock; None where
    no lock can be taken here."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # a folder this user cannot write, another user's leftover file
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return False
        except OSError:  # a file system without locks (some network or FUSE mounts)
            os.close(handle)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(handle).st_ino:
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)  # locked a file its holder had unlinked as it let go: take the path's new one
