"""Named models resolved offline where possible, plus any hub id or local checkpoint."""

from bench.models.registry import MODELS, ModelError, ModelSpec, resolve_model

__all__ = [
    "MODELS", "BaseModel", "ModelError", "ModelPool", "ModelSpec", "load_base_model", "reset_classification_head",
    "resolve_model",
]


def __getattr__(name: str):
    # loading imports torch and transformers (seconds): the registry alone, as a table naming a
    # model's kind reads it, does not pay for it
    if name in {"BaseModel", "load_base_model", "reset_classification_head"}:
        from bench.models import loading

        return getattr(loading, name)
    if name == "ModelPool":
        from bench.models.pool import ModelPool

        return ModelPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
