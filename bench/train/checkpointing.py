"""Gradient checkpointing: a run's layers recompute their activations in the backward pass.

Switched on for the training steps only, and off after them, so the model is left as it was for
whatever uses it next (evaluation runs in eval mode, where transformers does not checkpoint anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bench.methods.registry import Method, MethodError
from bench.modeling.causal import core_model
from bench.models import BaseModel, ModelError


def check_method_checkpoints(method: Method) -> None:
    """Refuse, before a model loads, a method that cannot train with checkpointing."""
    if not method.allows_checkpointing:
        raise MethodError(f"method {method.name!r} does not work with gradient_checkpointing (PEFT refuses it); "
                          "leave that setting off for it")


def check_model_checkpoints(base: BaseModel) -> None:
    if not getattr(base.model, "supports_gradient_checkpointing", False):
        raise ModelError(f"model {base.name!r} ({type(base.model).__name__}) does not support "
                         "gradient_checkpointing; leave that setting off for it")


def _switch(model: torch.nn.Module, on: bool) -> None:
    core = core_model(model)
    # non-reentrant checkpointing needs no input that requires grad: the frozen embeddings before a
    # prompt method's virtual tokens give none
    checkpoint_kwargs = {"use_reentrant": False}
    if hasattr(core, "activation_checkpointing_enable"):  # the name in later transformers 5.x releases
        enable, disable = core.activation_checkpointing_enable, core.activation_checkpointing_disable
        options = {"activation_checkpointing_kwargs": checkpoint_kwargs}
    else:
        enable, disable = core.gradient_checkpointing_enable, core.gradient_checkpointing_disable
        options = {"gradient_checkpointing_kwargs": checkpoint_kwargs}
    if on:
        enable(**options)
        return
    disable()
    # enabling also hooked the input embeddings to require grad; disabling leaves that hook on a model
    # PEFT wraps from outside (earlier releases fail to remove a hook they never set)
    if getattr(core, "_require_grads_hook", None) is not None or getattr(core, "_require_grads_hooks", None):
        core.disable_input_require_grads()


@contextmanager
def recomputed_activations(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Checkpointing on for the block's training steps, if `enabled`, and off after them."""
    if not enabled:
        yield
        return
    _switch(model, True)
    try:
        yield
    finally:
        _switch(model, False)
