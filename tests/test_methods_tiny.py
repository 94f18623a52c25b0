"""Every method on every model kind, on tiny random models: what trains, what saves, what generates."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers
from peft import PeftModel

from bench.methods import MethodError, get_method
from bench.modeling import TunedModel
from bench.models import load_base_model
from tasks import Example, load_task
from tasks.notices import UserNotice

ARCHITECTURES = ("gpt2", "llama", "roberta", "bert", "t5")
PEFT_METHODS = {
    "prompt_tuning": {"num_virtual_tokens": 4, "init": "sampled_vocab"},
    "prompt_tuning_labels": {"num_virtual_tokens": 4, "init": "class_labels"},
    "p_tuning_mlp": {"num_virtual_tokens": 4, "encoder": "mlp", "encoder_hidden_size": 16},
    "p_tuning_lstm": {"num_virtual_tokens": 4, "encoder": "lstm", "encoder_hidden_size": 16},
    "prefix_tuning": {"num_virtual_tokens": 4},
    "prefix_tuning_projection": {"num_virtual_tokens": 4, "prefix_projection": True, "encoder_hidden_size": 16},
    "lora": {"r": 4},
}
ALL_METHODS = {**PEFT_METHODS, "full_ft": {}}


def method_name(variant: str) -> str:
    return next(m for m in ("prompt_tuning", "p_tuning", "prefix_tuning", "lora", "full_ft") if variant.startswith(m))


def supported(arch: str, variant: str) -> bool:
    return not (arch == "t5" and variant.startswith("prefix_tuning"))


def build(tiny_models, tiny_tasks, arch: str, variant: str, task_name: str = "tiny_cls"):
    if not supported(arch, variant):
        pytest.skip("prefix tuning is refused for seq2seq models (see test_prefix_tuning_refused_for_seq2seq)")
    folder, kind = tiny_models[arch]
    task = load_task(task_name, tasks_dirs=(str(tiny_tasks),))
    num_labels = len(task.card.classes) if task.card.is_classification else None
    base = load_base_model(folder, num_labels=num_labels)
    method = get_method(method_name(variant))
    torch.manual_seed(0)
    model = method.build(base, method.settings(**ALL_METHODS[variant]), task.card)
    return task, base, TunedModel(model, base, task.card)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("variant", list(ALL_METHODS))
def test_one_step_changes_only_trainable_parameters(tiny_models, tiny_tasks, arch, variant):
    task, _, tuned = build(tiny_models, tiny_tasks, arch, variant)
    before = {n: p.detach().clone() for n, p in tuned.model.named_parameters()}
    trainable = {n for n, p in tuned.model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in tuned.model.parameters() if p.requires_grad], lr=1.0)
    tuned.model.train()
    tuned.loss(task.examples("train")[:4]).loss.backward()
    optimizer.step()
    changed = {n for n, p in tuned.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "no parameter moved"
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:3]}"
    if variant != "full_ft":
        total = sum(p.numel() for p in tuned.model.parameters())
        assert sum(before[n].numel() for n in trainable) < total / 2


def _snapshot_predictions(tuned, examples):
    return tuned.predict(examples, batch_size=4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("variant", list(PEFT_METHODS))
def test_saved_adapter_reloads_to_identical_predictions(tiny_models, tiny_tasks, tmp_path, arch, variant):
    task_name = "tiny_cls" if tiny_models[arch][1] == "encoder" else "tiny_qa"
    if task_name == "tiny_qa" and variant == "prompt_tuning_labels":
        pytest.skip("class-label init needs a classification task")
    task, base, tuned = build(tiny_models, tiny_tasks, arch, variant, task_name)
    # one large step so the adapter differs from its initialisation
    optimizer = torch.optim.SGD([p for p in tuned.model.parameters() if p.requires_grad], lr=5.0)
    tuned.model.train()
    tuned.loss(task.examples("train")[:4]).loss.backward()
    optimizer.step()
    examples = task.examples("validation")
    expected = _snapshot_predictions(tuned, examples)
    expected_scores = tuned_scores(tuned, examples)
    tuned.model.save_pretrained(tmp_path / "adapter")

    fresh_base = load_base_model(tiny_models[arch][0], num_labels=base.model.config.num_labels
                                 if base.kind == "encoder" else None)
    reloaded = PeftModel.from_pretrained(fresh_base.model, tmp_path / "adapter")
    again = TunedModel(reloaded, fresh_base, task.card)
    assert _snapshot_predictions(again, examples) == expected
    torch.testing.assert_close(tuned_scores(again, examples), expected_scores)


@torch.no_grad()
def tuned_scores(tuned, examples) -> torch.Tensor:
    """A continuous view of the model's outputs on the examples (loss per example)."""
    tuned.model.eval()
    return torch.stack([tuned.loss([ex]).loss for ex in examples])


