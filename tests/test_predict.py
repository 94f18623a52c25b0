"""`spbench predict`: a saved prompt answers new inputs as it answered during its run."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from bench.cli import main
from bench.modeling.encoder import encoder_logits
from bench.modeling.tuned import TunedModel
from bench.models import load_base_model
from tasks import load_task
from tasks.notices import UserNotice
from tasks.template import template_fields
from tests.test_cli import run_cli, tiny_run


def _train(capsys, tiny_models, tiny_tasks, tmp_path, arch, method, task, *extra) -> Path:
    code, out, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, arch, method, task, *extra))
    assert code == 0, err
    return Path(out.strip().splitlines()[-1].removeprefix("record: ")).parent


def _validation_rows(tiny_tasks, task: str) -> list[dict]:
    return load_task(task, tasks_dirs=(str(tiny_tasks),)).rows("validation")


def _predict(capsys, monkeypatch, source, lines: list[str], *extra) -> tuple[int, list[dict], str]:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code, out, err = run_cli(capsys, "predict", source, *extra)
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("arch, method, task, metric", [
    ("gpt2", "prompt_tuning", "tiny_cls", "accuracy"),
    ("bert", "p_tuning", "tiny_cls", "accuracy"),
    ("llama", "prompt_tuning", "tiny_qa", "f1"),
    ("llama", "prefix_tuning", "tiny_cls", "accuracy"),  # grouped-query attention: a prefix narrower than a token
])
def test_predictions_reproduce_the_runs_validation_score(capsys, monkeypatch, tiny_models, tiny_tasks, tmp_path,
                                                         arch, method, task, metric):
    # trained long and fast enough that the prompt changes what the model answers
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, arch, method, task, "--steps", 8, "--set", "lr=0.3")
    record = json.loads((run_dir / "record.json").read_text())
    rows = _validation_rows(tiny_tasks, task)
    unlabelled = [{k: v for k, v in row.items() if k in ("sentence", "context", "question")} for row in rows]
    code, answers, err = _predict(capsys, monkeypatch, run_dir, [json.dumps(row) for row in unlabelled],
                                  "--tasks-dir", tiny_tasks, "--batch-size", 5)
    assert code == 0, err
    assert [{k: a[k] for k in row} for a, row in zip(answers, unlabelled)] == unlabelled  # inputs echoed, in order
    card = load_task(task, tasks_dirs=(str(tiny_tasks),))
    if metric == "accuracy":
        assert all(a["label_word"] == card.card.label_words[a["prediction"]][0] for a in answers)
        score = sum(a["prediction"] == row["label"] for a, row in zip(answers, rows)) / len(rows)
    else:
        examples = card.examples("validation")
        score = card.score([a["prediction"] for a in answers], examples)["f1"]
    assert score == pytest.approx(record["scores"]["validation"][metric])
    # and answer for answer, as the run's adapter loaded by PEFT itself answers (a score alone can
    # come out the same from the base model on a dozen examples)
    base = load_base_model(tiny_models[arch][0], num_labels=len(card.card.classes) or None)
    trained = TunedModel(PeftModel.from_pretrained(base.model, str(run_dir / "adapter")), base, card.card)
    expected = trained.predict(card.examples("validation"))
    if metric == "accuracy":
        expected = [card.card.classes[index] for index in expected]
    assert [a["prediction"] for a in answers] == expected
    if metric == "accuracy":  # every class's probability, as the PEFT-loaded prompt scores them
        examples = card.examples("validation")
        if arch == "bert":  # the head's own softmax, all prompts in one batch
            with torch.no_grad():
                trained.model.eval()
                probabilities = encoder_logits(trained.model, trained.prompt_batch([e.prompt for e in examples]))
            probabilities = probabilities.softmax(-1)
        else:
            probabilities = trained.class_scores(examples).softmax(-1)
        assert all(list(a["probabilities"]) == [str(c) for c in card.card.classes] for a in answers)
        assert [p for a in answers for p in a["probabilities"].values()] == pytest.approx(
            probabilities.flatten().tolist(), abs=1e-4)
        for answer in answers:  # a distribution over the classes, its largest the answer (or tied with it, rounded)
            assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-3)
            assert answer["probabilities"][str(answer["prediction"])] == max(answer["probabilities"].values())


def test_plain_lines_fill_a_one_field_template_and_bad_input_is_named(capsys, monkeypatch, tiny_models, tiny_tasks,
                                                                     tmp_path):
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, "gpt2", "lora", "tiny_cls")
    code, answers, err = _predict(capsys, monkeypatch, run_dir, ["a fine film", "", "a dull film"],
                                  "--tasks-dir", tiny_tasks, "--input", "-")
    assert code == 0, err
    assert [a["sentence"] for a in answers] == ["a fine film", "a dull film"]
    assert {a["prediction"] for a in answers} <= {0, 1}
    code, again, err = _predict(capsys, monkeypatch, run_dir / "adapter", ["a fine film", "a dull film"],
                                "--tasks-dir", tiny_tasks)  # the adapter folder its record names
    assert code == 0 and again == answers, err
    written = tmp_path / "out" / "answers.jsonl"
    code, printed, err = _predict(capsys, monkeypatch, run_dir, ["a fine film", "a dull film"], "--output", written)
    assert code == 0 and printed == [] and err.strip() == f"2 answers -> {written}", err
    assert [json.loads(line) for line in written.read_text().splitlines()] == answers
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--output", tmp_path)
    assert code == 2 and f"--output {tmp_path}: is a folder (name a file)" in err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--output", written / "below.jsonl")
    assert code == 2 and f"--output {written / 'below.jsonl'}: {written} is a file, not a folder" in err
    code, printed, err = _predict(capsys, monkeypatch, run_dir, ["a fine film", "a dull film"], "--output", "-")
    assert code == 0 and printed == answers, err  # -: standard output
    with pytest.warns(UserNotice, match="standard input: no input rows, nothing answered"):
        code, printed, err = _predict(capsys, monkeypatch, run_dir, ["", "  "], "--output", written)
    assert code == 0 and printed == [] and written.read_text() == "", err  # an empty batch is no failure

    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok"}', '{"sentence": '])
    assert code == 2 and "standard input line 2: not valid JSON" in err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"text": "ok"}'])
    assert code == 2 and "standard input line 1: no sentence (the template reads sentence)" in err
    code, answers, err = _predict(capsys, monkeypatch, run_dir, ['\ufeff{"sentence": "ok"}'])
    assert code == 0 and answers[0]["sentence"] == "ok", err  # a byte-order mark opening the input
    for errors in ("strict", "surrogateescape"):  # a UTF-8 locale's standard input, and the C locale's
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"ok\ncaf\xe9\n"), errors=errors))
        code, _, err = run_cli(capsys, "predict", run_dir)
        assert code == 2 and "standard input line 2: not UTF-8 text" in err, err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "caf\\udce9"}'])  # a JSON escape
    assert code == 2 and "standard input line 1: not UTF-8 text" in err, err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": {"text": "ok"}}'])
    assert code == 2 and "standard input line 1: sentence is dict, not text" in err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["ok"], "--input", tmp_path)
    assert code == 2 and f"--input {tmp_path}: cannot read (Is a directory)" in err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["ok"], "--task", "tiny_qa")
    assert code == 2 and "is a run of task 'tiny_cls', not 'tiny_qa'" in err
    with pytest.raises(SystemExit):
        main(["predict", str(run_dir), "--batch-size", "0"])
    assert "--batch-size: must be 1 or more, got 0" in capsys.readouterr().err
    full = _train(capsys, tiny_models, tiny_tasks, tmp_path, "gpt2", "full_ft", "tiny_cls")
    code, _, err = _predict(capsys, monkeypatch, full, ["a fine film"])
    assert code == 2 and "full_ft saves no weights" in err
    code, _, err = _predict(capsys, monkeypatch, tmp_path, ["a fine film"])
    assert code == 2 and "neither a run folder (record.json) nor a search folder (best.yaml)" in err
    failed = tmp_path / "failed_run"
    failed.mkdir()
    (failed / "failure.json").write_text(json.dumps({"reason": "ModelError: no such model\nmore"}))
    code, _, err = _predict(capsys, monkeypatch, failed, ["a fine film"])
    assert code == 2 and "a run that failed, with no model to answer (ModelError: no such model)" in err
    (failed / "failure.json").unlink()
    (failed / "adapter").mkdir()  # stopped between saving its adapter and writing its record
    code, _, err = _predict(capsys, monkeypatch, failed, ["a fine film"])
    assert code == 2 and "a run stopped before it finished (an adapter, no record.json): rerun its command" in err
    code, _, err = _predict(capsys, monkeypatch, tmp_path / "nowhere", ["a fine film"])
    assert code == 2 and f"{tmp_path / 'nowhere'}: no such file or folder" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_typed_at_a_terminal_are_answered_one_by_one(capsys, monkeypatch, tiny_models, tiny_tasks, tmp_path):
    """Each typed line gets its answer before the next is read; a bad line is named and skipped."""
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, "gpt2", "lora", "tiny_cls")
    answered = []
    terminal = _Terminal('a fine film\n{"sentence": \n\n{"text": "x"}\na dull film\n')
    monkeypatch.setattr("sys.stdin", terminal)
    real_scores = TunedModel.class_scores

    def scores_one(self, examples, batch_size):
        answered.append((terminal.tell(), [e.prompt for e in examples]))
        return real_scores(self, examples, batch_size=batch_size)

    monkeypatch.setattr("bench.modeling.tuned.TunedModel.class_scores", scores_one)
    code, out, err = run_cli(capsys, "predict", run_dir, "--tasks-dir", tiny_tasks)
    assert code == 0, err
    assert [json.loads(line)["sentence"] for line in out.splitlines()] == ["a fine film", "a dull film"]
    assert "line 2: not valid JSON" in err and "line 4: no sentence" in err
    assert [len(prompts) for _, prompts in answered] == [1, 1]
    assert answered[0][0] < answered[1][0]  # the first answer came before the rest was read

    written = tmp_path / "answers.jsonl"  # with --output, what is typed is answered at its end, into the file
    monkeypatch.setattr("sys.stdin", _Terminal("a fine film\na dull film\n"))
    code, out, err = run_cli(capsys, "predict", run_dir, "--tasks-dir", tiny_tasks, "--output", written)
    assert code == 0 and out == "" and "end with Ctrl-D to answer them" in err, err
    assert [json.loads(line)["sentence"] for line in written.read_text().splitlines()] == ["a fine film", "a dull film"]


def test_class_values_are_answered_as_the_data_names_them(capsys, monkeypatch, tiny_models, tmp_path):
    """Labels written as words in the data come back as those words, not as class indices."""
    folder = tmp_path / "cards"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        rows = [{"text": f"review {i}", "stars": ["low", "high"][i % 2]} for i in range(8)]
        (folder / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "stars.yaml").write_text(
        "name: stars\nversion: 1\nkind: classification\nsource: {local: data}\ntemplate: '{text} ->'\n"
        "label_field: stars\nlabel_words: {low: [bad], high: [good]}\nmetrics: [accuracy]\nmax_input_tokens: 16\n")
    run_dir = _train(capsys, tiny_models, folder, tmp_path, "gpt2", "prompt_tuning", "stars")
    code, answers, err = _predict(capsys, monkeypatch, run_dir, ["review 1", "review 2"], "--tasks-dir", folder)
    assert code == 0 and len(answers) == 2, err
    words = {"low": "bad", "high": "good"}
    assert all(a["prediction"] in words and a["label_word"] == words[a["prediction"]] for a in answers)


def test_a_record_whose_card_is_elsewhere_uses_the_card_of_its_name_and_version(capsys, monkeypatch, tiny_models,
                                                                               tiny_tasks, tmp_path):
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, "gpt2", "prompt_tuning", "tiny_cls")
    record = json.loads((run_dir / "record.json").read_text())
    record["task"]["card"] = "/another/machine/tiny_cls.yaml"
    (run_dir / "record.json").write_text(json.dumps(record))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"])
    assert code == 2 and "/another/machine/tiny_cls.yaml is not on this machine, nor a card of that name" in err
    code, answers, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--tasks-dir", tiny_tasks)
    assert code == 0 and len(answers) == 1, err
    record["task"]["version"] = 2
    (run_dir / "record.json").write_text(json.dumps(record))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--tasks-dir", tiny_tasks)
    assert code == 2 and "tiny_cls.yaml is version 1: pass --tasks-dir with a folder holding the card it ran" in err
    record["task"]["card"] = str(tiny_tasks / "tiny_cls.yaml")  # the card is here, but was changed since
    (run_dir / "record.json").write_text(json.dumps(record))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"])
    assert code == 2 and "trained on task 'tiny_cls' version 2; " in err


def test_a_search_folder_answers_with_its_winner(capsys, monkeypatch, tiny_models, tiny_tasks, tmp_path):
    results = tmp_path / "results"
    assert main(["search", "--task", "tiny_qa", "--model", tiny_models["gpt2"][0], "--trials", "2", "--steps", "2",
                 "--batch-size", "4", "--eval-every", "2", "--eval-size", "4", "--pruner", "none",
                 "--results", str(results), "--tasks-dir", str(tiny_tasks), "--study", "s"]) == 0
    capsys.readouterr()
    question = {"context": "the answer is blue", "question": "what is the answer"}
    code, answers, err = _predict(capsys, monkeypatch, results / "s", [json.dumps(question)], "--tasks-dir", tiny_tasks)
    assert code == 0, err
    assert len(answers) == 1 and isinstance(answers[0]["prediction"], str)
    code, _, err = _predict(capsys, monkeypatch, results / "s", [json.dumps(question)], "--task", "tiny_cls")
    assert code == 2 and "no task 'tiny_cls'; it holds tiny_qa" in err
    # the exported adapter keeps its record: the folder answers alone, moved away from the study
    moved = shutil.copytree(results / "s" / "best_adapter" / "tiny_qa", tmp_path / "elsewhere")
    shutil.rmtree(results)
    code, again, err = _predict(capsys, monkeypatch, moved, [json.dumps(question)], "--tasks-dir", tiny_tasks)
    assert code == 0 and again == answers, err


def test_a_broken_search_folder_or_record_is_named(capsys, monkeypatch, tmp_path):
    (tmp_path / "best.yaml").write_text("study: [unclosed\n")
    code, _, err = _predict(capsys, monkeypatch, tmp_path, ["ok"])
    assert code == 2 and f"{tmp_path / 'best.yaml'}: not valid YAML" in err
    (tmp_path / "best.yaml").write_text("test: 'not scored here: trial 3 ran on box-2, which holds its adapter'\n")
    code, _, err = _predict(capsys, monkeypatch, tmp_path, ["ok"])
    assert code == 2 and "the winner's adapter is not on this machine (not scored here: trial 3 ran on box-2" in err
    for text in ("study: s\n", "records: []\ntasks: []\n", "records: a.json\n"):  # a best.yaml cut short or edited
        (tmp_path / "best.yaml").write_text(text)
        code, _, err = _predict(capsys, monkeypatch, tmp_path, ["ok"])
        assert code == 2, err
        assert f"{tmp_path / 'best.yaml'}: not a search's best.yaml (no records of its winner)" in err
    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text('{"run_id": ')
    code, _, err = _predict(capsys, monkeypatch, run, ["ok"])
    assert code == 2 and f"{run / 'record.json'}: not a readable run record" in err
    for text, why in (("{}", "it has no run_id"), ("[1]", "it is not a JSON object")):
        (run / "record.json").write_text(text)
        code, _, err = _predict(capsys, monkeypatch, run, ["ok"])
        assert code == 2 and f"{run / 'record.json'}: not a run record ({why})" in err, err


def test_a_folder_above_a_run_offers_the_run(capsys, monkeypatch, tmp_path):
    trial = tmp_path / "trials" / "trial_0001"
    (trial / "tiny_cls__gpt2__prompt_tuning__abc__s0").mkdir(parents=True)
    (trial / "tiny_cls__gpt2__prompt_tuning__abc__s0" / "record.json").write_text("{}")
    code, _, err = _predict(capsys, monkeypatch, trial, ["ok"])
    assert code == 2 and (f"neither a run folder (record.json) nor a search folder (best.yaml); did you mean "
                          f"{trial / 'tiny_cls__gpt2__prompt_tuning__abc__s0'}?") in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _predict(capsys, monkeypatch, empty, ["ok"])
    assert code == 2 and "did you mean" not in err


def test_template_fields():
    assert template_fields("Context: {context}\nQuestion: {question} {context}") == {"context": True, "question": True}
    assert template_fields("{a[text]} and {c} {c[0]}") == {"a": False, "c": False}


def test_an_adapter_that_cannot_load_is_named(capsys, monkeypatch, tiny_models, tiny_tasks, tmp_path):
    cards = tmp_path / "cards"
    shutil.copytree(tiny_tasks, cards)
    run_dir = _train(capsys, tiny_models, cards, tmp_path, "bert", "lora", "tiny_cls")
    card = cards / "tiny_cls.yaml"  # then changed (a third class) without a new version
    card.write_text(card.read_text().replace("{0: [bad], 1: [good, great]}", "{0: [bad], 1: [good], 2: [great]}"))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok"}'], "--tasks-dir", cards)
    assert code == 2 and f"cannot load the adapter at {run_dir / 'adapter'} (RuntimeError: " in err, err
    assert "was the task card changed" in err and "Traceback" not in err
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    card.write_text(card.read_text().replace("{0: [bad], 1: [good], 2: [great]}", "{0: [bad], 1: [good, great]}"))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok"}'], "--tasks-dir", cards)
    assert code == 2 and f"cannot load the adapter at {run_dir / 'adapter'} (SafetensorError: " in err, err


def test_a_card_edited_since_the_run_is_said_and_a_missing_adapter_file_named(capsys, monkeypatch, tiny_models,
                                                                             tiny_tasks, tmp_path):
    cards = tmp_path / "cards"
    shutil.copytree(tiny_tasks, cards)
    run_dir = _train(capsys, tiny_models, cards, tmp_path, "gpt2", "prompt_tuning", "tiny_cls")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--tasks-dir", cards)
    assert code == 0 and not any("changed since run" in str(w.message) for w in caught)  # as it was: nothing to say
    card = cards / "tiny_cls.yaml"  # a new template, the version kept
    card.write_text(card.read_text().replace("'Review: {sentence} Sentiment:'", "'Text: {sentence} Sentiment:'"))
    with pytest.warns(UserNotice, match=rf"{card} or its data changed since run {run_dir.name} trained on it, at the "
                                        "same version 1"):
        code, answers, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--tasks-dir", cards)
    assert code == 0 and len(answers) == 1
    # an input field the answer writes over is said, not lost unseen
    with pytest.warns(UserNotice, match="input field prediction: replaced by the answer's in the output"):
        code, answers, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok", "prediction": "mine"}'],
                                      "--tasks-dir", cards)
    assert code == 0 and answers[0]["prediction"] in (0, 1)
    (run_dir / "adapter" / "adapter_config.json").unlink()  # the weights are there, PEFT's config not
    code, _, err = _predict(capsys, monkeypatch, run_dir, ["a fine film"], "--tasks-dir", cards)
    assert code == 2 and f"{run_dir / 'adapter'} has no adapter_config.json, which PEFT needs" in err
    assert "shipped reference" not in err


def test_every_input_line_is_rendered_before_the_model_loads():
    # a nested field a row lacks, or a field of the wrong shape, is named by its line (blank lines
    # counted), not met by the template after the model has loaded
    from types import SimpleNamespace

    from bench.predict import read_inputs

    card = SimpleNamespace(template="Review: {review[text]} ({review[stars]:d} stars)")
    fields = template_fields(card.template)
    lines = ['{"review": {"text": "fine", "stars": 4}}', "", '{"review": {"text": "dull"}}']
    with pytest.raises(ValueError, match=r"^input line 3: no 'stars' in it \(the template reads"):
        read_inputs(lines, card, fields, "input")
    with pytest.raises(ValueError, match=r"^input line 1: cannot fill the template .* from it \(Unknown format code"):
        read_inputs(['{"review": {"text": "x", "stars": "four"}}'], card, fields, "input")
    [(row, example)] = read_inputs(lines[:2], card, fields, "input")
    assert example.prompt == "Review: fine (4 stars)" and row == {"review": {"text": "fine", "stars": 4}}


def test_an_adapter_trained_through_another_sentence_pooling_is_refused(capsys, monkeypatch, tiny_models, tiny_tasks,
                                                                         tmp_path):
    # a run recorded before its checkpoint's pooling was applied (`sentence_pooling: null`): its head
    # learned the first token's state, and must not be scored through the mean the model now gives
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, "bert", "lora", "tiny_cls")
    record = json.loads((run_dir / "record.json").read_text())
    assert record["model"]["sentence_pooling"] == "mean"
    record["model"]["sentence_pooling"] = None
    (run_dir / "record.json").write_text(json.dumps(record))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok"}'], "--tasks-dir", tiny_tasks)
    assert code == 2 and "its head was trained reading the first token's state (or the pooler's), and" in err, err
    assert "now loads reading mean-pooled token states; train it again" in err


def test_a_prompt_adapter_on_a_model_of_another_width_is_refused_not_a_crash(capsys, monkeypatch, tiny_models,
                                                                              tiny_tasks, tmp_path):
    """The model folder a run names may hold another model since: a prompt adapter loads onto it
    without complaint, and would fail at the first forward."""
    import transformers

    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path / "runs", "gpt2", "prompt_tuning", "tiny_cls")
    wider = tmp_path / "wider"
    shutil.copytree(tiny_models["gpt2"][0], wider)
    config = transformers.GPT2Config.from_pretrained(wider)
    config.n_embd = 64
    transformers.GPT2LMHeadModel(config).save_pretrained(wider)
    record = json.loads((run_dir / "record.json").read_text())
    record["model"].update(name=str(wider), source=str(wider))
    (run_dir / "record.json").write_text(json.dumps(record))
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok"}'], "--tasks-dir", tiny_tasks)
    assert code == 2 and "its adapter was trained on a model with token_dim 32; " in err and "needs 64" in err, err
