"""Base models loaded once per process and handed out as fresh copies.

Methods change the model they are given (LoRA injects layers, full fine-tuning rewrites weights),
so each run gets a deep copy of the pristine model rather than the cached object itself.
"""

from __future__ import annotations

import copy

from bench.models.loading import BaseModel, load_base_model


class ModelPool:
    def __init__(self):
        self._pristine: dict[tuple, BaseModel] = {}

    def get(self, name: str, *, num_labels: int | None = None, kind: str | None = None) -> BaseModel:
        key = (name, num_labels, kind)
        if key not in self._pristine:
            self._pristine[key] = load_base_model(name, num_labels=num_labels, kind=kind)
        pristine = self._pristine[key]
        return BaseModel(name=pristine.name, source=pristine.source, kind=pristine.kind,
                         model=copy.deepcopy(pristine.model), tokenizer=pristine.tokenizer,
                         device=pristine.device, dtype=pristine.dtype)