@pytest.mark.parametrize("arch", ("gpt2", "llama", "t5"))
@pytest.mark.parametrize("variant", ["prompt_tuning", "p_tuning_lstm", "prefix_tuning", "lora", "full_ft"])
def test_batched_generation_with_padding_equals_unbatched(tiny_models, tiny_tasks, arch, variant):
    task, _, tuned = build(tiny_models, tiny_tasks, arch, variant, "tiny_qa")
    examples = task.examples("validation")[:6]  # prompts of different lengths: padding is exercised
    lengths = {len(tuned.tokenizer(ex.prompt)["input_ids"]) for ex in examples}
    assert len(lengths) > 1
    batched = tuned.predict(examples, batch_size=6)
    single = [tuned.predict([ex], batch_size=1)[0] for ex in examples]
    assert batched == single
    assert any(batched), "nothing was generated"


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("variant", ["prompt_tuning", "p_tuning_mlp", "prefix_tuning"])
def test_scores_do_not_depend_on_padding(tiny_models, tiny_tasks, arch, variant):
    """Per-example losses in a padded batch equal those computed one by one."""
    task, _, tuned = build(tiny_models, tiny_tasks, arch, variant)
    examples = task.examples("validation")[:5]
    tuned.model.eval()
    with torch.no_grad():
        single = tuned_scores(tuned, examples)
        if tuned.kind == "encoder":  # the batch as training and prediction build it
            from bench.modeling.encoder import encoder_logits

            batch = tuned.prompt_batch([e.prompt for e in examples])
            logits = encoder_logits(tuned.model, batch)
            labels = torch.tensor([e.label for e in examples])
            batched = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            attention = batch["attention_mask"]
        else:
            batch = tuned._lm_batch([e.prompt for e in examples], [e.target for e in examples])
            logprobs, mask = tuned._target_logprobs(batch)
            batched = -logprobs.sum(1) / mask.sum(1)
            attention = batch.attention_mask
    assert (attention == 0).any(), "no padding in the batch: nothing is tested"
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ("gpt2", "llama", "gemma3", "t5"))
def test_class_label_init_copies_label_word_embeddings(tiny_models, tiny_tasks, arch):
    """Each prompt row is its label word's input vector as the model sees it: Gemma's embedding layer
    scales its weights by sqrt(hidden size), so the rows must come from its forward."""
    task, base, tuned = build(tiny_models, tiny_tasks, arch, "prompt_tuning_labels")
    prompt = tuned.model.prompt_encoder["default"].embedding.weight
    embeddings = base.model.get_input_embeddings().weight
    scale = 32 ** 0.5 if arch == "gemma3" else 1.0
    for row, word in enumerate(["bad", "good", "great"]):  # class order, then each class's words
        text = f" {word}" if base.kind == "causal" else word
        ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(prompt[row], embeddings[ids].mean(0) * scale)


