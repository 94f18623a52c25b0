"""Shared fixtures: tiny randomly initialised models of every kind and tiny task cards.

The tiny models reuse the embedded MiniLM tokenizer (a real WordPiece vocabulary available
offline), so they load through the same `from_pretrained` path as any user checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The tests compare numbers at fp32's tolerances and build tensors on the CPU: on a machine with a GPU
# they run on the CPU all the same (the GPU is hidden before torch looks for it), unless
# SPBENCH_TEST_CUDA=1 lets them see it.
if os.environ.get("SPBENCH_TEST_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from bench.models.registry import MODELS  # noqa: E402

TINY = dict(vocab_size=30522)
TINY_CONFIGS = {
    "gpt2": ("causal", transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=512, **TINY),
             transformers.GPT2LMHeadModel),
    "llama": ("causal", transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                 num_attention_heads=4, num_key_value_heads=2, **TINY),
              transformers.LlamaForCausalLM),
    "roberta": ("encoder", transformers.RobertaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                      num_attention_heads=2, max_position_embeddings=514, **TINY),
                transformers.RobertaForSequenceClassification),
    # a sentence-embedding checkpoint: sentence-transformers files declare mean pooling
    "bert": ("encoder", transformers.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=2, max_position_embeddings=512, **TINY),
             transformers.BertForSequenceClassification),
    # scales its input embeddings by sqrt(hidden size) in the embedding layer's forward
    "gemma3": ("causal", transformers.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                       num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                                       **TINY),
               transformers.Gemma3ForCausalLM),
    "t5": ("seq2seq", transformers.T5Config(d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
                                            decoder_start_token_id=0, **TINY),
           transformers.T5ForConditionalGeneration),
}


@pytest.fixture(scope="session", autouse=True)
def cache_of_the_session(tmp_path_factory):
    """The tests' zero-shot scores (of tiny models in temporary folders: never of use again) go to a
    cache folder of the session, not the user's; converted models are the user's cache, shared."""
    from bench.models.gguf_cache import models_cache

    session = tmp_path_factory.mktemp("cache")
    try:
        models_cache().mkdir(parents=True, exist_ok=True)
        (session / "models").symlink_to(models_cache().resolve(), target_is_directory=True)
    except OSError:  # no cache can be kept there (no home, say): the tests convert into theirs
        pass
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPBENCH_CACHE", str(session))
        yield session


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """architecture -> (checkpoint folder, kind)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(MODELS["minilm-l6"].locate()))
    tokenizer.eos_token = "[SEP]"
    root = tmp_path_factory.mktemp("tiny-models")
    folders = {}
    for name, (kind, config, model_class) in TINY_CONFIGS.items():
        torch.manual_seed(0)
        config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        if kind == "encoder":
            config.num_labels = 2
        folder = root / name
        model_class(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if name == "bert":
            write_mean_pooling_declaration(folder)
        folders[name] = (str(folder), kind)
    return folders


def write_mean_pooling_declaration(folder: Path) -> None:
    """The files a sentence-transformers checkpoint uses to say it is read as mean-pooled tokens."""
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False}))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_string_metric(folder: Path, name: str, compute: str) -> Path:
    """A local `evaluate` metric folder `folder/name` over strings, as a user without a hub writes one;
    `compute` is the body of its `_compute(predictions, references)`."""
    body = "\n".join(f"        {line}" for line in compute.strip().splitlines())
    (folder / name).mkdir()
    (folder / name / f"{name}.py").write_text(f"""
import datasets
import evaluate


class Metric(evaluate.Metric):
    def _info(self):
        strings = datasets.Features({{"predictions": datasets.Value("string"), "references": datasets.Value("string")}})
        return evaluate.MetricInfo(description="{name}", citation="", inputs_description="", features=strings)

    def _compute(self, predictions, references):
{body}
""")
    return folder / name


WORDS = "the a movie film plot acting great awful fine dull story music scene cast".split()


def _sentence(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 5))


