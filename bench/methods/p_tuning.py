"""P-tuning (Liu et al. 2021): virtual tokens produced by an MLP or LSTM prompt encoder."""

from __future__ import annotations

from dataclasses import dataclass

from bench.methods.registry import Method, check_range, register_method

ENCODERS = ("mlp", "lstm")  # PEFT's PromptEncoderReparameterizationType, by its members' names


@dataclass
class PTuningSettings:
    num_virtual_tokens: int = 20
    encoder: str = "mlp"  # mlp | lstm
    encoder_hidden_size: int = 128

    def __post_init__(self):
        check_range("p_tuning", "num_virtual_tokens", self.num_virtual_tokens, low=1, high=1000)
        check_range("p_tuning", "encoder", self.encoder, choices=ENCODERS)
        check_range("p_tuning", "encoder_hidden_size", self.encoder_hidden_size, low=1, high=65536)


def build_p_tuning(base, settings: PTuningSettings, card):
    from peft import PromptEncoderConfig, PromptEncoderReparameterizationType

    from bench.methods.peft_common import (INPUT_PROMPT_ONLY, FullPrecisionPromptEncoder,
                                           refuse_last_token_classifier, task_type, wrap)

    # PEFT's MLP encoder is fixed at two layers (it ignores encoder_num_layers), so it is not exposed.
    refuse_last_token_classifier(base, "p_tuning")
    config = PromptEncoderConfig(
        task_type=task_type(base),
        num_virtual_tokens=settings.num_virtual_tokens,
        encoder_reparameterization_type=PromptEncoderReparameterizationType[settings.encoder.upper()],
        encoder_hidden_size=settings.encoder_hidden_size,
        **INPUT_PROMPT_ONLY,
    )
    model = wrap(base, config)
    encoder = model.prompt_encoder[model.active_adapter]
    encoder.__class__ = FullPrecisionPromptEncoder  # a class, not a patched method: copies and pickles keep it
    return model



register_method(Method(
    name="p_tuning",
    settings_cls=PTuningSettings,
    build=build_p_tuning,
    default_lr=1e-2,
    description="Liu et al.: virtual tokens reparameterized by an MLP or LSTM prompt encoder",
))
