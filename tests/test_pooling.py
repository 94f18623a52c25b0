"""Encoders read the sentence the way their checkpoint declares (sentence-transformers pooling)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import bench.models.pooling
from bench.models import load_base_model
from bench.models.pooling import CONFIG_KEY, declared_pooling
from bench.models.registry import MODELS
from tasks.notices import UserNotice
from tests.conftest import write_mean_pooling_declaration


def test_declared_pooling_of_real_and_tiny_checkpoints(tiny_models, tmp_path):
    assert declared_pooling(str(MODELS["minilm-l6"].locate())) == "mean"
    assert declared_pooling(tiny_models["bert"][0]) == "mean"
    assert declared_pooling(tiny_models["roberta"][0]) is None  # no sentence-transformers files
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "p", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert declared_pooling(str(tmp_path)) is None  # [CLS] pooling: the model's own head already reads it


def test_a_hub_checkpoint_without_a_pooling_declaration_declares_none_and_other_errors_are_raised(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    def raising(error):
        def download(*args, **kwargs):
            raise error
        return download

    for missing in (EntryNotFoundError("no modules.json"), LocalEntryNotFoundError("no hub")):
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", raising(missing))
        assert declared_pooling("someone/a-model") is None
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", raising(ZeroDivisionError()))  # a defect, not "none"
    with pytest.raises(ZeroDivisionError):
        declared_pooling("someone/a-model")


def _encode(base, texts):
    return base.tokenizer(texts, padding=True, return_tensors="pt")


@torch.no_grad()
def test_head_reads_the_mean_of_real_tokens(tiny_models):
    base = load_base_model(tiny_models["bert"][0], num_labels=2)
    model = base.model.eval()
    batch = _encode(base, ["a short one", "a much longer sentence with many more words in it"])
    hidden = model.bert(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(model(**batch).logits, model.classifier(mean))
    # padding does not change a row's logits
    torch.testing.assert_close(model(**_encode(base, ["a short one"])).logits, model(**batch).logits[:1])


@torch.no_grad()
def test_fully_fine_tuned_checkpoint_keeps_its_pooling(tiny_models, tmp_path):
    base = load_base_model(tiny_models["bert"][0], num_labels=2)
    assert getattr(base.model.config, CONFIG_KEY) == "mean"
    base.model.save_pretrained(tmp_path)  # no sentence-transformers files in this folder
    base.tokenizer.save_pretrained(tmp_path)
    reloaded = load_base_model(str(tmp_path), num_labels=2)
    batch = _encode(base, ["a short one", "a much longer sentence with many more words in it"])
    torch.testing.assert_close(reloaded.model.eval()(**batch).logits, base.model.eval()(**batch).logits)


@torch.no_grad()
def test_a_head_that_reads_the_first_token_reads_the_declared_mean(tiny_models, tmp_path):
    # RoBERTa's, MPNet's and DistilBERT's heads have no pooler: they read position 0, which must then
    # hold the mean of the real tokens, as a sentence-transformers RoBERTa checkpoint is trained to be read
    folder = tmp_path / "roberta"
    shutil.copytree(tiny_models["roberta"][0], folder)
    write_mean_pooling_declaration(folder)
    base = load_base_model(str(folder), num_labels=2)
    model = base.model.eval()
    batch = _encode(base, ["a short one", "a much longer sentence with many more words in it"])
    model.roberta._forward_hooks.clear()  # the states as the backbone gives them
    hidden = model.roberta(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    reloaded = load_base_model(str(folder), num_labels=2).model.eval()
    torch.testing.assert_close(reloaded(**batch).logits, reloaded.classifier(mean.unsqueeze(1)))
    torch.testing.assert_close(reloaded(**_encode(base, ["a short one"])).logits, reloaded(**batch).logits[:1])


def test_a_declared_pooling_no_head_can_read_is_said(tiny_models, tmp_path, monkeypatch):
    folder = tmp_path / "roberta"
    shutil.copytree(tiny_models["roberta"][0], folder)
    write_mean_pooling_declaration(folder)
    monkeypatch.setattr(bench.models.pooling, "FIRST_TOKEN_HEADS", ())  # an architecture it does not know
    with pytest.warns(UserNotice, match="declares mean pooling, but a roberta classification head cannot be made"):
        base = load_base_model(str(folder), num_labels=2)
    assert not hasattr(base.model.config, CONFIG_KEY)
