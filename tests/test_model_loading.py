"""Loading a user's checkpoint folder: what cannot work is refused with the model named, and what
loads, loads the same every time."""

from __future__ import annotations

import shutil
import time
import warnings

import pytest
import torch
import transformers

from bench.methods import MethodError, get_method
from bench.models import load_base_model
from bench.models.errors import ModelUnavailable
from bench.models.registry import resolve_model
from tasks.notices import UserNotice

SMALL = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def _save(model: torch.nn.Module, folder, tokenizer_from=None):
    model.save_pretrained(folder)
    if tokenizer_from is not None:
        transformers.AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("build", [
    lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2)),
    # transformers gives these a tokenizer of special tokens only, which trained on [UNK] [UNK] ...
    lambda: transformers.BertForMaskedLM(transformers.BertConfig(**SMALL)),
    lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=128, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2, decoder_start_token_id=0)),
    # and this one none at all, with a multi-line error that named neither model nor folder
    lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)),
], ids=["gpt2", "bert", "t5", "llama"])
def test_a_folder_without_a_tokenizer_is_named(tmp_path, build):
    folder = _save(build(), tmp_path / "no-tokenizer")
    with pytest.raises(ModelUnavailable, match="(no usable tokenizer|cannot load the tokenizer) in .*no-tokenizer"):
        load_base_model(folder, num_labels=2)


