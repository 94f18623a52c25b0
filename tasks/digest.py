"""What a task's scores rest on, as one digest: its card's settings and its local data files' bytes.
A record keeps it, so a card or data file edited without a new `version` is caught where an earlier
record of the same run would otherwise be taken for one of the new card."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

from tasks.card import SPLITS, TaskCard
from tasks.data import _local_file

# fields that change no score: where the card is, its words for people, where its metric folder is
_NOT_SCORED = {"path", "description", "license", "metrics_folder", "version"}


def content_digest(card: TaskCard) -> str:
    """A short digest of the card's scored settings and, for a local source, its split files; a hub
    source is known by its card (whose `revision` pins the data)."""
    settings = {key: value for key, value in dataclasses.asdict(card).items() if key not in _NOT_SCORED}
    if "local" in card.source:
        settings["source"] = {**card.source, "local": None}  # the files' bytes count, not the folder they are in
    files = sorted({str(path) for split in SPLITS if "local" in card.source
                    if (path := _local_file(card, split)) is not None})
    stats = tuple((path, *_stat(path)) for path in files)
    return _digest(json.dumps(settings, sort_keys=True, default=str), stats)


def _stat(path: str) -> tuple[int, int]:
    info = Path(path).stat()
    return info.st_mtime_ns, info.st_size


@functools.lru_cache(maxsize=64)
def _digest(settings: str, files: tuple[tuple[str, int, int], ...]) -> str:
    """Cached by the files' times and sizes: a suite asks once a run, and reads each file once."""
    digest = hashlib.sha1(settings.encode())
    for path, *_ in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]