def test_prefix_tuning_refused_for_seq2seq(tiny_models, tiny_tasks):
    task = load_task("tiny_qa", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(tiny_models["t5"][0])
    method = get_method("prefix_tuning")
    with pytest.raises(MethodError, match="not supported for seq2seq"):
        method.build(base, method.settings(), task.card)


@pytest.mark.parametrize("arch", ("gpt2", "llama"))
def test_real_token_prefix_continues_those_tokens(tiny_models, tiny_tasks, arch):
    """A prefix built from tokens' own keys/values must act exactly like those tokens in the input."""
    from bench.methods.prefix_tuning import real_token_prefix
    from bench.modeling import causal

    _, base, tuned = build(tiny_models, tiny_tasks, arch, "prefix_tuning")
    prefix_ids = torch.tensor([5, 17, 230, 41])  # as many as the variant's virtual tokens
    tail = torch.tensor([[60, 7, 99]])
    with torch.no_grad():
        tuned.model.prompt_encoder["default"].embedding.weight.copy_(real_token_prefix(base, prefix_ids))
        with_prefix, _ = causal.forward_last(tuned.model, tail, torch.ones_like(tail), logits_to_keep=3)
        in_input = base.model(input_ids=torch.cat([prefix_ids[None], tail], dim=1)).logits[:, -3:]
    torch.testing.assert_close(with_prefix.logits, in_input, atol=1e-4, rtol=1e-4)


def test_prefix_init_settings():
    method = get_method("prefix_tuning")
    assert method.settings().init == "real_tokens"
    assert method.settings(prefix_projection=True).init == "random"
    with pytest.raises(MethodError, match="real_tokens"):
        method.settings(prefix_projection=True, init="real_tokens")
    with pytest.raises(MethodError, match="init"):
        method.settings(init="vocab")


@pytest.mark.parametrize("variant", ["p_tuning_mlp", "p_tuning_lstm", "prefix_tuning_projection"])
def test_prompt_encoder_runs_in_fp32_under_autocast(tiny_models, tiny_tasks, variant):
    """CUDA autocast would run a cuDNN LSTM in fp16 inside a bf16 region, and a prefix projection in
    bf16; the encoders opt out, so the prompt trained is the fp32 prompt the saved adapter holds."""
    _, _, tuned = build(tiny_models, tiny_tasks, "gpt2", variant)
    encoder = tuned.model.prompt_encoder["default"]
    indices = torch.arange(4).unsqueeze(0)
    plain = encoder(indices)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed = encoder(indices)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain)
    copied = copy.deepcopy(encoder)  # a copy computes with its own weights, and pickles
    with torch.no_grad():
        encoder.embedding.weight.add_(1.0)
    torch.testing.assert_close(copied(indices), plain)
    pickle.dumps(copied)


# (arch, variant) pairs covering every method and model kind without the full product
MIXED_PRECISION_CASES = [("gpt2", v) for v in ALL_METHODS] + [
    ("llama", "prefix_tuning"), ("roberta", "prefix_tuning"), ("roberta", "lora"), ("roberta", "full_ft"),
    ("t5", "prompt_tuning"), ("t5", "full_ft")]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(("arch", "variant"), MIXED_PRECISION_CASES)
def test_low_precision_base_trains_fp32_master_weights(tiny_models, tiny_tasks, monkeypatch, arch, variant, dtype):
    """The CUDA path, forced on CPU: base weights in bf16/fp16, forwards under autocast, AdamW on fp32."""
    from bench.train import TrainSettings, train

    if dtype == torch.float16 and arch != "gpt2":
        pytest.skip("fp16 loss scaling is exercised on gpt2; the other kinds share the same loop")
    monkeypatch.setattr("bench.models.loading.pick_dtype", lambda device: dtype)
    task, base, tuned = build(tiny_models, tiny_tasks, arch, variant, "tiny_cls" if arch != "t5" else "tiny_qa")
    assert base.dtype == dtype and tuned.autocast().fast_dtype == dtype
    params = dict(tuned.model.named_parameters())
    frozen = {n for n, p in params.items() if not p.requires_grad}
    before = {n: p.detach().float().clone() for n, p in params.items() if p.requires_grad}
    touched = {}  # elements that received a gradient (others rightly stay put: unused embedding rows, LoRA's A)
    for name in before:
        params[name].register_post_accumulate_grad_hook(lambda p, name=name: touched.__setitem__(name, p.grad != 0))
    lr = 3e-5 if variant == "full_ft" else 1e-3  # full fine-tuning's default: updates far below bf16's step
    # fp16 loss scaling may skip the first steps while its scale comes down from 2**16
    settings = TrainSettings(steps=1 if dtype == torch.bfloat16 else 4, batch_size=4, warmup_ratio=0.0,
                             max_grad_norm=1e9)
    result = train(tuned, task.examples("train")[:8], settings, lr=lr, progress=False)
    assert all(math.isfinite(loss) for loss in result.losses)
    assert all(params[n].dtype == torch.float32 for n in before), "trainable parameters must be fp32"
    assert variant == "full_ft" or all(params[n].dtype == dtype for n in frozen), "frozen weights stay low-precision"
    changed = sum(int(((params[n] != before[n]) & mask).sum()) for n, mask in touched.items())
    assert changed >= 0.9 * sum(int(mask.sum()) for mask in touched.values())


