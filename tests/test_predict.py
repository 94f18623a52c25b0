"""`spbench predict`: a saved prompt answers new inputs as it answered during its run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.predict import template_fields
from tasks import load_task
from tests.test_cli import run_cli, tiny_run


def _train(capsys, tiny_models, tiny_tasks, tmp_path, arch, method, task) -> Path:
    code, out, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, arch, method, task))
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
])
def test_predictions_reproduce_the_runs_validation_score(capsys, monkeypatch, tiny_models, tiny_tasks, tmp_path,
                                                         arch, method, task, metric):
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, arch, method, task)
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


def test_plain_lines_fill_a_one_field_template_and_bad_input_is_named(capsys, monkeypatch, tiny_models, tiny_tasks,
                                                                     tmp_path):
    run_dir = _train(capsys, tiny_models, tiny_tasks, tmp_path, "gpt2", "lora", "tiny_cls")
    code, answers, err = _predict(capsys, monkeypatch, run_dir, ["a fine film", "", "a dull film"],
                                  "--tasks-dir", tiny_tasks)
    assert code == 0, err
    assert [a["sentence"] for a in answers] == ["a fine film", "a dull film"]
    assert {a["prediction"] for a in answers} <= {0, 1}

    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"sentence": "ok"}', '{"sentence": '])
    assert code == 2 and "standard input line 2: not valid JSON" in err
    code, _, err = _predict(capsys, monkeypatch, run_dir, ['{"text": "ok"}'])
    assert code == 2 and "standard input line 1: no sentence (the template reads sentence)" in err
    full = _train(capsys, tiny_models, tiny_tasks, tmp_path, "gpt2", "full_ft", "tiny_cls")
    code, _, err = _predict(capsys, monkeypatch, full, ["a fine film"])
    assert code == 2 and "full_ft saves no weights" in err
    code, _, err = _predict(capsys, monkeypatch, tmp_path, ["a fine film"])
    assert code == 2 and "neither a run folder (record.json) nor a search folder (best.yaml)" in err


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


def test_template_fields():
    assert template_fields("Context: {context}\nQuestion: {question} {context}") == ["context", "question"]
    assert template_fields("{a.b} and {c[0]}") == ["a", "c"]
