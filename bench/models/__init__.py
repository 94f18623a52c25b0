"""Named models resolved offline where possible, plus any hub id or local checkpoint."""

from bench.models.loading import BaseModel, load_base_model
from bench.models.registry import MODELS, ModelError, ModelSpec, resolve_model

__all__ = ["MODELS", "BaseModel", "ModelError", "ModelSpec", "load_base_model", "resolve_model"]
