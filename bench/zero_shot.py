"""The base model's score before any adaptation, cached per (task version, template, model, split).

Every run of the same task and model would otherwise score the same frozen model again.
Encoders are skipped: their classification head is freshly initialised, so "zero-shot" there is
chance by construction (each run's own step-0 score is still recorded).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.models import BaseModel
from bench.models.gguf_cache import cache_root
from bench.record import write_json_atomic


def _key(task, base: BaseModel, split: str, size: int) -> str:
    card = task.card
    identity = {
        "task": card.name, "version": card.version, "template": card.template,
        "label_words": {str(k): v for k, v in card.label_words.items()}, "target": card.target_field,
        "max_input_tokens": card.max_input_tokens, "max_new_tokens": card.max_new_tokens,
        "model": base.source, "kind": base.kind, "split": split, "n": size,
    }
    folder = Path(base.source)
    if folder.is_dir():  # a local checkpoint may be overwritten in place
        identity["modified"] = max(p.stat().st_mtime for p in folder.iterdir())
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _cache_file(key: str) -> Path:
    return cache_root().parent / "zero_shot" / f"{key}.json"


def base_zero_shot(task, base: BaseModel, evaluation: dict, score) -> dict | None:
    """split -> scores of the unadapted base model; `score(tuned, examples)` does the scoring."""
    if base.kind == "encoder":
        return None
    from bench.modeling import TunedModel

    tuned = TunedModel(base.model, base, task.card)
    results = {}
    for split, examples in evaluation.items():
        path = _cache_file(_key(task, base, split, len(examples)))
        if path.exists():
            results[split] = json.loads(path.read_text())
            continue
        results[split] = score(tuned, examples)
        write_json_atomic(results[split], path)
    return results
