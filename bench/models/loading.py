"""Load a base model and its tokenizer for a task: the right head for the model kind."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from bench.device import keep_fp32_layers_in_fp32, pick_device, pick_dtype
from bench.models.gguf_cache import models_cache
from bench.models.pooling import CONFIG_KEY, apply_pooling, declared_pooling
from bench.models.registry import ModelError, ModelUnavailable, resolve_model
from tasks.notices import UserNotice, first_line


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
        if getattr(config, "position_embedding_type", "absolute") != "absolute" or self.rotary:
            return None
        table = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if table and config.model_type in PADDING_OFFSET_FAMILIES:  # positions count from the pad id + 1
            table -= (config.pad_token_id or 0) + 1
        return table

    @property
    def rotary(self) -> bool:
        """Whether positions are rotations of the queries and keys (Llama, SmolLM2), not a table."""
        config = self.model.config
        return bool(getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None))

    @property
    def context_length(self) -> int | None:
        """Positions a sequence may take: a learned table's (`max_positions`), or the context a rotary
        model declares, past which its attention meets distances it never learned (and a card asking
        for millions of new tokens would generate until stopped). None: the model declares none."""
        if self.rotary:
            return getattr(self.model.config, "max_position_embeddings", None)
        return self.max_positions


# families whose position ids start after the padding index (RoBERTa's 514 positions hold 512 tokens)
PADDING_OFFSET_FAMILIES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer",
                           "roberta-prelayernorm", "mpnet", "ibert", "luke"}


def _load_tokenizer(name: str, source: str, kind: str):
    from transformers import AutoTokenizer

    from_folder = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:  # no tokenizer files and nothing to build one from, no hub
        where = f"in {source} (save one beside the weights with tokenizer.save_pretrained)" if from_folder else \
            f"of {source}"
        raise ModelUnavailable(f"model {name!r}: cannot load the tokenizer {where}: {first_line(err)}") from None
    # without tokenizer files, transformers builds some families a tokenizer of special tokens only
    # (every word unknown: a run would train on nothing but unknown tokens); any language's own
    # vocabulary is far larger
    if len(set(tokenizer.get_vocab()) - set(tokenizer.all_special_tokens)) < 2:
        raise ModelUnavailable(f"model {name!r}: no usable tokenizer in {source}: it knows only special tokens "
                               "(save one beside the weights with tokenizer.save_pretrained)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise ModelUnavailable(f"model {name!r}: its tokenizer has no padding, end-of-sequence or unknown token to "
                               "pad batches with; add a pad token to it")
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
                    device: torch.device | None = None, full_precision_weights: bool = False) -> BaseModel:
    """Load `name` (registry name, local folder or hub id). Encoders get a `num_labels` head.

    Weights are stored in the compute dtype (bf16 on a recent GPU), except with
    `full_precision_weights`: in fp32, for a method that trains every weight (full fine-tuning),
    which would otherwise start from the checkpoint rounded to bf16. Forwards run in the compute
    dtype either way."""
    resolved = resolve_model(name, kind=kind)
    device = device or pick_device()
    dtype = pick_dtype(device)
    tokenizer = _load_tokenizer(name, resolved.source, resolved.kind)
    extra = {"output_loading_info": True}
    if resolved.kind == "encoder":
        if num_labels is None:
            raise ModelError(f"model {name!r} is an encoder: it needs a classification task")
        # a checkpoint's own head (another label count, say) is replaced: every run starts a fresh head;
        # a mismatch anywhere else is refused below
        extra.update(num_labels=num_labels, ignore_mismatched_sizes=True)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    hf_logging.disable_progress_bar()  # one bar per run is enough
    try:
        # weights the checkpoint lacks (a fresh head, a pooler) start the same on every load, so a run
        # and a reload of its adapter see the same ones
        with torch.random.fork_rng(devices=[]):  # the CPU generator, which initialises them, is left as it was
            torch.default_generator.manual_seed(0)
            model, info = _model_class(resolved.kind).from_pretrained(
                resolved.source, dtype=torch.float32 if full_precision_weights else dtype, **extra)
    except (OSError, SafetensorError) as err:  # no weights, a damaged file, a hub id whose files cannot be fetched
        damaged = " (damaged: delete that folder to convert it again)" if _in_cache(resolved.source) else ""
        raise ModelUnavailable(f"model {name!r}: cannot load its weights from {resolved.source}{damaged} "
                               f"({first_line(err)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    _check_loaded(name, resolved, model, info)
    keep_fp32_layers_in_fp32(model, dtype)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if resolved.kind == "encoder":
        pooling = getattr(model.config, CONFIG_KEY, None) or declared_pooling(resolved.source)
        if pooling and not apply_pooling(model, pooling):
            warnings.warn(f"model {name!r}: its checkpoint declares {pooling} pooling, but a "
                          f"{model.config.model_type} classification head cannot be made to read it; the head "
                          "reads what its architecture gives it", UserNotice, stacklevel=2)
    model.to(device)
    return BaseModel(name=name, source=resolved.source, kind=resolved.kind, model=model, tokenizer=tokenizer,
                     device=device, dtype=dtype)


HEAD_NAMES = ("classifier", "score")  # sequence-classification heads across transformers families


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def _check_loaded(name: str, resolved, model: torch.nn.Module, info: dict) -> None:
    """Refuse weights the checkpoint holds in another shape, and an LM without its LM head (a
    classifier folder loaded with --model-kind causal, say); name other weights it lacks."""
    body = sorted(key for key, *_ in info.get("mismatched_keys", ()) if key.split(".")[0] not in HEAD_NAMES)
    if body:
        raise ModelUnavailable(f"model {name!r}: weights of another shape than its config gives in {resolved.source} "
                               f"({_listed(body)})")
    missing = sorted(key for key in info.get("missing_keys", ()) if key.split(".")[0] not in HEAD_NAMES)
    head = model.get_output_embeddings() if resolved.kind != "encoder" else None
    head_names = [f"{module_name}." for module_name, module in model.named_modules() if module is head]
    if any(key.startswith(tuple(head_names)) for key in missing):
        raise ModelUnavailable(f"model {name!r}: {resolved.source} holds no LM head weights, so it cannot be used as "
                               f"a {resolved.kind} LM (it would train and score through a random head)")
    if missing:
        warnings.warn(f"model {name!r}: {resolved.source} lacks {_listed(missing)}; they start from a fixed random "
                      "initialisation (frozen, except under full fine-tuning)", UserNotice, stacklevel=2)


def hub_commit(source: str) -> str | None:
    """The commit of a hub model's files as the local hub cache holds them (the snapshot folder
    `from_pretrained` read); None for a model folder, or files not in the cache."""
    if Path(source).exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(source, "config.json")
    return Path(config).parent.name if isinstance(config, str) else None  # .../snapshots/<commit>/config.json


def _in_cache(source: str) -> bool:
    return Path(source).is_relative_to(models_cache())


def reset_classification_head(base: BaseModel) -> None:
    """Re-initialise a fresh encoder head from the current RNG state, so each run seed owns its head."""
    if base.kind != "encoder":
        return
    for name in HEAD_NAMES:
        head = getattr(base.model, name, None)
        if head is not None:
            head.apply(base.model._init_weights)
            return
