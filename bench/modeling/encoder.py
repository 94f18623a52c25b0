"""Encoder classification forward, including deep prompts (P-tuning v2) for encoders.

PEFT's prefix tuning refuses sequence-classification models under transformers 5 ("Model does
not support past key values"): it looks for a `past_key_values` argument that transformers has
renamed `cache`. The encoders themselves still attend over a cache, so the prefix keys/values
PEFT builds are handed to the backbone here, and the model's own classification head runs as usual.
"""

from __future__ import annotations

import torch
from peft import PeftModel, PeftType
from peft.utils import ModulesToSaveWrapper

from bench.device import compute_in_fp32


def _is_prefix(model) -> bool:
    return isinstance(model, PeftModel) and model.peft_config[model.active_adapter].peft_type == PeftType.PREFIX_TUNING


def encoder_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Class logits (B, C) for a tokenized, right-padded batch."""
    if not _is_prefix(model):
        return model(**batch).logits
    classifier = model.get_base_model()
    batch_size = batch["input_ids"].size(0)
    prefix = model.get_prompt(batch_size)  # cache of (B, heads, P, head_dim) per layer
    num_virtual = model.peft_config[model.active_adapter].num_virtual_tokens
    mask = batch["attention_mask"]
    full_mask = torch.cat([mask.new_ones(batch_size, num_virtual), mask], dim=1)

    def add_prefix(module, args, kwargs):
        return args, {**kwargs, "cache": prefix}

    handle = classifier.base_model.register_forward_pre_hook(add_prefix, with_kwargs=True)
    try:
        return classifier(**{**batch, "attention_mask": full_mask}).logits
    finally:
        handle.remove()


def classification_head_in_fp32(model: torch.nn.Module, base) -> None:
    """Where `base` is an encoder computing in bf16 or fp16 (nothing to do otherwise), its
    classification head (whatever follows the backbone: BERT's `classifier`, RoBERTa's dense +
    out_proj, DistilBERT's `pre_classifier` too) computes in fp32 under autocast. In bf16 its
    logits keep about 3 significant digits: classes whose logits round alike tie, and argmax gives
    every tie to the first class. Its weights are taken to fp32 in place (a few hundred thousand at
    most). Called on a base model before PEFT copies its head, the copy is fp32 too, so a saved head
    loads without rounding; the original PEFT keeps beside its trained copy stays as loaded."""
    if base.kind != "encoder" or base.dtype == torch.float32:
        return
    classifier = model.get_base_model() if isinstance(model, PeftModel) else model
    for name, child in classifier.named_children():
        if name == classifier.base_model_prefix:
            continue
        kept_aside = {id(module) for wrapper in child.modules() if isinstance(wrapper, ModulesToSaveWrapper)
                      for module in wrapper.original_module.modules()}
        for module in child.modules():
            own = [p for p in module.parameters(recurse=False) if p.is_floating_point()]
            if own and id(module) not in kept_aside:
                for parameter in own:
                    parameter.data = parameter.data.float()
                compute_in_fp32(module)
