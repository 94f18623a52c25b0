"""Turn rendered examples into padded tensors for each model kind."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class LMBatch:
    input_ids: torch.Tensor  # (B, T), padded on the tokenizer's padding side
    attention_mask: torch.Tensor  # (B, T)
    target_mask: torch.Tensor  # (B, T) 1 on tokens that carry loss / score (causal: right-aligned)
    labels: torch.Tensor | None = None  # (B, L) seq2seq decoder targets, -100 on padding


def target_text(prompt: str, target: str, *, kind: str) -> str:
    # A causal LM continues the prompt, so "Answer:" is followed by " Paris"; BPE vocabularies
    # hold the word with its leading space. Seq2seq decoders start fresh.
    if kind == "causal" and prompt and not prompt[-1].isspace():
        return " " + target
    return target


def label_word_ids(tokenizer, word: str, *, after: str, kind: str) -> list[int]:
    """A label word's tokens as training targets it after a prompt ending in `after` (see `target_text`)."""
    return tokenizer(target_text(after, word, kind=kind), add_special_tokens=False)["input_ids"]


_LINE_BREAKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its line-break ids


def line_break_ids(tokenizer) -> list[int]:
    """Every token holding a line break ("\n", "\n\n\n", "\r\n", a break and spaces). Found once per
    tokenizer (every run of a model pool shares its tokenizer): Gemma's vocabulary has 262k tokens."""
    if tokenizer not in _LINE_BREAKS:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        _LINE_BREAKS[tokenizer] = [i for i, text in enumerate(texts) if "\n" in text]
    return _LINE_BREAKS[tokenizer]


def _pad(rows: Sequence[list[int]], value: int, *, left: bool) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r)))
                         for r in rows])


# Of an over-long prompt kept by its head and tail, the head's share: Sun et al. (2019, "How to
# Fine-Tune BERT for Text Classification") found the first 128 and the last 382 of 512 tokens
# classified long texts best
HEAD_SHARE = 0.25


def encode_prompts(tokenizer, prompts: Sequence[str], *, max_tokens: int,
                   head_and_tail: bool = False) -> dict[str, torch.Tensor]:
    """Prompts as padded tensors, at most `max_tokens` each. An over-long prompt loses tokens on the
    tokenizer's truncation side, or, `head_and_tail`, from its middle: it keeps its start (a title,
    a passage's opening) and its end (the question and the cue a template closes with)."""
    if head_and_tail:
        # whole, with a mask of the special tokens the tokenizer added (not an [UNK] of the text);
        # a row that fits comes out as the tokenizer's own padded call gives it
        encoded = tokenizer(list(prompts), verbose=False, return_special_tokens_mask=True)
        rows = [_middle_cut(row, added, max_tokens)
                for row, added in zip(encoded["input_ids"], encoded["special_tokens_mask"])]
        left = tokenizer.padding_side == "left"
        return {"input_ids": _pad(rows, tokenizer.pad_token_id, left=left),
                "attention_mask": _pad([[1] * len(row) for row in rows], 0, left=left)}
    # token type ids stay at their default (all zeros): single-segment inputs, and LMs reject them
    return tokenizer(list(prompts), padding=True, truncation=True, max_length=max_tokens,
                     return_token_type_ids=False, return_tensors="pt")


def _middle_cut(ids: list[int], added: list[int], max_tokens: int) -> list[int]:
    """`ids` cut to `max_tokens` from the middle of the text between the special tokens the
    tokenizer added before and after it ([CLS] ... [SEP]: `added` marks them), which stay."""
    if len(ids) <= max_tokens:
        return ids
    start = next((i for i, mark in enumerate(added) if not mark), len(ids))
    end = len(ids) - next((i for i, mark in enumerate(reversed(added)) if not mark), 0)
    room = max(0, max_tokens - start - (len(ids) - end))  # the special tokens stay, whatever the budget
    head = int(room * HEAD_SHARE)
    return ids[:start] + ids[start:start + head] + ids[end - (room - head):end] + ids[end:]


def _prompt_ids(tokenizer, prompts: Sequence[str], max_tokens: int) -> list[list[int]]:
    return tokenizer(list(prompts), truncation=True, max_length=max_tokens)["input_ids"]


def _target_ids(tokenizer, prompts, targets, *, kind: str, add_eos: bool) -> list[list[int]]:
    texts = [target_text(p, t, kind=kind) for p, t in zip(prompts, targets)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    return [row + eos for row in ids]


def encode_causal(tokenizer, prompts: Sequence[str], targets: Sequence[str], *, max_tokens: int,
                  add_eos: bool, max_target_tokens: int | None = None) -> LMBatch:
    """prompt + target per row, left-padded, so every row's target ends at the last position.
    `max_target_tokens` cuts longer targets (a model with learned positions has no position for
    the rest)."""
    prompt_ids = _prompt_ids(tokenizer, prompts, max_tokens)
    target_ids = _target_ids(tokenizer, prompts, targets, kind="causal", add_eos=add_eos)
    if max_target_tokens is not None:
        target_ids = [row[:max_target_tokens] for row in target_ids]
    rows = [p + t for p, t in zip(prompt_ids, target_ids)]
    marks = [[0] * len(p) + [1] * len(t) for p, t in zip(prompt_ids, target_ids)]
    return LMBatch(
        input_ids=_pad(rows, tokenizer.pad_token_id, left=True),
        attention_mask=_pad([[1] * len(r) for r in rows], 0, left=True),
        target_mask=_pad(marks, 0, left=True),
    )


def encode_seq2seq(tokenizer, prompts: Sequence[str], targets: Sequence[str], *, max_tokens: int,
                   max_target_tokens: int | None = None) -> LMBatch:
    """`max_target_tokens` cuts longer targets: the decoder's learned positions (BART's) end there."""
    encoded = encode_prompts(tokenizer, prompts, max_tokens=max_tokens)
    target_ids = _target_ids(tokenizer, prompts, targets, kind="seq2seq", add_eos=True)
    if max_target_tokens is not None:
        target_ids = [row[:max_target_tokens] for row in target_ids]
    labels = _pad(target_ids, -100, left=False)
    return LMBatch(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                   target_mask=(labels != -100).long(), labels=labels)
