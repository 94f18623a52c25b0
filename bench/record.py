"""One JSON record per run: its schema, and writing it atomically.

A record is written to a temporary file and renamed into place, so a killed process leaves
either the whole record or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from bench.procfs import status_field

DEFAULT_RESULTS = Path("results")  # where runs, suites and searches write unless told otherwise

SCHEMA_VERSION = 1
# training settings added after records were first written, with their defaults: a record without
# one trained at its default, and a run at its default keeps the id it had before the setting existed
TRAIN_SETTINGS_ADDED_LATER = {"gradient_checkpointing": False}
# the run record kept inside an exported adapter folder (not `record.json`: tables would count it twice)
ADAPTER_RECORD = "run_record.json"


class Cost(TypedDict):
    trainable_params: int  # parameters that receive gradients (P-tuning's encoder included, though not saved)
    total_params: int  # all parameters of the adapted model (base + adapter)
    trainable_pct: float  # 100 * trainable / total
    train_seconds: float  # wall time of the optimizer steps (evaluation excluded)
    seconds_per_step: float
    # token positions through the layers in training, padding aside (prompt/P-tuning virtual tokens
    # included; seq2seq: encoder plus decoder positions)
    tokens_seen: int
    train_flops: float  # analytic estimate, see bench/flops.py (frozen weights: no weight gradients)
    flops_estimate: int  # bench.flops.ESTIMATE_VERSION that made it; absent: 1, the estimate before it
    # during training, its intermediate evaluations included: CUDA max allocated on GPU; peak
    # resident set size on CPU (see the kind)
    peak_memory_bytes: int
    # "cuda_max_allocated" | "cpu_run_peak_rss" (peak during this run, Linux) | "cpu_max_rss" (the
    # process's peak since it started: within a suite it includes earlier runs)
    peak_memory_kind: str
    # bytes on disk of what loading needs: the adapter's weights and config (not PEFT's model card),
    # or for full fine-tuning the weights a checkpoint would hold
    artifact_bytes: int
    artifact_saved: bool  # False for full fine-tuning: the size is what a checkpoint would take
    # one inference forward over a prompt, batch of 16 validation prompts: median over rounds that
    # time the trained model and its base alternately, after training
    latency_per_example_s: float
    base_latency_per_example_s: float  # the same for the base model (adapter off; full_ft: the same module)
    latency_overhead: float  # median over rounds of tuned / base time (virtual tokens lengthen inputs)


class RunRecord(TypedDict):
    schema_version: int
    run_id: str  # stable for the same task/model/method/settings/seed: reruns find their record
    status: str  # "completed"
    task: dict[str, Any]  # name, version, kind, primary_metric, card (path)
    # name, source (folder or hub id), kind, dtype, device, sentence_pooling (encoders), revision (the
    # commit of a hub model's files; None for a folder); dtype is that of
    # the frozen weights and of autocast (bf16/fp16 on CUDA): trainable parameters are always fp32
    # (full fine-tuning's loaded in fp32, not rounded from the compute dtype)
    model: dict[str, Any]
    # name, settings (the method's dataclass as a dict), without_effect (settings the others make
    # irrelevant: kept for reloading, left out of the run's label)
    method: dict[str, Any]
    train: dict[str, Any]  # TrainSettings as a dict, with `lr` and `train_size` resolved to what the run used
    seed: int
    scores: dict[str, dict[str, float]]  # split -> metric -> value, plus "n" (examples scored)
    # split -> {"scores": each example's score of the primary metric, in the order scored, "examples":
    # a digest of those examples (bench.run.examples_digest)}, where the metric is a mean over examples
    # (absent from older records): runs scored on the same examples pair up
    per_example: dict[str, dict[str, Any]]
    # same, before any training: the method's initial state (an untrained prompt, a fresh head), where
    # `score_initial`
    zero_shot: dict[str, dict[str, float]] | None
    base_zero_shot: dict[str, dict[str, float]] | None  # the unadapted base model (cached); None for encoders
    # split -> `improvement_pct` of the primary metric over base_zero_shot (older records measured it
    # from zero_shot where that was scored; tables recompute it from the scores). None for encoders; a
    # split's None where its base score is not positive (older records: None for all splits then)
    improvement_pct: dict[str, float | None] | None
    # split -> the primary metric of answering every example with its commonest class, for
    # classification (None otherwise; absent from older records): what a model that learned nothing scores
    commonest_class: dict[str, float] | None
    curve: dict[str, list]  # "loss": per-step training loss; "eval": [{"step", metric...}] on validation
    cost: Cost
    artifact_path: str | None  # adapter folder, loadable with PeftModel.from_pretrained
    environment: dict[str, Any]  # packages, git {commit, dirty}, hardware
    started_at: str  # ISO 8601, UTC
    finished_at: str


def improvement_pct(score: float, before: float) -> float | None:
    """% change of a score over the score before (the base model's zero-shot score). None where that
    is not positive: a ratio to zero (a Matthews correlation of a constant predictor) or to a
    negative score means nothing."""
    return 100 * (score - before) / before if before > 0 else None


def results_folder(path: Path | str) -> Path:
    """`path` as a folder records can be written to, made if absent; checked before anything runs,
    so a path naming a file is refused before any training rather than when the first record is due."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file of that name, or one on the way to it; no permission
        raise ValueError(f"results folder {path}: cannot use it ({err.strerror or err})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"results folder {path}: not writable")
    return path


ADAPTER_FOLDER = "adapter"  # in the run's folder, beside record.json


def adapter_beside(record_path: Path) -> Path:
    """A run's adapter folder, found from its record's path: the record's `artifact_path` is relative
    to the folder its command ran in, which another command (another machine's, on a shared file
    system) does not share."""
    return Path(record_path).parent / ADAPTER_FOLDER


def unusable_folder(path: Path) -> str | None:
    """Why a folder at `path` could not be made or written in (None: it can), found without making it."""
    found = next(folder for folder in (Path(path).absolute(), *Path(path).absolute().parents) if folder.exists())
    if not found.is_dir():
        return f"{found} is a file, not a folder"
    if not os.access(found, os.W_OK | os.X_OK):
        return f"cannot write in {found}"
    return None


def write_record(record: RunRecord, path: Path) -> Path:
    return write_json_atomic(record, path)


def write_json_atomic(data: Any, path: Path) -> Path:
    return write_text_atomic(json.dumps(data, indent=2, sort_keys=False, default=str), path)


def write_text_atomic(text: str, path: Path) -> Path:
    """Write to a temporary file beside `path`, then rename it into place: a killed process leaves
    the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def copy_tree_atomic(source: Path, destination: Path, *, added: dict[str, str] | None = None) -> Path:
    """Copy a folder beside `destination`, with the `added` files (name -> text), then swap it in: a
    killed process leaves the old copy or the new one whole, never a mix (at worst, the old one under
    a hidden `.old` name beside it)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        for name, text in (added or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
        share_as_umask_allows(staging)  # mkdtemp's 0700 and copied 0600 files would hide it from other users
        if destination.exists():
            retired = staging.with_name(staging.name + ".old")
            os.replace(destination, retired)
            os.replace(staging, destination)
            shutil.rmtree(retired)
        else:
            os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def share_as_umask_allows(folder: Path) -> Path:
    """Give `folder` and everything in it the permissions a plain mkdir or open would have: temporary
    folders (0700) and files safetensors writes (0600) would otherwise hide results, adapters and
    converted models from the other users of a shared folder."""
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    return folder


def _umask() -> int:
    # /proc reads it without the process-wide set-and-restore that os.umask needs (racy across threads)
    value = status_field("Umask")
    if value:
        return int(value, 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_record(path: Path) -> RunRecord:
    return json.loads(Path(path).read_text(encoding="utf-8"))
