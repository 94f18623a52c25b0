"""Prompt tuning (Lester et al. 2021): trainable input vectors before the text, model frozen."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.methods.registry import Method, MethodError, check_range, register_method
from tasks.notices import UserNotice

if TYPE_CHECKING:
    import torch

INITS = ("random", "sampled_vocab", "class_labels", "text")
# PEFT's PromptTuningInit member each init starts from; class labels are written over sampled rows
_PEFT_INIT = {"random": "RANDOM", "sampled_vocab": "SAMPLE_VOCAB", "class_labels": "SAMPLE_VOCAB", "text": "TEXT"}


# What a suite or a search starts a text-initialised prompt from when it names no text of its own
# (`spbench run` asks for one).
DEFAULT_INIT_TEXT = "Classify or answer the following input."


def with_default_init_text(settings: dict) -> dict:
    """`settings` with the default text where the prompt is initialised from text and names none,
    as a suite's sweep point and a search's trial are given it."""
    if settings.get("init") == "text" and "init_text" not in settings:
        return {**settings, "init_text": DEFAULT_INIT_TEXT}
    return settings


@dataclass
class PromptTuningSettings:
    num_virtual_tokens: int = 20
    init: str = "sampled_vocab"  # random | sampled_vocab | class_labels | text
    init_text: str | None = None  # required when init == "text"

    def __post_init__(self):
        check_range("prompt_tuning", "num_virtual_tokens", self.num_virtual_tokens, low=1, high=1000)
        check_range("prompt_tuning", "init", self.init, choices=INITS)
        if self.init == "text" and not self.init_text:
            raise MethodError("prompt_tuning.init=text needs prompt_tuning.init_text")

    def without_effect(self) -> dict:
        """Settings these others make irrelevant, with the value a run id reads for them."""
        return {} if self.init == "text" else {"init_text": None}


def label_word_vectors(base, card) -> torch.Tensor:
    """One vector per label word (mean of its token embeddings, as Lester et al. do), class order.

    Read through the embedding layer's forward, not its weight: some models scale embeddings there
    (Gemma by sqrt(hidden size)), and the prompt is concatenated with those scaled input vectors
    (PEFT's sampled-vocabulary and text inits read the forward too)."""
    import torch

    from bench.modeling.encoding import label_word_ids

    embed = base.model.get_input_embeddings()
    vectors = []
    with torch.no_grad():
        for words in card.label_words.values():
            for word in words:
                # the word's tokens as training targets them after the template's last character
                ids = label_word_ids(base.tokenizer, word, after=card.template[-1:], kind=base.kind)
                vectors.append(embed(torch.tensor(ids, device=embed.weight.device)).float().mean(dim=0))
    return torch.stack(vectors)


def prompt_tuning_refusal(kind: str | None, card, settings: dict) -> str | None:
    if settings.get("init") == "class_labels" and not card.is_classification:
        return (f"prompt_tuning.init=class_labels needs a classification task; {card.name!r} is a {card.kind} task, "
                "with no class labels to start from")
    return None


def build_prompt_tuning(base, settings: PromptTuningSettings, card):
    import torch
    from peft import PromptTuningConfig, PromptTuningInit

    from bench.methods.peft_common import INPUT_PROMPT_ONLY, refuse_last_token_classifier, task_type, wrap

    if why := prompt_tuning_refusal(base.kind, card, dataclasses.asdict(settings)):
        raise MethodError(why)
    refuse_last_token_classifier(base, "prompt_tuning")
    config = PromptTuningConfig(
        task_type=task_type(base),
        num_virtual_tokens=settings.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit[_PEFT_INIT[settings.init]],
        prompt_tuning_init_text=settings.init_text if settings.init == "text" else None,
        tokenizer_name_or_path=base.source if settings.init == "text" else None,
        **INPUT_PROMPT_ONLY,
    )
    model = wrap(base, config)
    if settings.init == "class_labels":
        vectors = label_word_vectors(base, card)
        _note_label_words_left_out(card, settings.num_virtual_tokens)
        vectors = vectors[: settings.num_virtual_tokens]
        with torch.no_grad():
            prompt = model.prompt_encoder[model.active_adapter].embedding.weight
            prompt[: len(vectors)] = vectors.to(prompt.dtype)
    return model


def _note_label_words_left_out(card, num_virtual_tokens: int) -> None:
    """A prompt shorter than the label words starts from the first ones only: say which, since the
    config reads as if every class started it."""
    words = [word for class_words in card.label_words.values() for word in class_words]
    if num_virtual_tokens < len(words):
        kept = ", ".join(map(repr, words[:num_virtual_tokens]))
        warnings.warn(f"prompt_tuning init=class_labels with {num_virtual_tokens} virtual "
                      f"token{'s' if num_virtual_tokens > 1 else ''} for task {card.name}'s {len(words)} label "
                      f"words: only {kept} {'starts' if num_virtual_tokens == 1 else 'start'} the prompt (at "
                      f"least {len(words)} tokens start it from every one)",
                      UserNotice, stacklevel=3)


register_method(Method(
    name="prompt_tuning",
    settings_cls=PromptTuningSettings,
    build=build_prompt_tuning,
    default_lr=3e-2,
    description="Lester et al.: trainable input vectors; init random / sampled_vocab / class_labels / text",
    refusal=prompt_tuning_refusal,
    planned_settings=with_default_init_text,
))
