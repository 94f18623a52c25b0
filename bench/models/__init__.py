"""Named models resolved offline where possible, plus any hub id or local checkpoint."""

from bench.models.loading import BaseModel, load_base_model, reset_classification_head
from bench.models.pool import ModelPool
from bench.models.registry import MODELS, ModelError, ModelSpec, resolve_model

__all__ = [
    "MODELS", "BaseModel", "ModelError", "ModelPool", "ModelSpec", "load_base_model", "reset_classification_head",
    "resolve_model",
]
