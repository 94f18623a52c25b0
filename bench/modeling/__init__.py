"""Forward passes, scoring and generation for every model kind, with PEFT's quirks handled."""

from bench.modeling.tuned import TunedModel

__all__ = ["TunedModel"]
