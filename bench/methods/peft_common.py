"""What the PEFT-backed methods share: the task type for a model kind, and wrapping."""

from __future__ import annotations

from peft import TaskType, get_peft_model

from bench.models import BaseModel

TASK_TYPES = {"encoder": TaskType.SEQ_CLS, "causal": TaskType.CAUSAL_LM, "seq2seq": TaskType.SEQ_2_SEQ_LM}


def task_type(base: BaseModel) -> TaskType:
    return TASK_TYPES[base.kind]


def wrap(base: BaseModel, peft_config):
    model = get_peft_model(base.model, peft_config)
    return model.to(base.device)
