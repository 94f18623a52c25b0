"""Full fine-tuning, the reference point: every weight trains."""

from __future__ import annotations

from dataclasses import dataclass

from bench.methods.registry import Method, register_method


@dataclass
class FullFineTuningSettings:
    """Full fine-tuning has no settings of its own; the learning rate is a training setting."""


def build_full_ft(base, settings: FullFineTuningSettings, card):
    from bench.models.pooling import CONFIG_KEY

    for parameter in base.model.parameters():
        parameter.requires_grad_(True)
    if getattr(base.model.config, CONFIG_KEY, None):  # the head reads pooled token states, not the pooler
        base.model.base_model.pooler.requires_grad_(False)
    return base.model


register_method(Method(
    name="full_ft",
    settings_cls=FullFineTuningSettings,
    build=build_full_ft,
    default_lr=3e-5,
    trains_base_weights=True,
    description="reference: full fine-tuning of every weight",
))
