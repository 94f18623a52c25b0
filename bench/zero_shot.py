"""The base model's score before any adaptation, cached per (task, examples, scoring, model, split,
package versions).

Every run of the same task and model would otherwise score the same frozen model again.
Encoders are skipped: their classification head is freshly initialised, so "zero-shot" there is
chance by construction (a run with `score_initial` still records its own score before training).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

from bench import provenance
from bench.models import BaseModel
from bench.models.gguf_cache import cache_home
from bench.record import write_json_atomic
from tasks.notices import UserNotice


def _examples_digest(examples: list) -> str:
    """The rendered examples themselves: data source, split, subset and template all show here."""
    rows = [[ex.prompt, ex.target, list(ex.references), ex.label] for ex in examples]
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()


# How the base model is scored (generation's stopping rule, label-word scoring, the metrics' code):
# bump it with any change to that, so cached scores of the old rule are not reused.
# 2: a newline ends a generated answer only once the answer has begun.
# 3: ROUGE reads the letters of every script (it kept only a-z and 0-9).
# 4: an answer is its first line whatever token holds the break, and ends at any end-of-turn token.
SCORING_VERSION = 4


def _device_name(device) -> str:
    """The device type, and on CUDA the GPU model: low-precision kernels differ between GPU models."""
    return f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


def _key(task, base: BaseModel, split: str, examples: list, batch_size: int) -> str:
    card = task.card
    identity = {
        "scoring": SCORING_VERSION, "packages": provenance.package_versions(),  # tokenizers, metrics, torch
        "task": card.name, "version": card.version, "kind": card.kind, "template": card.template,
        "label_words": {str(k): v for k, v in card.label_words.items()}, "target": card.target_field,
        "metrics": list(card.metrics), "primary_metric": card.primary_metric,
        "max_input_tokens": card.max_input_tokens, "max_new_tokens": card.max_new_tokens,
        "source": card.source, "splits": card.splits, "validation_from_train": card.validation_from_train,
        "examples": _examples_digest(examples),
        "model": base.source, "model_kind": base.kind, "dtype": str(base.dtype),
        "device": _device_name(base.device),
        "split": split, "n": len(examples),
    }
    if base.dtype != torch.float32:  # in bf16 or fp16 a batch's padding and company move its scores
        identity["batch_size"] = batch_size
    stored = str(base.model.get_input_embeddings().weight.dtype)
    if stored != str(base.dtype):  # fp32 weights for full fine-tuning under a bf16 compute dtype
        identity["weights_dtype"] = stored
    folder = Path(base.source)
    if folder.is_dir():  # a local checkpoint may be overwritten in place
        identity["modified"] = max(p.stat().st_mtime for p in folder.iterdir())
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cache_file(key: str) -> Path:
    return cache_home() / "zero_shot" / f"{key}.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or unreadable: score again
        return None


def base_zero_shot(task, base: BaseModel, evaluation: dict, score, *, batch_size: int) -> dict | None:
    """split -> scores of the unadapted base model; `score(tuned, split, examples)` does the scoring of
    a split not cached, in batches of `batch_size`."""
    if base.kind == "encoder":
        return None
    from bench.modeling import TunedModel

    tuned = TunedModel(base.model, base, task.card)
    results = {}
    for split, examples in evaluation.items():
        path = _cache_file(_key(task, base, split, examples, batch_size))
        cached = _read(path)
        if cached is not None and all(metric in cached for metric in task.card.metrics):
            results[split] = cached
            continue
        results[split] = score(tuned, split, examples)
        try:
            write_json_atomic(results[split], path)
        except OSError as err:  # a read-only or shared cache: the scores stand, only their reuse is lost
            warnings.warn(f"cannot keep the zero-shot score in {path.parent} ({err.strerror or err}); it is scored "
                          "again next time (set $SPBENCH_CACHE to a folder you can write)", UserNotice, stacklevel=2)
    return results