def test_a_tokenizer_of_another_script_than_latin_is_no_empty_tokenizer(tmp_path, tiny_models):
    """A character-level Chinese vocabulary reads no English word: it is a real tokenizer all the same."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, **{char: i + 2 for i, char in enumerate("我喜欢猫狗电影很好")}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    folder = shutil.copytree(tiny_models["gpt2"][0], tmp_path / "chinese")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(folder)
    assert len(load_base_model(str(folder)).tokenizer) == len(vocab)


def test_a_kind_transformers_has_no_class_for_is_refused_in_a_line_naming_the_kinds_it_has(tmp_path):
    encoder_only = tmp_path / "t5-encoder"
    transformers.T5EncoderModel(transformers.T5Config(vocab_size=128, d_model=16, d_ff=32, d_kv=8, num_layers=1,
                                                      num_heads=2)).save_pretrained(encoder_only)
    with pytest.raises(ModelUnavailable, match=r"no causal model class for model type 't5' \(T5EncoderModel\); "
                                               "--model-kind encoder or seq2seq may load it$"):
        resolve_model(str(encoder_only))


def test_folders_that_hold_no_loadable_checkpoint_are_named_as_folders(tmp_path, monkeypatch):
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text('{"model_type": "mine", "auto_map": {"AutoConfig": "conf.MyConfig"}}')
    monkeypatch.setattr("sys.stdin", None)  # asked to run the folder's code, a read would fail
    with pytest.raises(ModelUnavailable, match=r"the folder .*custom is no checkpoint transformers can load"):
        resolve_model(str(custom))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelUnavailable, match="a file, not a checkpoint folder"):
        resolve_model(str(tmp_path / "model.gguf"))


def test_a_tokenizer_with_nothing_to_pad_with_is_named(tmp_path, tiny_models):
    folder = shutil.copytree(tiny_models["gpt2"][0], tmp_path / "no-pad")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token = tokenizer.unk_token = None
    tokenizer.save_pretrained(folder)
    with pytest.raises(ModelUnavailable, match="no padding, end-of-sequence or unknown token"):
        load_base_model(str(folder))


def test_weights_a_checkpoint_lacks_start_the_same_on_every_load(tmp_path, tiny_models):
    """A masked-LM checkpoint has no pooler: the classification head reads one, so it must not be a
    new random draw per process (a run and its reloaded adapter would disagree)."""
    folder = _save(transformers.BertForMaskedLM(transformers.BertConfig(**SMALL)), tmp_path / "mlm",
                   tokenizer_from=tiny_models["bert"][0])
    poolers = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base = load_base_model(folder, num_labels=2)
        poolers.append(base.model.bert.pooler.dense.weight.clone())
        assert any(issubclass(w.category, UserNotice) and "bert.pooler.dense" in str(w.message) for w in caught)
    assert torch.equal(*poolers)


def test_a_bare_decoder_body_is_a_causal_model(tmp_path, tiny_models):
    folder = _save(transformers.GPT2Model(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2)),
                   tmp_path / "gpt2-body", tokenizer_from=tiny_models["gpt2"][0])
    assert resolve_model(folder).kind == "causal"


def test_a_folder_is_recorded_by_its_full_path_and_a_missing_one_is_named(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_models["gpt2"][0], tmp_path / "gpt2")
    assert resolve_model("gpt2").source == str(tmp_path / "gpt2")  # the folder here, not the hub's gpt2
    with pytest.raises(ModelUnavailable, match=r"model './nowhere': no such folder"):
        resolve_model("./nowhere")


def test_positions_counted_after_the_padding_index(tiny_models):
    """RoBERTa numbers positions from the pad id + 1: of its 514 (pad id 0 here), 513 hold tokens."""
    assert load_base_model(tiny_models["roberta"][0], num_labels=2).max_positions == 513


def test_a_classifier_folder_cannot_be_loaded_as_an_lm(tiny_models):
    with pytest.raises(ModelUnavailable, match="holds no LM head weights"):
        load_base_model(tiny_models["roberta"][0], kind="causal")


def test_peft_refusing_an_architecture_names_the_model(tmp_path, tiny_models):
    config = transformers.DistilBertConfig(vocab_size=30522, dim=32, hidden_dim=64, n_layers=1, n_heads=2)
    folder = _save(transformers.DistilBertForSequenceClassification(config), tmp_path / "distilbert",
                   tokenizer_from=tiny_models["bert"][0])
    base = load_base_model(folder, num_labels=2)
    method = get_method("lora")
    refused = r"PEFT cannot apply lora to model .*distilbert' \(distilbert\): .*target_modules"
    with pytest.raises(MethodError, match=refused):
        method.build(base, method.settings(), card=None)


@pytest.mark.parametrize("model_type, architecture, kind", [
    ("xlm-roberta-xl", "XLMRobertaXLForMaskedLM", "encoder"),  # a masked-LM family, whatever its head
    ("data2vec-text", "Data2VecTextModel", "encoder"),
    ("llama", "LlamaModel", "causal"),  # a bare decoder body
    ("llama", "LlamaForSequenceClassification", "encoder"),  # a classifier checkpoint is read as one
])
def test_the_kind_of_a_folder_comes_from_its_family(tmp_path, model_type, architecture, kind):
    (tmp_path / "config.json").write_text(f'{{"model_type": "{model_type}", "architectures": ["{architecture}"]}}')
    assert resolve_model(str(tmp_path)).kind == kind


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning"])
def test_virtual_tokens_are_refused_for_a_classifier_that_reads_the_last_token(tmp_path, tiny_models, method):
    """GPT-2's sequence classifier finds each row's last token from its ids; virtual tokens come as
    embeddings, so it would read padding."""
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, num_labels=2, pad_token_id=0)
    folder = _save(transformers.GPT2ForSequenceClassification(config), tmp_path / "gpt2-classifier",
                   tokenizer_from=tiny_models["bert"][0])
    base = load_base_model(folder, num_labels=2)
    assert base.kind == "encoder"
    chosen = get_method(method)
    with pytest.raises(MethodError, match="its head reads the last token, which virtual tokens hide; load it with "
                                          "--model-kind causal"):
        chosen.build(base, chosen.settings(), card=None)
    lora = get_method("lora")
    lora.build(base, lora.settings(), card=None)  # the ids reach the model: nothing hidden


def test_a_hub_model_s_commit_is_read_from_the_cache_snapshot(tmp_path, monkeypatch, tiny_models):
    import shutil

    from bench.models.loading import hub_commit

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(tiny_models["gpt2"][0], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_commit("org/tiny") == commit
    assert hub_commit(tiny_models["gpt2"][0]) is None  # a folder is its own version
    assert hub_commit("org/not-cached") is None


def test_a_hub_id_without_a_network_fails_at_once_naming_why(hub_host, monkeypatch):
    import huggingface_hub.constants

    hub_host(reachable=False)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match=r"unknown model 'someone/no-such-model': .*huggingface.co cannot be "
                                               r"reached from here, so only the local cache was looked in"):
        resolve_model("someone/no-such-model")
    # the hub client's retries (tens of seconds) are skipped: it is offline, and its cache answers
    assert time.monotonic() - started < 10 and huggingface_hub.constants.HF_HUB_OFFLINE
    assert len(hub_host.tried) == 1


def test_the_hub_is_not_probed_behind_a_proxy_or_where_it_answers(hub_host, monkeypatch):
    import huggingface_hub.constants

    from tasks.hub import offline_unless_reachable

    from tasks import hub

    hub_host(reachable=False)
    monkeypatch.setattr(hub.urllib.request, "getproxies", lambda: {"https": "http://proxy.example:3128"})
    assert offline_unless_reachable() is False and hub_host.tried == []  # a direct connection says nothing there
    monkeypatch.setattr(hub.urllib.request, "getproxies", lambda: {"http": "http://proxy.example:3128"})
    hub_host(reachable=True)  # a proxy for another scheme than the endpoint's: probed
    assert offline_unless_reachable() is False and not huggingface_hub.constants.HF_HUB_OFFLINE
    assert hub_host.tried == [("huggingface.co", 443)]
    monkeypatch.setattr(hub.urllib.request, "getproxies", dict)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://mirror.internal")  # a mirror, on its port
    hub_host(reachable=True)
    offline_unless_reachable()
    assert hub_host.tried[-1] == ("mirror.internal", 80)
