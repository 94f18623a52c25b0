"""Load a base model and its tokenizer for a task: the right head for the model kind."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.device import pick_device, pick_dtype
from bench.models.pooling import CONFIG_KEY, apply_pooling, declared_pooling
from bench.models.registry import ModelError, ModelUnavailable, resolve_model


@dataclass
class BaseModel:
    name: str
    source: str  # folder or hub id the weights came from
    kind: str  # encoder | causal | seq2seq
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype

    @property
    def max_positions(self) -> int | None:
        """Learned absolute positions bound the sequence length; rotary/relative ones do not."""
        config = self.model.config
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return None
        if getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None):
            return None
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _load_tokenizer(source: str, kind: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # Decoder-only models generate after the last real token, so pad on the left; for the same
    # reason an over-long prompt keeps its end (the question, the "Answer:" cue).
    tokenizer.padding_side = "left" if kind == "causal" else "right"
    tokenizer.truncation_side = "right" if kind == "encoder" else "left"
    return tokenizer


def _model_class(kind: str):
    import transformers

    return {
        "encoder": transformers.AutoModelForSequenceClassification,
        "causal": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
    }[kind]


def load_base_model(name: str, *, num_labels: int | None = None, kind: str | None = None,
                    device: torch.device | None = None) -> BaseModel:
    """Load `name` (registry name, local folder or hub id). Encoders get a `num_labels` head."""
    resolved = resolve_model(name, kind=kind)
    device = device or pick_device()
    dtype = pick_dtype(device)
    tokenizer = _load_tokenizer(resolved.source, resolved.kind)
    extra = {}
    if resolved.kind == "encoder":
        if num_labels is None:
            raise ModelError(f"model {name!r} is an encoder: it needs a classification task")
        # a checkpoint's own head (another label count, say) is replaced: every run starts a fresh head;
        # a mismatch anywhere else is refused below
        extra.update(num_labels=num_labels, ignore_mismatched_sizes=True, output_loading_info=True)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    hf_logging.disable_progress_bar()  # one bar per run is enough
    try:
        loaded = _model_class(resolved.kind).from_pretrained(resolved.source, dtype=dtype, **extra)
    except OSError as err:  # a folder with a config but no weights, a hub id whose files cannot be fetched
        raise ModelUnavailable(f"model {name!r}: cannot load its weights from {resolved.source} "
                               f"({str(err).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model, info = loaded if isinstance(loaded, tuple) else (loaded, {})
    body = sorted(key for key, *_ in info.get("mismatched_keys", ()) if key.split(".")[0] not in HEAD_NAMES)
    if body:
        raise ModelUnavailable(f"model {name!r}: weights of another shape than its config gives in {resolved.source} "
                               f"({', '.join(body[:3])}{', ...' if len(body) > 3 else ''})")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if resolved.kind == "encoder":
        pooling = getattr(model.config, CONFIG_KEY, None) or declared_pooling(resolved.source)
        if pooling:
            apply_pooling(model, pooling)
    model.to(device)
    return BaseModel(name=name, source=resolved.source, kind=resolved.kind, model=model, tokenizer=tokenizer,
                     device=device, dtype=dtype)


HEAD_NAMES = ("classifier", "score")  # sequence-classification heads across transformers families


def reset_classification_head(base: BaseModel) -> None:
    """Re-initialise a fresh encoder head from the current RNG state, so each run seed owns its head."""
    if base.kind != "encoder":
        return
    for name in HEAD_NAMES:
        head = getattr(base.model, name, None)
        if head is not None:
            head.apply(base.model._init_weights)
            return
