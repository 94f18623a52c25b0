"""Reading a task's rows: local JSON Lines files (optionally gzip) or a hub dataset."""

from __future__ import annotations

import functools
import gzip
import json
import random
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.card import TaskCard, TaskCardError, reads_local_files
from tasks.hub import hub_hint, offline_unless_reachable
from tasks.notices import UserNotice, first_line

Row = dict[str, Any]


def _split_file(folder: Path, stem: str) -> Path | None:
    found = [path for path in (folder / f"{stem}.jsonl", folder / f"{stem}.jsonl.gz") if path.exists()]
    if len(found) > 1:  # a stale copy beside the real one: neither is the obvious one to read
        raise ValueError(f"{folder}: both {found[0].name} and {found[1].name} hold split file {stem!r}; keep one")
    return found[0] if found else None


def _carved(card: TaskCard, split: str) -> bool:
    """Whether the split's rows are carved out of the train split (validation, and the train left)."""
    return bool(card.validation_from_train) and split in ("train", "validation")


def _local_file(card: TaskCard, split: str) -> Path | None:
    """The data file a split of a local source reads (train's, for a carved split); None where missing."""
    return _split_file(Path(card.source["local"]), card.splits["train" if _carved(card, split) else split])


def read_jsonl(path: Path) -> list[Row]:
    """All rows of a JSON Lines file; a malformed line is reported with its line number."""
    return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path: Path, *, malformed: list[str] | None = None) -> list[tuple[int, Row]]:
    """Each row of a JSON Lines file with the number of the line that holds it (blank lines hold none).
    A line that is no JSON object raises, or, given a `malformed` list, is described there and skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[tuple[int, Row]] = []
    try:
        with opener(path, "rb") as handle:  # bytes, decoded line by line: a line not in UTF-8 is named by number
            for line_number, raw in enumerate(handle, start=1):
                row, problem = _parsed_line(raw, first=line_number == 1)
                if row is not None:
                    rows.append((line_number, row))
                elif problem is None:  # a blank line holds no row
                    continue
                elif malformed is None:
                    raise ValueError(f"{path}:{line_number}: {problem}")
                else:
                    malformed.append(f"{path}:{line_number}: {problem}")
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: unreadable data file ({err})") from None
    return rows


def _parsed_line(raw: bytes, *, first: bool) -> tuple[Row | None, str | None]:
    """A line's row, or why it holds none (None for a blank line)."""
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")  # -sig: a leading byte-order mark is not data
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 text (byte {raw[err.start]:#04x} at column {err.start + 1}); save the file as UTF-8"
    if not line.strip():
        return None, None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        return None, f"malformed JSON line ({err.msg.removesuffix(' at')} at column {err.colno})"
    return (row, None) if isinstance(row, dict) else (None, "each line must be a JSON object")


def read_leniently(card: TaskCard, split: str) -> tuple[Path | None, list[str], list[Row] | None]:
    """The local data file a split reads, each of its lines that is no JSON object, and the rows of the
    others, for a report of every problem (reading rows stops at the first). No file for a hub source
    or a missing file; no rows where the split is carved from train (the carving needs every row)."""
    path = _local_file(card, split) if "local" in card.source else None
    if path is None:
        return None, [], None
    found: list[str] = []
    rows = [row for _, row in _numbered_rows(path, malformed=found)]
    return path, found, None if _carved(card, split) else rows


def check_local_folder(card: TaskCard) -> None:
    """A local source's folder exists: said once, before any split looks for its file in it."""
    if "local" in card.source and not Path(card.source["local"]).is_dir():
        raise TaskCardError(card.path, "source", f"data folder {card.source['local']} does not exist")


def _load_local(card: TaskCard, split: str) -> list[Row]:
    check_local_folder(card)
    folder = Path(card.source["local"])
    stem = card.splits[split]
    path = _split_file(folder, stem)
    if path is None:
        raise TaskCardError(
            card.path, "source",
            f"data file for split {split!r} is missing: expected {folder / stem}.jsonl or .jsonl.gz"
            + _carve_hint(split),
        )
    return read_jsonl(path)


def _carve_hint(split: str) -> str:
    return ("; a dataset without a validation split can carve one from train with the card key "
            "`validation_from_train: <rows>`" if split == "validation" else "")


@contextmanager
def _quiet_progress_bars(datasets: Any) -> Iterator[None]:
    """No "Generating train split" bars amid `tasks show`, `tasks validate` and run output, for this load only."""
    if datasets.are_progress_bars_disabled() or datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False:
        yield  # already off, or asked for (HF_DATASETS_DISABLE_PROGRESS_BARS=0)
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def _load_hub(card: TaskCard, split: str) -> list[Row]:
    import datasets  # imported lazily: only hub-backed cards need it

    source = card.source
    if reads_local_files(source["hub"]) and "data_files" not in source:  # datasets would read the current folder
        raise TaskCardError(card.path, "source", f"`hub: {source['hub']}` reads data files: name them with "
                            "`data_files` (paths relative to the card)")
    arguments = {key: source[key] for key in ("data_files", "revision") if key in source}
    if not reads_local_files(source["hub"]):  # a hub dataset: without a network, the cache's answer at once
        offline_unless_reachable()
    try:
        with _quiet_progress_bars(datasets):
            dataset = datasets.load_dataset(source["hub"], source.get("name"), split=card.splits[split], **arguments)
    except Exception as err:  # no network, no such dataset or split: datasets raises many kinds
        # datasets' words for a split it lacks; anything else may be the network
        hint = _carve_hint(split) if "Unknown split" in str(err) else hub_hint()
        raise TaskCardError(card.path, "source", f"cannot load split {split!r} of hub dataset {source['hub']!r} "
                            f"({type(err).__name__}: {first_line(err)}){hint}") from None
    return [dict(row) for row in dataset]


def _where(card: TaskCard, split: str) -> str:
    """Where a split's rows come from, for messages."""
    if "local" in card.source:
        return str(_local_file(card, split) or Path(card.source["local"]))
    return f"hub dataset {card.source['hub']!r}, split {card.splits['train' if _carved(card, split) else split]!r}"


CARVE_SEED = 42  # the same carving for every run, whatever the run's seed


@functools.lru_cache(maxsize=8)
def _carved_indices(total: int, count: int, *, keep: bool) -> tuple[int, ...]:
    """The rows of one part when `count` of `total` rows are split off by a fixed seed, in file order
    (cached: a card with many bad rows locates each one)."""
    chosen = set(random.Random(CARVE_SEED).sample(range(total), count))
    return tuple(i for i in range(total) if (i in chosen) == keep)


def _read_split(card: TaskCard, split: str) -> list[Row]:
    return _load_local(card, split) if "local" in card.source else _load_hub(card, split)


def load_rows(card: TaskCard, split: str) -> list[Row]:
    """Rows of one split, in file order; an empty split is an error."""
    if _carved(card, split):
        if split == "validation":
            _note_unread_validation_file(card)
        train = _read_split(card, "train")
        if card.validation_from_train >= len(train):
            raise TaskCardError(card.path, "validation_from_train", f"{card.validation_from_train} rows carved from a "
                                f"train split of {len(train)} would leave too few to train on")
        rows = [train[i] for i in _carved_indices(len(train), card.validation_from_train, keep=split == "validation")]
    else:
        rows = _read_split(card, split)
    if not rows:
        raise TaskCardError(card.path, "splits", f"split {split!r} is empty ({_where(card, split)})")
    return rows


def _note_unread_validation_file(card: TaskCard) -> None:
    """A validation file that no split reads, beside a card that carves validation from train: the
    key is for data without one, so the file may be what was meant."""
    read = {card.splits["train"], card.splits["test"]}  # samsum reads its validation file as train
    if "local" not in card.source or card.splits["validation"] in read:
        return
    if unread := _split_file(Path(card.source["local"]), card.splits["validation"]):
        warnings.warn(f"{card.path} [validation_from_train]: validation is carved from train, and {unread} is not "
                      "read; map it to a split under `splits`, or remove validation_from_train to use it",
                      UserNotice, stacklevel=3)


def row_location(card: TaskCard, split: str, index: int) -> str:
    """Where row `index` of a split (as `load_rows` gives them) comes from, for messages: its file and
    line, or its hub split and row. Found again only when a message needs it."""
    lines = None
    if "local" in card.source:
        path = _local_file(card, split)
        stamp = path.stat()
        lines = _line_numbers(path, stamp.st_mtime_ns, stamp.st_size)
    if _carved(card, split):
        total = len(lines) if lines is not None else _hub_train_length(card)
        index = _carved_indices(total, card.validation_from_train, keep=split == "validation")[index]
    return f"{path}:{lines[index]}" if lines is not None else f"{_where(card, split)}, row {index}"


_HUB_TRAIN_LENGTHS: dict[str, int] = {}  # a hub dataset is read again only for the first message about it
_HUB_TRAIN_LENGTHS_KEPT = 8  # datasets: a long-lived process (a search over many cards) keeps the latest


def _hub_train_length(card: TaskCard) -> int:
    key = repr((str(card.path), card.source, card.splits.get("train")))  # a card's dicts make it no dict key
    if key not in _HUB_TRAIN_LENGTHS:
        if len(_HUB_TRAIN_LENGTHS) >= _HUB_TRAIN_LENGTHS_KEPT:
            del _HUB_TRAIN_LENGTHS[next(iter(_HUB_TRAIN_LENGTHS))]  # the oldest
        _HUB_TRAIN_LENGTHS[key] = len(_read_split(card, "train"))
    return _HUB_TRAIN_LENGTHS[key]


@functools.lru_cache(maxsize=4)
def _line_numbers(path: Path, mtime_ns: int, size: int) -> list[int]:
    """The line of each row of a data file, read once while the file is unchanged: a card with many
    bad rows names each one's line. Lines that are no JSON object hold no row (a run refuses such a
    file before it looks for a row; `tasks validate` checks the rows of the others)."""
    return [line for line, _ in _numbered_rows(path, malformed=[])]
