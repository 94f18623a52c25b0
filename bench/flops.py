"""Analytic training FLOPs of a run: what each weight and each attention product costs, and on how
many positions it runs.

Every group of weights costs, per position it runs on, 2 * N forward, 2 * N backward for the
activation gradients (every method needs them through the layers: prompts sit at the input, LoRA
and prefixes in every layer; where nothing trains below the first layer, autograd skips that layer's
input gradients, so for LoRA and prefix tuning this is a slight upper bound) and 2 * N_trainable for
the weight gradients (frozen weights need none).
Attention adds, per layer and per (query, key) pair, 4 * d_attn forward (Q.K^T and scores.V, 2 * d_attn
each; Kaplan et al. 2020, Chinchilla app. F) and twice that backward (both operands are activations).
A causal position attends to the prefix, the positions before it and itself: about half the pairs
Chinchilla counts, the work of kernels that skip the masked half.

Where each group runs:
- the layers (every weight outside the embedding tables, heads and prompt encoder), on every
  position; the virtual tokens of prompt tuning and P-tuning are positions, a prefix adds keys and
  values only. Seq2seq: encoder weights on encoder positions, decoder weights on decoder positions,
  except the cross-attention key and value projections, which read the encoder's output.
- the head: the LM head on each target token; a classifier (and a pooler) on each row.
- the prompt encoder: P-tuning's MLP / LSTM once a step over the virtual tokens (PEFT computes the
  prompt once and repeats it for the batch); prefix tuning's projection once per row.
- embedding tables, prompt tuning's and prefix tuning's included, are lookups: free.
- a layer group shared across depths (ALBERT) counts at every depth it runs.
Gradient checkpointing runs the layers' forward twice.

Only positions that carry data are counted: padding, and positions computed only to be dropped, are
not, so the estimate does not depend on how rows were batched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import torch

from bench.models.loading import HEAD_NAMES

ESTIMATE_VERSION = 2  # raised whenever the estimate changes: figures of two versions do not compare
# the cross-attention key / value projections of a decoder layer (T5, BART-likes, BERT-style decoders)
CROSS_KEY_VALUE = re.compile(r"(EncDecAttention|encoder_attn|crossattention)\.(self\.)?(k|v|k_proj|v_proj|key|value)\.")


@dataclass
class Work:
    """What training ran, summed over its steps: what the FLOP estimate multiplies."""

    positions: int = 0  # real positions through the (encoder) layers, input virtual tokens included
    attention_pairs: int = 0  # (query, key) pairs attended there
    decoder_positions: int = 0  # seq2seq: decoder positions (the target tokens)
    decoder_pairs: int = 0  # seq2seq: decoder self-attention pairs plus cross-attention pairs
    scored: int = 0  # target tokens through the LM head, or rows through the classifier
    prompt_encoder_rows: int = 0  # rows through P-tuning's encoder or prefix tuning's projection

    def __iadd__(self, other: Work) -> Work:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    @property
    def tokens(self) -> int:
        """Token positions processed: encoder (or only) stack plus decoder."""
        return self.positions + self.decoder_positions


@dataclass
class Weights:
    total: int = 0
    trainable: int = 0

    def add(self, parameter: torch.nn.Parameter, runs: int = 1) -> None:
        """`runs`: how many layers share this weight (ALBERT runs one layer group at every depth)."""
        self.total += runs * parameter.numel()
        self.trainable += runs * parameter.numel() if parameter.requires_grad else 0

    def flops(self, positions: int) -> int:
        """Forward, activation gradients and weight gradients over `positions`."""
        return (4 * self.total + 2 * self.trainable) * positions


def _core(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _text_config(model: torch.nn.Module):
    config = _core(model).config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _dim(config, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return 0


def attention_width(config) -> int:
    """Width of the query-key products: heads x head size, which need not be the hidden size."""
    hidden = _dim(config, "hidden_size", "d_model", "n_embd")
    heads = _dim(config, "num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
    head_size = _dim(config, "head_dim", "d_kv") or (hidden // heads if heads else 0)
    return heads * head_size if heads else hidden


def _ids(modules) -> set[int]:
    return {id(p) for module in modules if module is not None for p in module.parameters()}


def weight_groups(model: torch.nn.Module) -> dict[str, Weights]:
    """The model's weights by where they run: layers, decoder, cross_key_value, head, prompt_encoder
    (embedding tables and the frozen originals PEFT keeps beside trained head copies are left out)."""
    core = _core(model)
    head_modules = [core.get_output_embeddings(), getattr(getattr(core, "base_model", None), "pooler", None)]
    # poolers and pre-classifiers run once per row, as the head does (DeBERTa-v2's, DistilBERT's)
    head_modules += [getattr(core, name, None) for name in (*HEAD_NAMES, "pooler", "pre_classifier")]
    head = _ids(head_modules)
    tables = _ids(m for m in model.modules() if isinstance(m, torch.nn.Embedding)) - head  # a tied LM head runs
    decoder = _ids([core.get_decoder()]) if getattr(core.config, "is_encoder_decoder", False) else set()
    groups = {name: Weights() for name in ("layers", "decoder", "cross_key_value", "head", "prompt_encoder")}
    config = core.config
    shared_runs = config.num_hidden_layers // config.num_hidden_groups if hasattr(config, "num_hidden_groups") else 1
    for name, parameter in model.named_parameters():
        if id(parameter) in tables or ".original_module." in name:  # a lookup, or PEFT's unused head copy
            continue
        if name.startswith("prompt_encoder."):
            group = "prompt_encoder"
        elif id(parameter) in head:
            group = "head"
        elif id(parameter) in decoder:
            group = "cross_key_value" if CROSS_KEY_VALUE.search(name) else "decoder"
        else:
            group = "layers"
        groups[group].add(parameter, shared_runs if "albert_layer_groups." in name else 1)
    return groups


def training_flops(model: torch.nn.Module, work: Work, *, recomputed: bool = False) -> float:
    """Analytic training FLOPs of `work` on `model`. `recomputed`: gradient checkpointing's second
    forward through the layers."""
    config = _text_config(model)
    groups = weight_groups(model)
    encoder_layers = _dim(config, "encoder_layers", "num_hidden_layers", "n_layer", "num_layers")
    decoder_layers = _dim(config, "decoder_layers", "num_decoder_layers")
    attention_forward = 4 * attention_width(config) * (
        encoder_layers * work.attention_pairs + decoder_layers * work.decoder_pairs)
    layer_forward = 2 * (groups["layers"].total * work.positions + groups["cross_key_value"].total * work.positions
                         + groups["decoder"].total * work.decoder_positions) + attention_forward
    layers = (groups["layers"].flops(work.positions) + groups["cross_key_value"].flops(work.positions)
              + groups["decoder"].flops(work.decoder_positions) + 3 * attention_forward)
    return float(layers + (layer_forward if recomputed else 0) + groups["head"].flops(work.scored)
                 + groups["prompt_encoder"].flops(work.prompt_encoder_rows))
