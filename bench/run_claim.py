"""A planned run claimed by the process training it, so that two `spbench bench` commands on one
results folder (started twice, or in two terminals to use more cores) share its runs out instead of
both training each one.

The claim is an advisory lock (flock) on a file in the run's folder: the system releases it when
its process ends, however it ends (SIGKILL included), so a killed command leaves no stale claim.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not shared out there
    fcntl = None

CLAIM_FILE = ".training"


@contextmanager
def claim(run_folder: Path) -> Iterator[bool]:
    """Yields True while this process holds the run's claim, False where another process holds it."""
    if fcntl is None:
        yield True
        return
    run_folder.mkdir(parents=True, exist_ok=True)
    path = run_folder / CLAIM_FILE
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without locks (some network or FUSE mounts): the run is trained
            pass
        try:
            yield True
        finally:
            # gone before the lock is let go: a process that opened the file already and takes the
            # lock next finds the run's record, which its caller checks for after claiming
            path.unlink(missing_ok=True)
    finally:
        os.close(handle)
