"""Gradient checkpointing: a run's layers recompute their activations in the backward pass.

Switched on for the training steps only and off after them, because a process reuses one base
model across runs (evaluation runs in eval mode, where transformers does not checkpoint anyway).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bench.methods.registry import Method, MethodError
from bench.models import BaseModel, ModelError


def check_checkpointing(method: Method, base: BaseModel) -> None:
    """Refuse, before any compute, a run that asks for checkpointing where it cannot work."""
    if not method.allows_checkpointing:
        raise MethodError(f"method {method.name!r} does not work with gradient_checkpointing (PEFT refuses it); "
                          "leave that setting off for it")
    if not getattr(base.model, "supports_gradient_checkpointing", False):
        raise ModelError(f"model {base.name!r} ({type(base.model).__name__}) does not support "
                         "gradient_checkpointing; leave that setting off for it")


def _switch(model: torch.nn.Module, on: bool) -> None:
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    with warnings.catch_warnings():
        # transformers 5.x renamed the switch (`activation_checkpointing_*`); the old name, kept for
        # every 5.x release, warns
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing_.* is deprecated", category=FutureWarning)
        if on:
            # non-reentrant checkpointing needs no input that requires grad: the frozen embeddings
            # before a prompt method's virtual tokens give none
            core.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            core.gradient_checkpointing_disable()


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
