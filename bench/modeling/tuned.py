"""A model under adaptation, seen through the task: training loss, predictions, generation.

Every method and model kind goes through here, so the training loop and evaluation need not
know which one they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from peft import PeftModel, PeftType

from bench.device import autocast
from bench.flops import Work
from bench.modeling import causal
from bench.modeling.encoder import classification_head_in_fp32, encoder_logits
from bench.modeling.encoding import (LMBatch, encode_causal, encode_prompts, encode_seq2seq, label_word_ids,
                                    line_break_ids)
from bench.modeling.forward_patch import instance_forward
from bench.models import BaseModel
from tasks import Example, TaskCard


@dataclass
class StepLoss:
    loss: torch.Tensor
    work: Work  # what the step ran, for the FLOP estimate


def answer_line(text: str) -> str:
    """An answer is one line: its first non-empty one (a model may open a reply with a line break).
    Cut here as well as where generation stops, as a tokenizer may write a line break together with
    other text in one token, or, as SentencePiece's byte fallback, in pieces."""
    return text.strip().split("\n", 1)[0].strip()


HEAD_ROWS_PER_BLOCK = 16384  # LM-head rows taken to fp32 at once: 128 MiB of weights at a hidden size of 2048


class TunedModel:
    def __init__(self, model: torch.nn.Module, base: BaseModel, card: TaskCard):
        self.model, self.base, self.card = model, base, card
        self.kind, self.tokenizer, self.device = base.kind, base.tokenizer, base.device
        config = model.peft_config[model.active_adapter] if isinstance(model, PeftModel) else None
        prompt_learning = config is not None and config.is_prompt_learning
        self.num_virtual_tokens = config.num_virtual_tokens if prompt_learning else 0
        # prompt tuning / P-tuning add input positions; a prefix only adds keys and values
        self.virtual_tokens_in_input = prompt_learning and config.peft_type != PeftType.PREFIX_TUNING
        # rows through the prompt's own network: (once a step, per batch row)
        self.prompt_network_rows = _prompt_network_rows(config) if prompt_learning else (0, 0)
        classification_head_in_fp32(model, base)

    def autocast(self):
        """Every forward runs in the base model's compute dtype (nothing to do in fp32)."""
        return autocast(self.device, self.base.dtype)

    # ---- encoding --------------------------------------------------------------------------

    def _to_device(self, tensors: dict) -> dict:
        return {k: v.to(self.device) for k, v in tensors.items()}

    def _lm_batch(self, prompts: Sequence[str], targets: Sequence[str]) -> LMBatch:
        max_tokens = self.card.max_input_tokens
        if self.kind == "causal":
            # generation targets end with EOS so the model learns where an answer stops
            return encode_causal(self.tokenizer, prompts, targets, max_tokens=max_tokens,
                                 add_eos=not self.card.is_classification, max_target_tokens=self._target_room())
        return encode_seq2seq(self.tokenizer, prompts, targets, max_tokens=max_tokens,
                              max_target_tokens=self.base.max_positions)

    def prompt_batch(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The prompts tokenized and on the device, as every forward over prompts alone takes them. An
        encoder's over-long prompt keeps its head and its tail (a decoder's, its end: the tokenizer's
        truncation side)."""
        return self._to_device(encode_prompts(self.tokenizer, prompts, max_tokens=self.card.max_input_tokens,
                                              head_and_tail=self.kind == "encoder"))

    def _target_room(self) -> int | None:
        """Positions left for a target after the virtual tokens and the longest prompt, where the
        model's positions are bounded (None: they are not). A run is refused unless this holds the
        answer (`max_new_tokens`, or a classifier's longest label word), so only targets longer than
        any answer the model is asked for are cut; on CUDA, a position past the table would be a
        device-side assert that ends the process."""
        limit = self.base.max_positions
        if limit is None:
            return None
        return limit - self.card.max_input_tokens - self.num_virtual_tokens  # a prefix takes positions too

    def _work(self, attention_mask: torch.Tensor, *, scored: int, decoder_mask: torch.Tensor | None = None) -> Work:
        """What one step ran, counted on the positions that carry data (see bench/flops.py)."""
        virtual, (once, per_row) = self.num_virtual_tokens, self.prompt_network_rows
        prefix = 0 if self.virtual_tokens_in_input else virtual  # keys and values without positions
        positions = attention_mask.sum(dim=1) + (virtual if self.virtual_tokens_in_input else 0)  # (B,)
        if self.kind == "causal":  # each position attends to the prefix, the ones before it and itself
            pairs = positions * (positions + 1) // 2 + positions * prefix
        else:
            pairs = positions * (positions + prefix)
        work = Work(positions=int(positions.sum()), attention_pairs=int(pairs.sum()), scored=scored,
                    prompt_encoder_rows=once + per_row * len(attention_mask))
        if decoder_mask is not None:  # seq2seq: the decoder's causal self-attention and its cross-attention
            decoded = decoder_mask.sum(dim=1)
            work.decoder_positions = int(decoded.sum())
            work.decoder_pairs = int((decoded * (decoded + 1) // 2 + decoded * positions).sum())
        return work

    # ---- scoring ---------------------------------------------------------------------------

    def _target_logprobs(self, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probabilities of the targets (B, K) and their mask (B, K)."""
        ids, mask = batch.input_ids.to(self.device), batch.attention_mask.to(self.device)
        if self.kind == "causal":
            width = int(batch.target_mask.sum(1).max())  # K: targets are right-aligned
            # position t predicts token t + 1: the K positions before the last give (B, K, V)
            logits = causal.forward_last(self.model, ids, mask, logits_to_keep=width, before_last=True)[0].logits
            targets = ids[:, -width:]
            target_mask = batch.target_mask[:, -width:].to(self.device)
        else:
            labels = batch.labels.to(self.device)
            logits = self.model(input_ids=ids, attention_mask=mask, labels=labels).logits  # (B, L, V)
            targets, target_mask = labels.clamp(min=0), batch.target_mask.to(self.device)
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        return logprobs * target_mask, target_mask

    def loss(self, examples: Sequence[Example]) -> StepLoss:
        with self.autocast():
            return self._loss(examples)

    def _loss(self, examples: Sequence[Example]) -> StepLoss:
        prompts = [ex.prompt for ex in examples]
        if self.kind == "encoder":
            batch = self.prompt_batch(prompts)
            labels = torch.tensor([ex.label for ex in examples], device=self.device)
            loss = F.cross_entropy(encoder_logits(self.model, batch).float(), labels)
            return StepLoss(loss, self._work(batch["attention_mask"], scored=len(examples)))
        batch = self._lm_batch(prompts, [ex.target for ex in examples])
        logprobs, mask = self._target_logprobs(batch)
        # mean over target tokens: answers train on their own tokens only
        decoder_mask = batch.target_mask if self.kind == "seq2seq" else None
        work = self._work(batch.attention_mask, scored=int(mask.sum()), decoder_mask=decoder_mask)
        return StepLoss(-logprobs.sum() / mask.sum(), work)

    # ---- prediction ------------------------------------------------------------------------

    def _label_words(self) -> list[tuple[int, str]]:
        return [(c, w) for c, words in enumerate(self.card.label_words.values()) for w in words]

    def _single_token_labels(self, prompts: Sequence[str]) -> list[int] | None:
        """Token id of each label word when every word is one token, the same one, after each of
        `prompts` (tokenized as training does: with a leading space after "Sentiment:", without one
        after a template's closing newline), else None."""
        found = None
        for ending in {prompt[-1:] for prompt in prompts}:  # a word's tokens depend on the prompt's last character
            ids = [label_word_ids(self.tokenizer, word, after=ending, kind=self.kind)
                   for _, word in self._label_words()]
            if any(len(tokens) != 1 for tokens in ids) or found not in (None, ids):
                return None
            found = ids
        return None if found is None else [tokens[0] for tokens in found]

    @contextmanager
    def _head_in_fp32(self):
        """The LM head computes in fp32 where predictions read its argmax: in bf16, logits are rounded
        to steps of about 0.06 to 0.125, label words (or next tokens) whose scores round alike tie,
        and argmax settles every tie for the first class (or the lowest token id).
        The weights are taken to fp32 a block of rows at a time, so no fp32 copy of a large
        vocabulary's head (1 GB for Llama 3.2 1B) is held. Nothing changes where the model computes
        in fp32."""
        head = self.model.get_output_embeddings()
        if self.base.dtype == torch.float32 or head is None:
            yield
            return

        def forward(hidden: torch.Tensor) -> torch.Tensor:
            hidden = hidden.float()
            logits = hidden.new_empty(*hidden.shape[:-1], head.weight.shape[0])
            with torch.autocast(device_type=self.device.type, enabled=False):
                for start in range(0, head.weight.shape[0], HEAD_ROWS_PER_BLOCK):
                    rows = slice(start, start + HEAD_ROWS_PER_BLOCK)
                    bias = None if head.bias is None else head.bias[rows].float()
                    logits[..., rows] = F.linear(hidden, head.weight[rows].float(), bias)
            return logits

        with instance_forward(head, forward):
            yield

    @torch.no_grad()
    def _label_word_scores(self, prompts: Sequence[str]) -> torch.Tensor:
        """(prompts, classes): each class's best label word's log-likelihood after the prompt."""
        pairs = self._label_words()
        single = self._single_token_labels(prompts) if self.kind == "causal" else None
        with self._head_in_fp32():
            if single is not None:  # one forward, LM head on the last position only
                batch = self.prompt_batch(prompts)
                output, _ = causal.forward_last(self.model, batch["input_ids"], batch["attention_mask"],
                                                logits_to_keep=1)
                scores = torch.log_softmax(output.logits[:, -1].float(), dim=-1)[:, single]  # (B, words)
            else:
                batch = self._lm_batch([p for p in prompts for _ in pairs], [w for _ in prompts for _, w in pairs])
                logprobs, _ = self._target_logprobs(batch)
                scores = logprobs.sum(-1).view(len(prompts), len(pairs))
        word_class = torch.tensor([c for c, _ in pairs], device=scores.device)
        return torch.stack([scores[:, word_class == c].amax(-1) for c in range(len(self.card.classes))], dim=-1)

    @torch.no_grad()
    def _generate(self, prompts: Sequence[str]) -> list[str]:
        batch = self.prompt_batch(prompts)
        max_new = self.card.max_new_tokens
        with self._head_in_fp32():  # greedy argmax, as label words: no tie from bf16 rounding
            if self.kind == "causal":
                new_tokens = causal.greedy_generate(
                    self.model, batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new,
                    eos_token_ids=self._end_ids, pad_token_id=self.tokenizer.pad_token_id,
                    line_end_ids=line_break_ids(self.tokenizer))  # ends an answer where `answer_line` cuts it
            else:
                new_tokens = self.model.generate(**batch, max_new_tokens=max_new, do_sample=False, num_beams=1)
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        # a decoder runs on past its answer into the next line; a seq2seq decoder writes only the target
        return [answer_line(text) if self.kind == "causal" else text.strip() for text in texts]

    @cached_property
    def _end_ids(self) -> list[int]:
        """Tokens that end an answer: the tokenizer's EOS and those the model's generation config
        lists (an instruct model's end of turn, such as Llama 3's <|eot_id|>)."""
        listed = getattr(getattr(self.base.model, "generation_config", None), "eos_token_id", None)
        listed = listed if isinstance(listed, list) else [listed]
        return sorted({i for i in (self.tokenizer.eos_token_id, *listed) if i is not None})

    @torch.no_grad()
    def prompt_forward(self, batch: dict[str, torch.Tensor]) -> None:
        """One inference forward over a `prompt_batch` (what classification costs; generation's prefill)."""
        self.model.eval()
        with self.autocast():
            if self.kind == "encoder":
                encoder_logits(self.model, batch)
            elif self.kind == "causal":
                causal.forward_last(self.model, batch["input_ids"], batch["attention_mask"], logits_to_keep=1)
            else:
                rows = len(batch["input_ids"])
                start = torch.full((rows, 1), self.model.config.decoder_start_token_id, device=self.device)
                self.model(**batch, decoder_input_ids=start)

    @torch.no_grad()
    def predict(self, examples: Sequence[Example], *, batch_size: int = 16) -> list:
        """Class indices (classification) or generated strings, in example order."""
        if self.card.is_classification:
            return self.class_scores(examples, batch_size=batch_size).argmax(-1).tolist()
        return self._in_length_order(examples, batch_size, self._generate)

    @torch.no_grad()
    def class_scores(self, examples: Sequence[Example], *, batch_size: int = 16) -> torch.Tensor:
        """(examples, classes) on the CPU, in example order: an encoder's head logits, or a language
        model's log-likelihood of each class's best label word. Their argmax is the prediction; their
        softmax, the class probabilities (a language model's renormalised over the label words)."""
        if not examples:
            return torch.empty(0, len(self.card.classes))
        return torch.cat(self._in_length_order(examples, batch_size, self._class_scores_of))

    def _class_scores_of(self, prompts: list[str]) -> list[torch.Tensor]:
        if self.kind == "encoder":
            scores = encoder_logits(self.model, self.prompt_batch(prompts)).float()
        else:
            scores = self._label_word_scores(prompts)
        return list(scores.cpu().unsqueeze(1))  # a (1, classes) row a prompt, for `torch.cat`

    def _in_length_order(self, examples: Sequence[Example], batch_size: int, answer) -> list:
        """`answer`(prompts) over batches of prompts of similar length (little compute spent on
        padding), its per-prompt results back in example order."""
        self.model.eval()
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt))
        results: list = [None] * len(examples)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            with self.autocast():
                batch_results = answer([examples[i].prompt for i in indices])
            for i, result in zip(indices, batch_results):
                results[i] = result
        return results


def _prompt_network_rows(config) -> tuple[int, int]:
    """Rows through the prompt's own network, (once a step, per batch row): P-tuning's encoder
    computes the prompt once and PEFT repeats it for the batch; prefix tuning's projection runs for
    each row. Prompt tuning's and a plain prefix's tables are lookups."""
    if config.peft_type == PeftType.P_TUNING:
        return config.num_virtual_tokens * (config.num_transformer_submodules or 1), 0
    if config.peft_type == PeftType.PREFIX_TUNING and config.prefix_projection:
        return 0, config.num_virtual_tokens
    return 0, 0
