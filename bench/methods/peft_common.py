"""What the PEFT-backed methods share when they build: the task type for a model kind, wrapping,
and PEFT's prompt encoders run in fp32.

This module imports PEFT (and with it transformers and torch, seconds of imports): the method
modules import it inside their `build`, so listing methods and checking their settings stay quick."""

from __future__ import annotations

import warnings

from peft import PromptEncoder, TaskType, get_peft_model
from peft.tuners.prefix_tuning import PrefixEncoder

from bench.device import FullPrecision
from bench.methods.registry import MethodError
from bench.models import BaseModel
from tasks.notices import first_line

TASK_TYPES = {"encoder": TaskType.SEQ_CLS, "causal": TaskType.CAUSAL_LM, "seq2seq": TaskType.SEQ_2_SEQ_LM}
# PEFT gives a seq2seq model's input prompt a second half (num_transformer_submodules=2) that its
# prompt tuning and P-tuning never read: it would be initialised, counted as trained and saved
INPUT_PROMPT_ONLY = {"num_transformer_submodules": 1}


def task_type(base: BaseModel) -> TaskType:
    return TASK_TYPES[base.kind]


def refuse_last_token_classifier(base: BaseModel, method: str) -> None:
    """A decoder family's sequence classifier (its head is `score`) reads the last real token, which
    it finds from the input ids; virtual tokens reach the model as embeddings, so for every shorter
    row of a batch it would read padding."""
    if base.kind == "encoder" and hasattr(base.model, "score"):
        raise MethodError(f"{method} cannot train model {base.name!r} ({base.model.config.model_type}) as a "
                          "classifier: its head reads the last token, which virtual tokens hide; load it with "
                          "--model-kind causal to score label words, or use lora or prefix_tuning")


def wrap(base: BaseModel, peft_config):
    with warnings.catch_warnings():
        # PEFT 0.21 calls a transformers method deprecated in 5.x; harmless, and noisy on every run
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        try:
            model = get_peft_model(base.model, peft_config)
        except ValueError as err:  # an architecture PEFT has no defaults for (LoRA's target modules, say)
            method = str(peft_config.peft_type.value).lower()
            raise MethodError(f"PEFT cannot apply {method} to model {base.name!r} "
                              f"({base.model.config.model_type}): {first_line(err)}") from None
    return model.to(base.device)


class FullPrecisionPromptEncoder(FullPrecision, PromptEncoder):
    """PEFT's P-tuning MLP / LSTM prompt encoder, run in fp32 under any autocast around it: the saved
    adapter holds the prompt computed in fp32 outside autocast, so the prompt trained and the prompt
    reloaded are the same numbers; and CUDA autocast runs a cuDNN LSTM in fp16 even inside a bf16
    region, with no loss scaling there to keep its gradients from underflowing. The encoder is small:
    fp32 costs nothing. A class of its own (not `bench.device.compute_in_fp32`'s, made at run time) pickles."""


class FullPrecisionPrefixEncoder(FullPrecision, PrefixEncoder):
    """PEFT's prefix encoder, whose `prefix_projection` MLP runs in fp32 under any autocast around it,
    for the reasons P-tuning's encoder does (`FullPrecisionPromptEncoder`)."""