def test_layers_a_checkpoint_keeps_in_fp32_run_in_fp32_under_fp16_autocast(tiny_models, tiny_tasks, monkeypatch):
    """T5 keeps its `wo` layers fp32 when loaded in fp16 (fp16 overflows there); autocast would run
    them in fp16 all the same."""
    monkeypatch.setattr("bench.models.loading.pick_dtype", lambda device: torch.float16)
    task, base, tuned = build(tiny_models, tiny_tasks, "t5", "prompt_tuning", "tiny_qa")
    wo = [module for name, module in base.model.named_modules() if name.endswith(".wo")]
    assert wo and all(module.weight.dtype == torch.float32 for module in wo)
    assert base.model.get_input_embeddings().weight.dtype == torch.float16
    seen = []
    for module in wo:
        module.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    with tuned.autocast():
        base.model.get_encoder()(input_ids=torch.tensor([[5, 6, 7]]))
    assert seen and set(seen) == {torch.float32}
    copied = copy.deepcopy(base.model)  # copies keep it (a model pool hands out copies)
    assert type(next(m for n, m in copied.named_modules() if n.endswith(".wo"))) is type(wo[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_full_fine_tuning_starts_from_the_checkpoint_s_own_weights_not_their_low_precision_rounding(
        tiny_models, tiny_tasks, monkeypatch, dtype):
    """The CUDA path, forced on CPU: the prompt methods' frozen weights are stored in the compute
    dtype; full fine-tuning trains every weight, from the fp32 checkpoint, under the same autocast."""
    from bench.models import ModelPool
    from bench.run_checks import prepare_run
    from bench.run_spec import RunSpec
    from bench.train import TrainSettings

    folder = tiny_models["t5"][0]
    exact = transformers.T5ForConditionalGeneration.from_pretrained(folder).state_dict()
    monkeypatch.setattr("bench.models.loading.pick_dtype", lambda device: dtype)
    monkeypatch.setattr("bench.models.pool.pick_dtype", lambda device: dtype)
    pool = ModelPool()
    for method, stored in (("full_ft", torch.float32), ("prompt_tuning", dtype)):
        spec = RunSpec(task="tiny_qa", model=folder, method=method, tasks_dirs=(str(tiny_tasks),),
                       train=TrainSettings(steps=1))
        *_, base, _ = prepare_run(spec, pool)
        assert base.dtype == dtype  # forwards run in the compute dtype either way
        weights = base.model.state_dict()
        assert weights["shared.weight"].dtype == stored
        if method == "full_ft":
            assert all(torch.equal(weights[name], exact[name]) for name in exact)
        # the layers transformers keeps in fp32 for fp16 (T5's `wo`) run in fp32 under its autocast, whichever way
        wo = [module for name, module in base.model.named_modules() if name.endswith(".wo")]
        assert all(("FullPrecision" in type(module).__name__) == (dtype == torch.float16) for module in wo)


@pytest.mark.parametrize("variant", ["prompt_tuning", "prefix_tuning"])
def test_a_target_longer_than_the_positions_left_is_cut_not_a_crash(tiny_models, tiny_tasks, variant):
    """GPT-2 has 512 learned positions; a training target past them would index outside the table
    (on CUDA, an assert that ends the process). Cut to the room left, the step trains."""
    task, base, tuned = build(tiny_models, tiny_tasks, "gpt2", variant, "tiny_qa")
    long_answer = " ".join(["film"] * 600)
    step = tuned.loss([Example(prompt="Q: what? A:", target=long_answer, references=(long_answer,))])
    room = 512 - task.card.max_input_tokens - tuned.num_virtual_tokens
    assert math.isfinite(step.loss.item()) and step.work.scored == room


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("variant", ["prompt_tuning", "prefix_tuning", "lora"])
def test_the_lm_head_runs_only_on_the_positions_that_predict_targets(tiny_models, tiny_tasks, arch, variant):
    """The K positions before the last give the logits the last K + 1 gave, less the one dropped:
    with virtual tokens in the input, a prefix in the cache, and left padding."""
    from bench.modeling import causal

    task, _, tuned = build(tiny_models, tiny_tasks, arch, variant, "tiny_qa")
    examples = task.examples("train")[:3]
    batch = tuned._lm_batch([e.prompt for e in examples], [e.target for e in examples])
    width = int(batch.target_mask.sum(1).max())
    with torch.no_grad():
        kept = causal.forward_last(tuned.model, batch.input_ids, batch.attention_mask, logits_to_keep=width,
                                   before_last=True)[0].logits
        dropped = causal.forward_last(tuned.model, batch.input_ids, batch.attention_mask,
                                      logits_to_keep=width + 1)[0].logits[:, :-1]
    assert kept.shape == dropped.shape and torch.allclose(kept, dropped, atol=1e-5)


def test_a_seq2seq_target_longer_than_the_decoders_positions_is_cut(tiny_models, tiny_tasks, tmp_path):
    """BART's decoder has learned positions (16 here): a longer target would index past them."""
    import transformers

    config = transformers.BartConfig(vocab_size=30522, d_model=32, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, max_position_embeddings=16)
    transformers.BartForConditionalGeneration(config).save_pretrained(tmp_path / "bart")
    transformers.AutoTokenizer.from_pretrained(tiny_models["t5"][0]).save_pretrained(tmp_path / "bart")
    task = load_task("tiny_qa", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(str(tmp_path / "bart"))
    method = get_method("prompt_tuning")
    tuned = TunedModel(method.build(base, method.settings(num_virtual_tokens=2), task.card), base, task.card)
    long_answer = " ".join(["film"] * 40)
    step = tuned.loss([Example(prompt="Q: what? A:", target=long_answer, references=(long_answer,))])
    assert math.isfinite(step.loss.item()) and step.work.decoder_positions == 16


def test_an_encoder_checkpoint_with_a_head_of_another_size_loads_with_a_fresh_one(tiny_models):
    """A hub classifier (3 NLI labels, say) run on a 2-class task: its head is replaced, not an error."""
    base = load_base_model(tiny_models["roberta"][0], num_labels=3)  # saved with a 2-label head
    assert base.model.config.num_labels == 3 and base.model.classifier.out_proj.out_features == 3


def test_an_encoder_checkpoint_whose_body_does_not_fit_its_config_is_refused(tiny_models, tmp_path):
    import json
    import shutil

    from bench.models.registry import ModelUnavailable

    folder = tmp_path / "roberta"
    shutil.copytree(tiny_models["roberta"][0], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))  # the weights hold 64
    with pytest.raises(ModelUnavailable, match=r"weights of another shape than its config gives .*intermediate"):
        load_base_model(str(folder), num_labels=2)


def test_label_words_are_scored_as_trained_after_a_template_that_ends_in_a_newline(tmp_path, tiny_tasks):
    # In a byte-level BPE vocabulary "good" and " good" are different tokens. After "Sentiment:" a
    # label word trains with its leading space; after a template's closing newline (a YAML `|`
    # block) without one. The one-forward scoring must read the token training taught.
    import shutil

    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(["good", "bad", "great", "Review: the film Sentiment: good bad great"] * 50,
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    for word in ("good", "bad", "great"):
        alone, spaced = tokenizer(word)["input_ids"], tokenizer(" " + word)["input_ids"]
        assert len(alone) == len(spaced) == 1 and alone != spaced
    folder = tmp_path / "bpe-gpt2"
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cards = tmp_path / "cards"
    shutil.copytree(tiny_tasks, cards)
    card = (cards / "tiny_cls.yaml").read_text()
    (cards / "tiny_cls.yaml").write_text(card.replace("template: 'Review: {sentence} Sentiment:'",
                                                      'template: "Review: {sentence} Sentiment:\\n"'))
    task = load_task("tiny_cls", tasks_dirs=(str(cards),))
    assert task.card.template.endswith("Sentiment:\n")
    base = load_base_model(str(folder))
    method = get_method("prompt_tuning")
    tuned = TunedModel(method.build(base, method.settings(num_virtual_tokens=4, init="random"), task.card), base,
                       task.card)
    examples = task.examples("validation")
    words = tuned._label_words()
    with torch.no_grad():  # each class's best word by the loss training minimises
        batch = tuned._lm_batch([e.prompt for e in examples for _ in words], [w for _ in examples for _, w in words])
        logprobs, _ = tuned._target_logprobs(batch)
    best = logprobs.sum(-1).view(len(examples), len(words)).argmax(-1)
    assert tuned.predict(examples, batch_size=4) == [words[i][0] for i in best.tolist()]
    # class-label init starts from the same tokens: "bad", not " bad", after this template
    labels = method.build(load_base_model(str(folder)), method.settings(num_virtual_tokens=3, init="class_labels"),
                          task.card)
    embed = base.model.get_input_embeddings().weight
    torch.testing.assert_close(labels.prompt_encoder["default"].embedding.weight[0],
                               embed[tokenizer("bad")["input_ids"][0]])
    # a prompt shorter than the label words says which of them start it
    words = [word for class_words in task.card.label_words.values() for word in class_words]
    with pytest.warns(UserNotice, match=rf"1 virtual token for task {task.card.name}'s {len(words)} label words: "
                                        rf"only '{words[0]}' starts the prompt"):
        method.build(load_base_model(str(folder)), method.settings(num_virtual_tokens=1, init="class_labels"),
                     task.card)


def test_a_newline_ends_an_answer_only_once_it_has_begun(monkeypatch):
    # SmolLM2 opens a summary after "Summary:" with a line break: stopping there scored every answer
    # as empty (ROUGE 0). Scripted next tokens per row, NL a newline, EOS the end of text.
    from types import SimpleNamespace

    from bench.modeling import causal

    NL, EOS, PAD, A, B = 1, 2, 0, 5, 6
    scripts = [[NL, A, NL, B, B], [A, EOS, B, B, B], [NL, NL, B, B, NL], [A, B, B, B, B]]
    step = {"n": 0}

    def logits() -> torch.Tensor:
        out = torch.zeros(len(scripts), 1, 8)
        for row, script in enumerate(scripts):
            out[row, 0, script[step["n"]]] = 1.0
        step["n"] += 1
        return out

    def forward_last(model, input_ids, attention_mask, **kwargs):
        return (SimpleNamespace(logits=logits(), cache=None),
                SimpleNamespace(full_mask=attention_mask, positions=torch.zeros_like(input_ids)))

    monkeypatch.setattr(causal, "forward_last", forward_last)
    monkeypatch.setattr(causal, "core_model",
                        lambda model: lambda **kwargs: SimpleNamespace(logits=logits(), cache=None))
    ids = torch.ones(len(scripts), 3, dtype=torch.long)
    out = causal.greedy_generate(None, ids, torch.ones_like(ids), max_new_tokens=5, eos_token_ids=[EOS],
                                 pad_token_id=PAD, line_end_ids=[NL])
    assert out.tolist() == [[NL, A, NL, PAD, PAD], [A, EOS, PAD, PAD, PAD], [NL, NL, B, B, NL], [A, B, B, B, B]]
    assert step["n"] == 5  # one forward a generated token: none after the last, whose token would be dropped
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1, got 0"):  # not generate without end
        causal.greedy_generate(None, ids, torch.ones_like(ids), max_new_tokens=0, eos_token_ids=[EOS],
                               pad_token_id=PAD, line_end_ids=[NL])


def test_an_answer_is_its_first_line_and_ends_at_any_line_break_or_end_of_turn_token(tiny_models, tiny_tasks):
    """Only the single tokens of "\n" and "\n\n" ended an answer: a "\n\n\n" token, or a tokenizer
    that writes a break in two pieces, let "Paris\nQuestion: ..." be scored whole; and an instruct
    model's end-of-turn token, listed by its generation config, did not stop it."""
    from bench.modeling.encoding import line_break_ids
    from bench.modeling.tuned import answer_line

    assert answer_line("\n Paris \nQuestion: where?") == "Paris" and answer_line("  ") == ""
    from tokenizers import Tokenizer, models

    vocab = {"[UNK]": 0, "Paris": 1, "\n": 2, "\n\n\n": 3, "\r\n": 4, "\n  ": 5, "x\n": 6, " ": 7}
    with_breaks = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, "[UNK]")),
                                                       unk_token="[UNK]")
    assert line_break_ids(with_breaks) == [2, 3, 4, 5, 6]
    task, base, tuned = build(tiny_models, tiny_tasks, "gpt2", "prompt_tuning", "tiny_qa")
    base.model.generation_config.eos_token_id = [base.tokenizer.eos_token_id, 7]
    assert TunedModel(tuned.model, base, task.card)._end_ids == sorted({base.tokenizer.eos_token_id, 7})


