"""LoRA (Hu et al. 2021), a reference point: low-rank updates to the attention weights."""

from __future__ import annotations

from dataclasses import dataclass

from bench.methods.registry import Method, check_range, register_method


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0

    def __post_init__(self):
        check_range("lora", "r", self.r, low=1, high=4096)
        check_range("lora", "alpha", self.alpha, low=1)
        check_range("lora", "dropout", self.dropout, low=0.0, high=0.99)


def build_lora(base, settings: LoraSettings, card):
    from peft import LoraConfig

    from bench.methods.peft_common import task_type, wrap

    # target_modules left to PEFT's per-architecture defaults (attention projections).
    config = LoraConfig(task_type=task_type(base), r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout)
    return wrap(base, config)


register_method(Method(
    name="lora",
    settings_cls=LoraSettings,
    build=build_lora,
    default_lr=5e-4,
    description="reference: LoRA on the attention projections (PEFT defaults per architecture)",
))
