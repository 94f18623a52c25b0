"""The analytic FLOP estimate (bench/flops.py): by hand on a small GPT-2, and against PyTorch's own
count of the matrix products a training step runs, on tiny models of every kind."""

from __future__ import annotations

import dataclasses

import pytest
import transformers
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import Work, attention_width, training_flops, weight_groups
from tests.test_methods_tiny import build


def test_training_flops_by_hand_on_a_small_gpt2():
    d, layers, vocab = 32, 2, 100
    config = transformers.GPT2Config(n_embd=d, n_layer=layers, n_head=2, vocab_size=vocab, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    # per block: two layer norms 2 * 2d, qkv d * 3d + 3d, out d * d + d, MLP d * 4d + 4d and 4d * d + d
    # = 12 d^2 + 13 d = 12704; two blocks and the final layer norm (2d): 25472 (embeddings excluded;
    # the head is the tied token table, d * V = 3200, run on each scored position)
    weights = 2 * (12 * d * d + 13 * d) + 2 * d
    assert weights == 25472
    work = Work(positions=10, attention_pairs=30, scored=4)
    # frozen model: forward 2 * 25472 * 10 + 4 * 32 * 30 * 2 layers = 509440 + 7680; backward 509440
    # (activation gradients) + 2 * 7680 (attention); head 2 * 3200 * 4 forward and again backward
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    assert training_flops(model, work) == 517120 + 524800 + 2 * 25600
    # every weight trains: + 2 * 25472 * 10 weight gradients, and the head's (x3 in all)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    assert training_flops(model, work) == 517120 + 524800 + 509440 + 3 * 25600
    # gradient checkpointing: one more forward through the layers, not the head
    assert training_flops(model, work, recomputed=True) == 2 * 517120 + 524800 + 509440 + 3 * 25600


def _linear_flops_of_a_step(tuned, examples) -> tuple[float, Work]:
    """PyTorch's count of the step's weight matrix products, forward and backward, and the step's work."""
    tuned.model.train()
    with FlopCounterMode(display=False) as counter:
        step = tuned.loss(examples)
        step.loss.backward()
    counts = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    return counts.get("aten.mm", 0) + counts.get("aten.addmm", 0), step.work


@pytest.mark.parametrize("arch, variant, task, high", [
    # every layer's input needs its gradient: the estimate is PyTorch's count, plus biases and norms,
    # which it counts as weights though they are not matrix products (a few percent at width 32)
    ("bert", "prompt_tuning", "tiny_cls", 1.06),
    ("bert", "p_tuning_mlp", "tiny_cls", 1.06),
    ("roberta", "full_ft", "tiny_cls", 1.06),
    ("llama", "prompt_tuning", "tiny_cls", 1.06),
    ("gemma3", "full_ft", "tiny_cls", 1.06),
    ("gpt2", "prompt_tuning", "tiny_qa", 1.06),
    ("gpt2", "prefix_tuning_projection", "tiny_qa", 1.10),
    ("t5", "prompt_tuning", "tiny_qa", 1.06),
    ("t5", "p_tuning_mlp", "tiny_qa", 1.06),
    ("t5", "full_ft", "tiny_qa", 1.06),
    # autograd skips the first layer's input gradients where nothing below it trains, which the
    # estimate counts: one layer in two here, a few percent on real depths
    ("llama", "lora", "tiny_cls", 1.20),
    ("bert", "prefix_tuning", "tiny_cls", 1.20),
    ("t5", "lora", "tiny_qa", 1.20),
])
def test_the_estimate_matches_pytorchs_count_of_a_step(tiny_models, tiny_tasks, arch, variant, task, high):
    """Attention aside (its kernels differ by device), the estimate of one training step on rows without
    padding agrees with the matrix products PyTorch runs: seq2seq decoders and cross-attention, the
    prompt encoder once a step, the LM head on target tokens only."""
    card_task, _, tuned = build(tiny_models, tiny_tasks, arch, variant, task)
    examples = [card_task.examples("train")[0]] * 3  # identical rows: no padding
    measured, work = _linear_flops_of_a_step(tuned, examples)
    estimate = training_flops(tuned.model, dataclasses.replace(work, attention_pairs=0, decoder_pairs=0))
    assert 1.0 <= estimate / measured <= high


def test_attention_pairs_by_model_kind_and_prefix(tiny_models, tiny_tasks):
    """Bidirectional: every position sees every key; causal: the ones before it and itself; a prefix adds
    keys only; a seq2seq decoder attends causally to itself and to every encoder position."""
    def work(arch, variant, task, example_count=1):
        card_task, _, tuned = build(tiny_models, tiny_tasks, arch, variant, task)
        example = card_task.examples("train")[0]
        ids = tuned.tokenizer(example.prompt, truncation=True, max_length=card_task.card.max_input_tokens)
        step = tuned.loss([example] * example_count)
        return step.work, len(ids["input_ids"])

    encoder, t = work("bert", "prompt_tuning", "tiny_cls")  # 4 virtual tokens in the input
    assert (encoder.positions, encoder.attention_pairs) == (t + 4, (t + 4) ** 2)
    prefix, t = work("bert", "prefix_tuning", "tiny_cls")
    assert (prefix.positions, prefix.attention_pairs) == (t, t * (t + 4))
    causal, _ = work("llama", "prefix_tuning", "tiny_qa")
    t = causal.positions
    assert causal.attention_pairs == t * (t + 1) // 2 + 4 * t
    seq2seq, _ = work("t5", "prompt_tuning", "tiny_qa", example_count=2)
    e, d = seq2seq.positions // 2, seq2seq.decoder_positions // 2
    assert seq2seq.decoder_pairs == 2 * (d * (d + 1) // 2 + d * e) and seq2seq.scored == 2 * d
    assert seq2seq.tokens == 2 * (e + d)


@pytest.mark.parametrize("variant", ["prompt_tuning", "p_tuning_mlp"])
def test_a_seq2seq_prompt_is_as_long_as_asked(tiny_models, tiny_tasks, variant):
    """PEFT would give a seq2seq prompt a second half for the decoder that its forward never reads:
    trained, counted and saved for nothing."""
    _, base, tuned = build(tiny_models, tiny_tasks, "t5", variant, "tiny_qa")
    prompt = tuned.model.prompt_encoder[tuned.model.active_adapter].embedding.weight
    assert prompt.shape == (4, base.model.config.d_model)


def test_weight_groups_and_attention_width():
    config = transformers.T5Config(d_model=32, d_ff=64, d_kv=4, num_heads=2, num_layers=1, num_decoder_layers=1,
                                   vocab_size=50, decoder_start_token_id=0)
    groups = weight_groups(transformers.T5ForConditionalGeneration(config))
    inner = 2 * 4  # heads x d_kv, not d_model
    assert attention_width(config) == inner
    assert groups["cross_key_value"].total == 2 * 32 * inner  # read the encoder's output
    assert groups["head"].total == 50 * 32  # the tied token table, as the LM head
    mlp, norm = 2 * 32 * 64, 32
    # self-attention q, k, v, o; cross-attention q, o; MLP; three norms and the final one
    assert groups["decoder"].total == 4 * 32 * inner + 2 * 32 * inner + mlp + 4 * norm
    assert groups["layers"].total == 4 * 32 * inner + mlp + 3 * norm  # relative-position buckets are a table


def test_full_fine_tuning_leaves_a_mean_pooled_encoders_pooler_out(tiny_models, tiny_tasks):
    """A head that reads pooled token states never uses the pooler: it gets no gradient and is not trained."""
    _, base, tuned = build(tiny_models, tiny_tasks, "bert", "full_ft", "tiny_cls")
    pooler = base.model.base_model.pooler
    assert getattr(base.model.config, "sentence_pooling", None) is not None
    assert not any(p.requires_grad for p in pooler.parameters())
    assert all(p.requires_grad for name, p in tuned.model.named_parameters() if ".pooler." not in name)


def test_shared_layers_count_at_every_depth_and_row_heads_once_per_row():
    """ALBERT runs one layer group at every depth; DistilBERT's pre-classifier runs once per row."""
    def albert(layers):
        config = transformers.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=layers,
                                           num_attention_heads=2, intermediate_size=64)
        return transformers.AlbertForSequenceClassification(config)

    shallow, deep = albert(2), albert(3)
    one_layer = sum(p.numel() for p in deep.albert.encoder.albert_layer_groups.parameters())
    assert weight_groups(deep)["layers"].total - weight_groups(shallow)["layers"].total == one_layer

    config = transformers.DistilBertConfig(vocab_size=100, dim=32, hidden_dim=64, n_layers=1, n_heads=2)
    distilbert = transformers.DistilBertForSequenceClassification(config)
    heads = [distilbert.pre_classifier, distilbert.classifier]
    assert weight_groups(distilbert)["head"].total == sum(p.numel() for m in heads for p in m.parameters())