def test_an_encoder_s_over_long_prompt_keeps_its_head_and_tail_and_a_short_one_is_encoded_as_before(tiny_models):
    """Cut on the right, BoolQ's prompt lost its question and cue on its longest rows (2% of the test
    split on MiniLM); cut on the left, AG News's would lose its title."""
    from bench.modeling.encoding import encode_prompts

    tokenizer = load_base_model(tiny_models["bert"][0], num_labels=2).tokenizer
    passage = " ".join(["word"] * 100)
    long_prompt = f"Passage: the start {passage} the end\nQuestion: is it?\nAnswer:"
    short_prompt = "Review: a fine film\nSentiment:"
    batch = encode_prompts(tokenizer, [long_prompt, short_prompt], max_tokens=32, head_and_tail=True)
    long_row = tokenizer.decode(batch["input_ids"][0][batch["attention_mask"][0].bool()])
    assert int(batch["attention_mask"][0].sum()) == 32
    assert long_row.startswith("[CLS] passage : the start") and long_row.endswith("is it? answer : [SEP]")
    plain = encode_prompts(tokenizer, [short_prompt, short_prompt], max_tokens=32)
    assert torch.equal(batch["input_ids"][1][: plain["input_ids"].size(1)], plain["input_ids"][0])
    alone = encode_prompts(tokenizer, [short_prompt], max_tokens=32, head_and_tail=True)
    assert torch.equal(alone["input_ids"], plain["input_ids"][:1])  # nothing too long: the tokenizer's own call