@pytest.fixture(scope="session")
def tiny_tasks(tmp_path_factory) -> Path:
    """A folder with a classification card and a QA card over small generated data."""
    root = tmp_path_factory.mktemp("tiny-tasks")
    (root / "data").mkdir()
    for split, count in (("train", 32), ("validation", 12), ("test", 12)):
        rows = [{"sentence": _sentence(i), "label": i % 2} for i in range(count)]
        write_jsonl(root / "data" / f"tiny_cls_{split}.jsonl", rows)
        qa = [{"context": _sentence(i) + " the answer is " + WORDS[i % len(WORDS)],
               "question": "what is the answer", "answers": {"text": [WORDS[i % len(WORDS)]]}} for i in range(count)]
        write_jsonl(root / "data" / f"tiny_qa_{split}.jsonl", qa)
        if split != "validation":  # like SAMSum: validation is carved from train
            dialogues = [{"dialogue": f"A: {_sentence(i)}\nB: {_sentence(i + 1)}", "summary": _sentence(i + 2)}
                         for i in range(count)]
            write_jsonl(root / "data" / f"tiny_sum_{split}.jsonl", dialogues)
    (root / "tiny_cls.yaml").write_text(
        "name: tiny_cls\nversion: 1\nkind: classification\nsource: {local: data}\n"
        "splits: {train: tiny_cls_train, validation: tiny_cls_validation, test: tiny_cls_test}\n"
        "template: 'Review: {sentence} Sentiment:'\nlabel_field: label\n"
        "label_words: {0: [bad], 1: [good, great]}\nmetrics: [accuracy, macro_f1]\nmax_input_tokens: 32\n")
    (root / "tiny_qa.yaml").write_text(
        "name: tiny_qa\nversion: 1\nkind: qa\nsource: {local: data}\n"
        "splits: {train: tiny_qa_train, validation: tiny_qa_validation, test: tiny_qa_test}\n"
        "template: 'Context: {context} Question: {question} Answer:'\ntarget_field: answers.text\n"
        "metrics: [f1, exact_match]\nmax_input_tokens: 48\nmax_new_tokens: 5\n")
    (root / "tiny_sum.yaml").write_text(
        "name: tiny_sum\nversion: 1\nkind: summarization\nsource: {local: data}\n"
        "splits: {train: tiny_sum_train, test: tiny_sum_test}\nvalidation_from_train: 8\n"
        "template: 'Dialogue: {dialogue} Summary:'\ntarget_field: summary\n"
        "metrics: [rougeL, rouge1]\nmax_input_tokens: 48\nmax_new_tokens: 6\n")
    return root


@pytest.fixture(autouse=True)
def hub_probed_afresh(monkeypatch):
    """Each test finds out afresh whether the hub can be reached: the offline mode a probe switches on
    (tasks.hub) is undone after it."""
    import datasets.config
    import huggingface_hub.constants

    from tasks import hub

    for flags in (huggingface_hub.constants, datasets.config):
        monkeypatch.setattr(flags, "HF_HUB_OFFLINE", flags.HF_HUB_OFFLINE)
    hub.offline_unless_reachable.cache_clear()
    yield
    hub.offline_unless_reachable.cache_clear()


@pytest.fixture
def hub_host(monkeypatch):
    """Sets whether the hub's host takes a connection (`hub_host(reachable)`), with no offline setting
    or proxy in force; the addresses tried are listed in `hub_host.tried`."""
    import datasets.config
    import huggingface_hub.constants

    from tasks import hub

    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    for flags in (huggingface_hub.constants, datasets.config):
        monkeypatch.setattr(flags, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.urllib.request, "getproxies", dict)
    tried = []

    def set_reachable(reachable: bool) -> None:
        def connect(address, timeout):
            tried.append(address)
            if not reachable:
                raise ConnectionRefusedError(f"{address} refused")

        monkeypatch.setattr(hub, "connect", connect)
        hub.offline_unless_reachable.cache_clear()

    set_reachable.tried = tried
    return set_reachable
