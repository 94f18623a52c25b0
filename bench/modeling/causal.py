"""Decoder-only forward and greedy generation with soft prompts that survive left padding.

PEFT prepends virtual tokens before the whole padded row ([V V pad pad x x]) and derives
positions from the padded length, so a left-padded row sees different positions than the same
row alone. Here the positions come from the attention mask instead (virtual tokens first, then
the real tokens counted from there, pads skipped), so batched and unbatched results agree.
The LM head runs only on the last `logits_to_keep` positions: with left padding every row's
scored tokens sit at the end, and the virtual-token positions are never in the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import PeftModel, PeftType


@dataclass
class CausalInputs:
    kwargs: dict  # everything for the core model's forward except logits_to_keep / use_cache
    full_mask: torch.Tensor  # (B, P + T) attention mask over virtual + real tokens
    positions: torch.Tensor  # (B, T) position ids of the real tokens


def core_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model to call: LoRA layers stay injected, prompt methods add inputs."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _prompt_config(model):
    if isinstance(model, PeftModel):
        config = model.peft_config[model.active_adapter]
        if config.is_prompt_learning:
            return config
    return None


def prepare(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> CausalInputs:
    batch_size = input_ids.size(0)
    config = _prompt_config(model)
    num_virtual = config.num_virtual_tokens if config else 0
    ones = attention_mask.new_ones(batch_size, num_virtual)
    full_mask = torch.cat([ones, attention_mask], dim=1)  # (B, P + T)
    all_positions = (full_mask.cumsum(-1) - 1).clamp(min=0)  # pads reuse a neighbour's id; masked anyway
    positions = all_positions[:, num_virtual:]
    core = core_model(model)
    if config is None:
        kwargs = dict(input_ids=input_ids, position_ids=positions)
    elif config.peft_type == PeftType.PREFIX_TUNING:
        # (B, heads, P, head_dim) keys/values per layer, held in a cache the real tokens attend to
        kwargs = dict(input_ids=input_ids, position_ids=positions, cache=model.get_prompt(batch_size))
    else:  # prompt tuning / P-tuning: virtual token embeddings before the real ones
        embeds = core.get_input_embeddings()(input_ids)  # (B, T, D)
        prompts = model.get_prompt(batch_size).to(embeds.dtype)  # (B, P, D)
        kwargs = dict(inputs_embeds=torch.cat([prompts, embeds], dim=1), position_ids=all_positions)
    kwargs["attention_mask"] = full_mask
    return CausalInputs(kwargs=kwargs, full_mask=full_mask, positions=positions)


def forward_last(model, input_ids, attention_mask, *, logits_to_keep: int, before_last: bool = False,
                 use_cache: bool = False):
    """Logits of the last `logits_to_keep` positions: (B, logits_to_keep, V). `before_last`: of the
    `logits_to_keep` positions before the last one instead, those that predict the last tokens (the
    LM head runs on no position whose logits would be dropped)."""
    inputs = prepare(model, input_ids, attention_mask)
    keep = logits_to_keep
    if before_last:
        length = inputs.kwargs["input_ids" if "input_ids" in inputs.kwargs else "inputs_embeds"].size(1)
        if logits_to_keep >= length:  # the first token has no position before it to predict it from
            raise ValueError(f"cannot score the last {logits_to_keep} of {length} positions: no position before them")
        keep = torch.arange(length - logits_to_keep - 1, length - 1, device=input_ids.device)
    output = core_model(model)(**inputs.kwargs, logits_to_keep=keep, use_cache=use_cache)
    return output, inputs


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                    eos_token_ids: list[int], pad_token_id: int, line_end_ids: list[int] = ()) -> torch.Tensor:
    """Greedy decoding with a KV cache. Returns (B, <= max_new_tokens) new token ids, pad after the end.

    A row ends at an EOS token, or at a `line_end_ids` token once it has generated something else:
    a model that opens its answer with a newline ("Summary:" then a line break) is not cut off before
    its first word."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    output, inputs = forward_last(model, input_ids, attention_mask, logits_to_keep=1, use_cache=True)
    core = core_model(model)
    mask, position = inputs.full_mask, inputs.positions[:, -1]
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=input_ids.device)
    line_ends = torch.tensor(list(line_end_ids), dtype=torch.long, device=input_ids.device)
    finished = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
    started = torch.zeros_like(finished)
    generated = []
    while True:
        next_token = output.logits[:, -1].argmax(dim=-1)
        next_token = torch.where(finished, torch.full_like(next_token, pad_token_id), next_token)
        generated.append(next_token)
        line_end = torch.isin(next_token, line_ends)
        finished |= torch.isin(next_token, eos) | (line_end & started)
        started |= ~line_end
        if finished.all() or len(generated) == max_new_tokens:  # no forward whose token would be dropped
            break
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        position = position + 1
        output = core(input_ids=next_token[:, None], attention_mask=mask, position_ids=position[:, None],
                      cache=output.cache, use_cache=True, logits_to_keep=1)
    return torch.stack(generated, dim=1)
