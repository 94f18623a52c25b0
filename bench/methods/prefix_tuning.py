"""Prefix tuning / P-tuning v2: trainable key/value prefixes in every attention layer.

PEFT draws the prefix from N(0, 1). Those keys and values are far from anything the frozen model
produces, and in a rotary-position decoder (Llama, SmolLM2) they swamp attention: training starts
from a broken model and rarely recovers. Li & Liang (2021, sec. 7.2) initialise the prefix with
the activations of real words instead; `init=real_tokens` does that with the model's own
keys/values for sampled vocabulary tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.methods.registry import Method, MethodError, check_range, register_method


if TYPE_CHECKING:
    import torch

INITS = ("real_tokens", "random", "zero")


@dataclass
class PrefixTuningSettings:
    num_virtual_tokens: int = 20
    prefix_projection: bool = False  # reparameterize through a two-layer MLP (Li & Liang)
    encoder_hidden_size: int = 256  # hidden size of that MLP
    # real_tokens: keys/values of sampled vocabulary tokens (needs no projection); random: PEFT's
    # N(0, 1); zero: PEFT's all-zero prefix. None: real_tokens, or random with a projection.
    init: str | None = None

    def __post_init__(self):
        if self.init is None:
            self.init = "random" if self.prefix_projection else "real_tokens"
        check_range("prefix_tuning", "init", self.init, choices=INITS)
        if self.init == "real_tokens" and self.prefix_projection:
            raise MethodError("prefix_tuning.init=real_tokens sets the prefix itself, which prefix_projection "
                              "computes through an MLP; use init=random or init=zero with prefix_projection")
        check_range("prefix_tuning", "num_virtual_tokens", self.num_virtual_tokens, low=1, high=1000)
        check_range("prefix_tuning", "encoder_hidden_size", self.encoder_hidden_size, low=1, high=65536)

    def without_effect(self) -> dict:
        """Settings these others make irrelevant, with the value a run id reads for them."""
        return {} if self.prefix_projection else {"encoder_hidden_size": PrefixTuningSettings.encoder_hidden_size}


def prefix_tuning_refusal(kind: str | None, card, settings: dict) -> str | None:
    if kind == "seq2seq":
        # With PEFT 0.21 and transformers 5, an encoder-decoder model's prefix is dropped during
        # generate() (both `past_key_values` and `cache` reach the model; the prefix loses), and a
        # padded row scores differently from the same row alone. Refuse rather than mis-measure.
        return ("prefix_tuning is not supported for seq2seq models (PEFT's encoder-decoder prefix is ignored in "
                "generation with transformers 5); use prompt_tuning or p_tuning")
    return None


def build_prefix_tuning(base, settings: PrefixTuningSettings, card):
    import torch
    from peft import PrefixTuningConfig

    from bench.methods.peft_common import FullPrecisionPrefixEncoder, task_type, wrap

    if why := prefix_tuning_refusal(base.kind, card, {}):
        raise MethodError(f"model {base.name!r}: {why}")
    config = PrefixTuningConfig(
        task_type=task_type(base),
        num_virtual_tokens=settings.num_virtual_tokens,
        prefix_projection=settings.prefix_projection,
        encoder_hidden_size=settings.encoder_hidden_size,
        init_weights="zero" if settings.init == "zero" else None,
    )
    model = wrap(base, config)
    encoder = model.prompt_encoder[model.active_adapter]
    encoder.__class__ = FullPrecisionPrefixEncoder  # a class, not a patched method: copies and pickles keep it
    if settings.init == "real_tokens":
        with torch.no_grad():
            prefix = model.prompt_encoder[model.active_adapter].embedding.weight
            vocab_size = base.model.get_input_embeddings().num_embeddings
            token_ids = torch.randint(0, vocab_size, (settings.num_virtual_tokens,))
            prefix.copy_(real_token_prefix(base, token_ids).to(prefix))
    return model



def real_token_prefix(base, token_ids: torch.Tensor) -> torch.Tensor:
    """(P, layers * 2 * kv_dim): the frozen model's keys/values for P tokens, laid out as PEFT's
    prefix embedding (per token: layer 0 keys, layer 0 values, layer 1 keys, ...)."""
    import torch
    from transformers import DynamicCache

    backbone = base.model.base_model  # the transformer body without its head
    cache = DynamicCache(config=base.model.config)
    with torch.no_grad():
        backbone(input_ids=token_ids[None].to(base.device), cache=cache, use_cache=True)
    # (1, heads, P, head_dim) keys and values -> (P, heads * head_dim) each, layer by layer
    flat = [t[0].transpose(0, 1).flatten(1) for layer in cache.layers for t in (layer.keys, layer.values)]
    return torch.cat(flat, dim=-1)


register_method(Method(
    name="prefix_tuning",
    settings_cls=PrefixTuningSettings,
    build=build_prefix_tuning,
    default_lr=1e-2,
    allows_checkpointing=False,  # PEFT refuses it: the prefix is a key/value cache that each layer reads
    description="Li & Liang / P-tuning v2: trainable key/value prefixes in every layer",
    refusal=prefix_tuning_refusal,
))
