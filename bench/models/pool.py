"""Base models loaded once per process and handed out as fresh copies.

Methods change the model they are given (LoRA injects layers, full fine-tuning rewrites weights),
so each run gets a deep copy of the pristine model rather than the cached object itself. The
pristine copies wait in host memory: on a GPU they would take room from the runs and count in each
run's peak memory, which a run outside a pool does not carry.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from bench.device import pick_device, pick_dtype
from bench.models.loading import BaseModel, load_base_model
from bench.models.registry import ModelUnavailable


class ModelPool:
    def __init__(self):
        # (name, num_labels, kind, fp32 weights) -> model; num_labels is None for LMs, which have no
        # classifier to size
        self._pristine: dict[tuple, BaseModel] = {}
        # models that could not load, with why: asked again (the suite's next run on one), they fail at
        # once rather than after another round of hub retries
        self._refused: dict[tuple, ModelUnavailable] = {}

    def get(self, name: str, *, num_labels: int | None = None, kind: str | None = None,
            full_precision_weights: bool = False) -> BaseModel:
        if (name, kind) in self._refused:
            raise ModelUnavailable(str(self._refused[(name, kind)]))
        # fp32 weights are the weights themselves where fp32 is the compute dtype (on CPU): one copy serves both
        full = full_precision_weights and pick_dtype(pick_device()) != torch.float32
        as_lm = self._pristine.get((name, None, kind, full))  # an LM serves every task, whatever its classes
        key = (name, None, kind, full) if as_lm is not None and as_lm.kind != "encoder" else (
            name, num_labels, kind, full)
        if key not in self._pristine:
            try:
                loaded = load_base_model(name, num_labels=num_labels, kind=kind, full_precision_weights=full)
            except ModelUnavailable as err:
                self._refused[(name, kind)] = err
                raise
            key = (name, num_labels if loaded.kind == "encoder" else None, kind, full)
            self._pristine[key] = dataclasses.replace(loaded, model=loaded.model.to("cpu"))  # device: the runs'
        pristine = self._pristine[key]
        return dataclasses.replace(pristine, model=copy.deepcopy(pristine.model).to(pristine.device))
