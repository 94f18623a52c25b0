"""Prefix tuning / P-tuning v2: trainable key/value prefixes in every attention layer."""

from __future__ import annotations

from dataclasses import dataclass

from peft import PrefixTuningConfig

from bench.methods.peft_common import task_type, wrap
from bench.methods.registry import Method, MethodError, check_range, register_method


@dataclass
class PrefixTuningSettings:
    num_virtual_tokens: int = 20
    prefix_projection: bool = False  # reparameterize through a two-layer MLP (Li & Liang)
    encoder_hidden_size: int = 256  # hidden size of that MLP

    def __post_init__(self):
        check_range("prefix_tuning", "num_virtual_tokens", self.num_virtual_tokens, low=1, high=1000)
        check_range("prefix_tuning", "encoder_hidden_size", self.encoder_hidden_size, low=1, high=65536)


def build_prefix_tuning(base, settings: PrefixTuningSettings, card):
    if base.kind == "seq2seq":
        # With PEFT 0.21 and transformers 5, an encoder-decoder model's prefix is dropped during
        # generate() (both `past_key_values` and `cache` reach the model; the prefix loses), and a
        # padded row scores differently from the same row alone. Refuse rather than mis-measure.
        raise MethodError(
            f"prefix_tuning is not supported for seq2seq model {base.name!r} (PEFT's encoder-decoder prefix "
            "is ignored in generation with transformers 5); use prompt_tuning or p_tuning")
    config = PrefixTuningConfig(
        task_type=task_type(base),
        num_virtual_tokens=settings.num_virtual_tokens,
        prefix_projection=settings.prefix_projection,
        encoder_hidden_size=settings.encoder_hidden_size,
    )
    return wrap(base, config)


register_method(Method(
    name="prefix_tuning",
    settings_cls=PrefixTuningSettings,
    build=build_prefix_tuning,
    default_lr=1e-2,
    uses_virtual_tokens=True,
    description="Li & Liang / P-tuning v2: trainable key/value prefixes in every layer",
))