def test_unknown_tokens_at_an_encoder_prompt_s_ends_are_cut_like_any_text(tiny_models):
    """Taken for [CLS] and [SEP], a run of [UNK] at a prompt's start was kept whole: a 602-token row
    at a 128-token budget, which crashed BERT."""
    from bench.modeling.encoding import encode_prompts

    tokenizer = load_base_model(tiny_models["bert"][0], num_labels=2).tokenizer
    prompt = " ".join(["\U0001F600"] * 100) + " great movie. Sentiment:"
    batch = encode_prompts(tokenizer, [prompt], max_tokens=32, head_and_tail=True)
    assert batch["input_ids"].shape == (1, 32)
    assert tokenizer.decode(batch["input_ids"][0]).endswith("great movie. sentiment : [SEP]")


def test_label_words_are_scored_by_an_lm_head_in_fp32_under_bf16(tiny_models, tiny_tasks, monkeypatch):
    # bf16 rounds logits to steps of about 0.1: label words that round alike would tie, and argmax
    # settles ties for the first class
    import dataclasses

    from bench.modeling import causal

    task = load_task("tiny_cls", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(tiny_models["llama"][0])
    base = dataclasses.replace(base, model=base.model.to(torch.bfloat16), dtype=torch.bfloat16)
    tuned = TunedModel(base.model, base, task.card)
    seen, forward_last = [], causal.forward_last

    def spied(*args, **kwargs):
        output, inputs = forward_last(*args, **kwargs)
        seen.append(output.logits.dtype)
        return output, inputs

    monkeypatch.setattr(causal, "forward_last", spied)
    examples = task.examples("validation")
    predictions = tuned.predict(examples)
    assert seen and set(seen) == {torch.float32} and len(predictions) == len(examples)
    head = base.model.get_output_embeddings()
    assert "forward" not in vars(head)  # the head is itself again after scoring
    monkeypatch.setattr("bench.modeling.tuned.HEAD_ROWS_PER_BLOCK", 1000)  # the vocabulary in 31 blocks
    import torch.nn.functional as F

    blocks, linear = [], F.linear
    monkeypatch.setattr(F, "linear", lambda x, weight, bias=None: blocks.append(len(weight)) or linear(x, weight, bias))
    hidden = torch.randn(2, 3, head.in_features, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = hidden.float() @ head.weight.float().T
        with tuned.autocast(), tuned._head_in_fp32():
            torch.testing.assert_close(head(hidden), expected)
    assert len(blocks) == 31 and max(blocks) == 1000  # never the whole head in fp32 at once
    with torch.no_grad(), tuned.autocast():
        assert head(torch.ones(1, head.in_features, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize(("arch", "variant"), [("roberta", "prompt_tuning"), ("roberta", "prefix_tuning"),
                                               ("bert", "lora"), ("bert", "full_ft")])
def test_an_encoder_s_classification_head_computes_in_fp32_under_bf16(tiny_models, tiny_tasks, monkeypatch, arch,
                                                                        variant):
    # bf16 keeps about 3 significant digits: class logits that round alike tie, and argmax gives
    # every tie to the first class
    from bench.modeling.encoder import encoder_logits

    monkeypatch.setattr("bench.models.loading.pick_dtype", lambda device: torch.bfloat16)
    task, base, tuned = build(tiny_models, tiny_tasks, arch, variant)
    batch = tuned.prompt_batch([example.prompt for example in task.examples("validation")])
    backbone_dtypes = set()
    backbone = getattr(base.model, base.model.base_model_prefix)
    backbone.register_forward_hook(lambda module, args, output: backbone_dtypes.add(output[0].dtype))
    with torch.no_grad(), tuned.autocast():
        logits = encoder_logits(tuned.model, batch)
        copied = encoder_logits(copy.deepcopy(tuned.model), batch)  # a pool's copy keeps it
    assert logits.dtype == torch.float32 and copied.dtype == torch.float32
    assert backbone_dtypes == {torch.bfloat16}  # the backbone still computes in bf16
    torch.testing.assert_close(copied, logits)
    assert len(tuned.predict(task.examples("validation"))) == len(task.examples("validation"))


def test_a_reloaded_encoder_head_computes_in_fp32_with_the_weights_it_saved(tiny_models, tiny_tasks, monkeypatch,
                                                                           tmp_path):
    # PEFT loads an adapter frozen, and into a copy of the base model's head: in bf16 it would round
    # the saved fp32 weights and score in bf16 again
    from bench.modeling.encoder import encoder_logits
    from bench.reload import load_trained
    from bench.run import execute_run
    from bench.run_spec import RunSpec
    from bench.train import TrainSettings

    monkeypatch.setattr("bench.models.loading.pick_dtype", lambda device: torch.bfloat16)
    spec = RunSpec(task="tiny_cls", model=tiny_models["roberta"][0], method="prompt_tuning",
                   method_settings={"num_virtual_tokens": 4}, tasks_dirs=(str(tiny_tasks),), results_dir=tmp_path,
                   train=TrainSettings(steps=2, batch_size=4, eval_every=2, score_initial=False), progress=False)
    record = execute_run(spec)
    task = load_task("tiny_cls", tasks_dirs=(str(tiny_tasks),))
    tuned = load_trained(record, task)
    saved = safetensors.torch.load_file(str(Path(record["artifact_path"]) / "adapter_model.safetensors"))
    head = {name.removeprefix("base_model.classifier."): weight for name, weight in saved.items()
            if name.startswith("base_model.classifier.")}
    assert head and all(weight.dtype == torch.float32 for weight in head.values())
    loaded = tuned.model.get_base_model().classifier.modules_to_save["default"].state_dict()
    assert loaded.keys() == head.keys()
    assert all(torch.equal(loaded[name], weight) for name, weight in head.items())  # to the bit, not bf16-rounded
    batch = tuned.prompt_batch([example.prompt for example in task.examples("validation")])
    with torch.no_grad(), tuned.autocast():
        assert encoder_logits(tuned.model, batch).dtype == torch.float32
    assert tuned.predict(task.examples("validation")) is not None


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_generation_reads_an_lm_head_in_fp32_under_bf16(tiny_models, tiny_tasks, arch):
    import dataclasses

    task = load_task("tiny_qa", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(tiny_models[arch][0])
    base = dataclasses.replace(base, model=base.model.to(torch.bfloat16), dtype=torch.bfloat16)
    tuned = TunedModel(base.model, base, task.card)
    head, dtypes = base.model.get_output_embeddings(), set()
    head.register_forward_hook(lambda module, args, output: dtypes.add(output.dtype))
    answers = tuned.predict(task.examples("validation")[:3])
    assert len(answers) == 3 and dtypes == {torch.float32}  # every greedy step's argmax
