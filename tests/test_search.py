"""The Optuna searcher on tiny models: space checks, a resumable study, its outputs."""

import csv
import io
import json
import logging
import re
import signal
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import yaml

from bench.cli import main
from search.pruning import REPORT_ERRORS_ATTR
from search.space import SpaceError, load_space


def write_space(folder: Path, text: str) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n    colour: {choices: [red]}\n",
     "unknown prompt_tuning parameter 'colour'"),
    ("methods: [prompt_tuning]\nshared:\n  num_virtual_tokens: {low: 50, high: 5}\n", "empty range, low 50 > high 5"),
    ("methods: [prompt_tuning]\nshared:\n  num_virtual_tokens: {low: 0, high: 5, log: true}\n", "log range needs low > 0"),
    ("methods: [soft_magic]\n", "unknown method 'soft_magic'"),
    ("methods: []\n", "at least one method"),
    ("methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n    init: {choices: []}\n", "non-empty list"),
    # values are checked as the method checks them, before any trial samples them
    ("methods: [p_tuning]\nper_method:\n  p_tuning:\n    encoder: {choices: [mlp, gru]}\n",
     r"per_method.p_tuning.encoder: value 'gru' is refused: p_tuning.encoder='gru' is not one of mlp, lstm"),
    ("methods: [prompt_tuning]\nshared:\n  num_virtual_tokens: {low: 0, high: 5}\n",
     r"shared \(prompt_tuning\).num_virtual_tokens: value 0 is refused: .* out of range \[1, 1000\]"),
    ("methods: [prompt_tuning]\nshared:\n  num_virtual_tokens: {low: 1.5, high: 5}\n",
     r"integer setting needs integer bounds, got \[1.5, 5\]"),
    ("methods: [p_tuning]\nper_method:\n  p_tuning:\n    lr: {low: 1.0e-3, high: 30}\n", "lr=30 is out of range"),
    ("methods: [prefix_tuning]\nper_method:\n  prefix_tuning:\n    prefix_projection: {choices: [true, 3]}\n",
     "`prefix_projection` must be true or false, got 3"),
    ("methods: [p_tuning]\nper_method:\n  p_tuning:\n    lr: {low: 1.0e-4, high: 1.0e-2, lg: true}\n",
     r"p_tuning.lr: unknown key 'lg': did you mean 'log'\?"),
    ("method: [p_tuning]\n", r"unknown key 'method': did you mean 'methods'\? \(known: methods, shared, per_method\)"),
    ("methods: [p_tuning]\nper_method:\n  p_tuning:\n    encoder_size: {value: 64}\n",
     r"unknown p_tuning parameter 'encoder_size': did you mean 'encoder_hidden_size'\?"),
    ("methods: [p_tuning]\nper_method:\n  p_tuning:\n    init: {choices: [random]}\n",  # another method's setting
     r"unknown p_tuning parameter 'init' \(known: .*\); init is a setting of prefix_tuning and prompt_tuning only$"),
    ("methods: [p_tuning]\nper_method:\n  p_tuning:\n    lr: {low: small, high: 1.0e-2}\n", "`low` must be a number, got 'small'"),
    ("- methods\n- {per_method: 1}\n", r"a search space \(keys methods, shared, per_method\) must be a YAML mapping"),
    ("methods: prompt_tuning\n", "methods: must be a list of method names, got 'prompt_tuning'"),
    ("methods: [{prompt_tuning: 1}]\n", "methods: must be a list of method names, got \\[\\{'prompt_tuning': 1\\}\\]"),
    ("methods: [prompt_tuning, prompt_tuning]\n", "methods: 'prompt_tuning' is listed twice"),
    ("methods: [prompt_tuning]\nshared: {num_virtual_tokens: {choices: [4, 8.5]}}\n",
     r"shared \(prompt_tuning\): `num_virtual_tokens` must be an integer, got 8.5"),
    ("methods: [prompt_tuning]\nshared: {num_virtual_tokens: {choices: [4, true]}}\n", "must be an integer, got True"),
    ("methods: [prompt_tuning]\nshared: {num_virtual_tokens: {choices: [a, b]}}\n", "must be an integer, got 'a'"),
    ("methods: [prompt_tuning]\nshared: {num_virtual_tokens: {choices: [4, 4.0]}}\n", "a choice is listed twice"),
    ("methods: [prompt_tuning]\nper_method: {prompt_tuning: {lr: {choices: [1, 1.0]}}}\n", "a choice is listed twice"),
    ("methods: [prompt_tuning]\nper_method: {prompt_tuning: {lr: {low: 0.001, high: 0.1, log: 'false'}}}\n",
     "`log` must be true or false, got 'false'"),
    ("methods: [prompt_tuning]\nper_method: {prompt_tuning: {lr: {low: 0.001, high: 0.1, choices: [0.5]}}}\n",
     "give one of \\{low, high\\}, \\{choices\\} or \\{value\\}, not choices, high, low"),
    ("methods: [prompt_tuning, p_tuning]\nshared: {num_virtual_tokens: {low: 1, high: 50}}\nper_method:\n"
     "  prompt_tuning: {num_virtual_tokens: {low: 10, high: 100}}\n  p_tuning: {num_virtual_tokens: {low: 5, high: 20}}\n",
     "'num_virtual_tokens' is never used: every method \\(prompt_tuning, p_tuning\\) gives its own"),
    ("methods: [prompt_tuning]\nshared: {num_virtual_token: {low: 4, high: 16}}\n",
     "'num_virtual_token' is never used: no setting of prompt_tuning has this name: did you mean "
     "'num_virtual_tokens'\\? \\(known: .*init_text.*\\)"),
    ("methods: [prompt_tuning]\nshared: [num_virtual_tokens]\n", "shared: must be a mapping of parameter names"),
    ("methods: [prompt_tuning]\nper_method:\n  prompt_tuning: [lr]\n", "per_method.prompt_tuning: must be a mapping"),
    ("methods: [prompt_tuning, full_ft]\n", "full_ft trains the whole model and leaves no prompt"),
    ("methods: [prompt_tuning]\nper_method:\n  lora: {r: {value: 4}}\n  p_tuning: {encoder: {value: mlp}}\n"
     "  prompt_tuning: {lr: {low: 0.01, high: 0.3}}\n",
     r"per_method: 'lora', 'p_tuning' not in `methods` \(add lora, p_tuning to `methods` to search them\)$"),
    ("methods: [prefix_tuning]\nper_method:\n  prefix_tunning: {lr: {low: 0.01, high: 0.3}}\n",
     "per_method: 'prefix_tunning' not in `methods`; did you mean 'prefix_tuning'\\?"),
    ("methods: [lora]\n",
     r"nothing to search: one method \(lora\) with no parameter declared; a space searches only what it declares"),
    ("methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n    lr: {low: 0.1, high: 0.1}\n    init: {choices: [random]}\n"
     "    num_virtual_tokens: {value: 8}\n", "nothing to search"),
    # values that pass one at a time and are refused together would fail every trial drawing them
    ("methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n    init: {value: text}\n    init_text: {value: ''}\n"
     "    lr: {low: 0.01, high: 0.3}\n", r"the fixed \{'init': 'text', 'init_text': ''\} is refused: .*needs"),
    ("methods: [prefix_tuning]\nper_method:\n  prefix_tuning:\n    init: {value: real_tokens}\n"
     "    prefix_projection: {choices: [true, false]}\n",
     r"prefix_projection=True with the fixed \{'init': 'real_tokens'\} is refused"),
    ("methods: [prefix_tuning]\nper_method:\n  prefix_tuning:\n    init: {choices: [real_tokens]}\n"
     "    prefix_projection: {value: true}\n    lr: {low: 0.01, high: 0.1}\n",
     r"the fixed \{'init': 'real_tokens', 'prefix_projection': True\} is refused"),
])
def test_bad_space_is_refused(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message):
        load_space(write_space(tmp_path, text))


def test_a_bad_row_of_any_split_is_named_before_any_trial(capsys, tmp_path, tiny_tasks):
    import shutil

    cards = tmp_path / "cards"
    shutil.copytree(tiny_tasks, cards)
    test_split = cards / "data" / "tiny_cls_test.jsonl"  # read by the winner's test score, after the search
    test_split.write_text(test_split.read_text() + '{"sentence": "no label here"}\n')
    code = main(["search", "--task", "tiny_cls", "--model", "minilm-l6", "--trials", "1", "--tasks-dir", str(cards),
                 "--results", str(tmp_path / "results")])
    assert code == 2 and "tiny_cls.yaml [label_field]: field 'label' is absent from" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_corrupt_study_database_is_named_as_the_studys_own(capsys, tmp_path, tiny_tasks):
    (tmp_path / "results" / "s").mkdir(parents=True)
    (tmp_path / "results" / "s" / "study.db").write_text("not a database\n")
    code = main(["search", "--task", "tiny_cls", "--model", "minilm-l6", "--trials", "1",
                 "--tasks-dir", str(tiny_tasks), "--results", str(tmp_path / "results"), "--study", "s"])
    err = capsys.readouterr().err
    assert code == 2 and "the study's database sqlite:///" in err and "cannot open it" in err and "--storage" not in err


@pytest.mark.parametrize("init", ["{choices: [random, class_labels]}", "{value: class_labels}", "class_labels"])
def test_class_label_init_is_refused_for_a_task_without_classes(capsys, tmp_path, tiny_tasks, init):
    space = write_space(tmp_path, f"methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n    init: {init}\n"
                                  "    lr: {low: 0.01, high: 0.1}\n")
    code = main(["search", "--task", "tiny_qa", "--model", "minilm-l6", "--trials", "1", "--space", str(space),
                 "--tasks-dir", str(tiny_tasks), "--results", str(tmp_path / "results")])
    assert code == 2 and ("prompt_tuning.init=class_labels needs a classification task; 'tiny_qa' is a qa task, with "
                          "no class labels to start from: remove prompt_tuning.init=class_labels from the space"
                          in capsys.readouterr().err)
    assert not (tmp_path / "results").exists()


def test_an_unknown_model_is_refused_before_a_study_exists(capsys, tmp_path, tiny_tasks):
    code = main(["search", "--task", "tiny_cls", "--model", str(tmp_path / "no-such-model"), "--trials", "1",
                 "--tasks-dir", str(tiny_tasks), "--results", str(tmp_path / "results")])
    assert code == 2 and "no-such-model': no such folder" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("flags, message", [
    (["--trials", "0"], "--trials must be 1 or more, got 0"),
    (["--timeout", "-5"], "--timeout must be a positive number of seconds, got -5.0"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds, got nan"),
    (["--trials", "2", "--workers", "0"], "--workers must be 1 or more, got 0"),
    (["--trials", "2", "--eval-size", "0"], "--eval-size must be 1 or more, got 0"),
    (["--trials", "2", "--monitor-size", "32", "--eval-size", "16"], "--monitor-size 32 is more than --eval-size 16"),
    (["--trials", "2", "--eval-every", "10", "--steps", "4"], "--eval-every 10 is more than --steps 4"),
    (["--trials", "2", "--task", ","], "--task ',' names no task"),
    (["--trials", "2", "--task", "tiny_cls,tiny_cls"], "--task: 'tiny_cls' is listed twice"),
    (["--trials", "2", "--storage", "foo"], "--storage foo: not a storage URL"),
    (["--trials", "2", "--storage", "foo://bar"], "--storage foo://bar: not a storage URL"),
    (["--trials", "2", "--storage", "journal:///tmp/j.log"], "not a storage URL (Can't load plugin: "
     "sqlalchemy.dialects:journal); studies are kept in a database: sqlite:///FILE, postgresql://… or mysql://…"),
    (["--trials", "2", "--storage", "sqlite:////no_such_folder/x.db"], "cannot open it"),
])
def test_search_flags_it_cannot_use_are_refused_before_anything_is_made(capsys, tmp_path, tiny_models, tiny_tasks,
                                                                         flags, message):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--tasks-dir", str(tiny_tasks),
            "--results", str(tmp_path / "results"), *flags]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "results").exists()


def test_an_encoder_is_refused_for_a_task_without_classes_before_a_study_exists(capsys, tmp_path, tiny_tasks):
    code = main(["search", "--task", "tiny_cls,tiny_qa", "--model", "minilm-l6", "--trials", "1",
                 "--tasks-dir", str(tiny_tasks), "--results", str(tmp_path / "results")])
    assert code == 2
    err = capsys.readouterr().err
    assert "model 'minilm-l6' / task 'tiny_qa': an encoder (classification head only) cannot answer qa tasks" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("named", [False, True])
def test_the_default_space_searches_a_task_without_classes_without_class_label_init(capsys, tmp_path, tiny_models,
                                                                                   tiny_tasks, named):
    from search.space import DEFAULT_SPACE

    # 5 trials: the four starting points (class-label init left out: three run) and two sampled configs
    space = ["--space", str(DEFAULT_SPACE)] if named else []  # the shipped file, named or not, is the default
    argv = ["search", "--task", "tiny_qa", "--model", tiny_models["gpt2"][0], "--trials", "5", "--steps", "2", *space,
            "--batch-size", "4", "--eval-every", "2", "--eval-size", "4", "--pruner", "none",
            "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks), "--study", "qa"]
    assert main(argv) == 0, capsys.readouterr().err
    assert ("left out of the default space: prompt_tuning.init=class_labels needs a classification task; 'tiny_qa' is "
            "a qa task" in capsys.readouterr().out)
    trials = _study(tmp_path, "qa").trials
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == 5
    inits = [t.params.get("prompt_tuning.init") for t in trials]
    assert "class_labels" not in inits and any(inits)
    assert _study(tmp_path, "qa").trials[0].distributions["prompt_tuning.init"].choices == ("random", "sampled_vocab",
                                                                                             "text")


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    # YAML reads 1e-3 as text; a range bound that spells a number is that number, typed by its setting
    space = load_space(write_space(tmp_path, """methods: [p_tuning]
shared:
  num_virtual_tokens: {low: 1, high: 1e2, log: true}
per_method:
  p_tuning:
    lr: {low: 1e-4, high: 3e-2, log: true}
"""))
    tokens, lr = space.params["p_tuning"]
    assert (tokens.kind, tokens.low, tokens.high) == ("int", 1, 100)
    assert (lr.kind, lr.low, lr.high) == ("float", 1e-4, 3e-2)


def test_default_space_samples_only_what_applies():
    space = load_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        method, settings, train = space.sample(trial)
        assert set(trial.params) - {"method", "num_virtual_tokens"} <= {k for k in trial.params if k.startswith(method)}
        assert "lr" in train and 1 <= settings["num_virtual_tokens"] <= 200
        study.tell(trial, 0.0)


def test_a_method_may_set_its_own_prompt_length_over_the_shared_one(tmp_path):
    space = load_space(write_space(tmp_path, """methods: [prompt_tuning, p_tuning, prefix_tuning]
shared:
  num_virtual_tokens: {low: 1, high: 200, log: true}
per_method:
  prompt_tuning:
    num_virtual_tokens: {low: 1, high: 4}
  p_tuning:
    num_virtual_tokens: {value: 10}
"""))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        method, settings, _ = space.sample(trial)
        seen.add(method)
        tokens = settings["num_virtual_tokens"]
        if method == "prompt_tuning":
            assert tokens <= 4 and trial.params["prompt_tuning.num_virtual_tokens"] == tokens
        elif method == "p_tuning":  # fixed: runs 10, and no sampled length is recorded for it
            assert tokens == 10 and not any("num_virtual_tokens" in key for key in trial.params)
        else:
            assert trial.params["num_virtual_tokens"] == tokens
        study.tell(trial, 0.0)
    assert seen == {"prompt_tuning", "p_tuning", "prefix_tuning"}


SPACE = """methods: [prompt_tuning, p_tuning]
shared:
  num_virtual_tokens: {low: 1, high: 8, log: true}
per_method:
  prompt_tuning:
    init: {choices: [random, sampled_vocab]}
    lr: {low: 1.0e-3, high: 3.0e-1, log: true}
  p_tuning:
    encoder: {choices: [mlp, lstm]}
    encoder_hidden_size: {value: 16}
    lr: {low: 1.0e-3, high: 3.0e-2, log: true}
"""


def _dashboard_get(url: str, path: str) -> dict:
    """A GET on optuna-dashboard's API (the JSON its pages are drawn from), served from `url`."""
    import io

    from optuna_dashboard import wsgi

    status = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO()}
    body = b"".join(wsgi(optuna.storages.RDBStorage(url))(environ, lambda code, headers, *exc: status.append(code)))
    assert status == ["200 OK"], body[:500]
    return json.loads(body)


def test_search_runs_resumes_and_exports(capsys, tmp_path, tiny_models, tiny_tasks, monkeypatch):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--trials", "4",
            "--space", str(write_space(tmp_path, SPACE)), "--steps", "4", "--batch-size", "4", "--eval-every", "2",
            "--monitor-size", "4", "--eval-size", "6", "--results", str(tmp_path / "results"),
            "--tasks-dir", str(tiny_tasks), "--study", "tiny"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "test split (scored once, for the winner): tiny_cls accuracy=" in out
    # the winner spelled as the tables spell a config
    assert re.search(r"^best: trial \d \(validation accuracy \d\.\d+\): "
                     r"(prompt|p)_tuning\[.*num_virtual_tokens=\d+,lr=[\d.e-]+\]$",
                     out, re.M), out
    folder = tmp_path / "results" / "tiny"
    assert f"best adapter: {folder / 'best_adapter' / 'tiny_cls'} (PEFT format; answer new inputs with " \
           f"`spbench predict {folder}`)" in out
    assert re.search(r"^trial 0 ", out, re.M)  # one process: no worker number
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'study.db'}")
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 4
    # known-good starting points run first, fitted to the narrowed space (class_labels is not offered)
    assert study.trials[0].params == {"method": "prompt_tuning", "num_virtual_tokens": 8,
                                      "prompt_tuning.init": "sampled_vocab", "prompt_tuning.lr": 0.03}
    assert study.trials[1].params["p_tuning.lr"] == pytest.approx(0.01)
    # each report to the pruner carries its standard error, on the 4 monitored examples (at most 0.25)
    errors = study.trials[0].user_attrs[REPORT_ERRORS_ATTR]
    assert set(errors) == {"2", "4"} and all(0 <= e <= 0.25 for e in errors.values())
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["method"] in ("prompt_tuning", "p_tuning") and "lr" in best["train"]
    assert set(best["test"]["tiny_cls"]) >= {"accuracy", "n"}  # test scored once, for the winner
    assert best["tasks_dirs"] == [str(tiny_tasks.resolve())]  # its cards came from a folder of their own
    # 6 validation examples: the winner's standard error is wide, and the trials inside it are named
    assert 0 < best["validation_standard_error"] <= 0.5 and isinstance(best["tied_trials"], list)
    for trial in study.trials:  # trials never saw the test split
        for record in trial.user_attrs.get("records", []):
            assert set(json.loads(Path(record).read_text())["scores"]) == {"validation"}
    assert (folder / "best_adapter" / "tiny_cls" / "adapter_config.json").exists()
    assert (folder / "trials.csv").exists() and (folder / "plots" / "optimization_history.png").exists()
    dashboard = _dashboard_get(f"sqlite:///{folder / 'study.db'}", "/api/studies")
    assert [s["study_name"] for s in dashboard["study_summaries"]] == ["tiny"]
    shown = _dashboard_get(f"sqlite:///{folder / 'study.db'}", f"/api/studies/{study._study_id}")["trials"]
    assert len(shown) == len(study.trials) and shown[0]["params"]

    def no_second_look(*args, **kwargs):
        raise AssertionError("the test split was scored again")

    monkeypatch.setattr("search.export.score_test_once", no_second_look)
    trials_before = len(study.trials)
    assert main(argv) == 0  # rerun: the study already holds 4 finished trials, nothing new runs
    assert len(study.trials) == trials_before
    out = capsys.readouterr().out
    assert "the study already holds 4 finished trials (--trials 4): none to run" in out
    assert "resumed, 4 finished trials\n" in out  # no "a line for each trial as it ends" where none will run
    assert yaml.safe_load((folder / "best.yaml").read_text())["test"] == best["test"]  # the same winner, scored once

    # a best.yaml left by another study of the same name (same trial number, other runs) is not trusted
    monkeypatch.setattr("search.export.score_test_once", lambda path, **kwargs: {"accuracy": 0.25, "n": 6})
    stale = {**yaml.safe_load((folder / "best.yaml").read_text()), "records": ["/elsewhere/record.json"]}
    (folder / "best.yaml").write_text(yaml.safe_dump(stale))
    assert main(argv) == 0
    assert yaml.safe_load((folder / "best.yaml").read_text())["test"] == {"tiny_cls": {"accuracy": 0.25, "n": 6}}

    # a machine of a shared study that did not run the winner: best.yaml without a test score, no crash
    (folder / "trials").rename(tmp_path / "elsewhere")
    assert main(argv) == 0
    here = yaml.safe_load((folder / "best.yaml").read_text())
    assert here["tasks"] == ["tiny_cls"] and here["test"].startswith(f"not scored here: trial {best['trial']} ran on")
    assert "its adapter and test score are there" in capsys.readouterr().out
    # and the trials' records, kept in the study, are read there without the files
    assert main(["results", str(tmp_path / "table"), "--storage", f"sqlite:///{folder / 'study.db'}",
                 "--study", "tiny", "--split", "validation"]) == 0
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert f"\n{len(complete)} runs finished, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "table" / "results_validation.csv").is_file()
    # trials have no test scores: without a --split, the table is of validation, and says so
    (tmp_path / "table" / "results_validation.csv").unlink()
    assert main(["results", str(tmp_path / "table"), "--storage", f"sqlite:///{folder / 'study.db'}",
                 "--study", "tiny"]) == 0
    assert f"none of the {len(complete)} runs has test scores" in capsys.readouterr().err
    assert (tmp_path / "table" / "results_validation.csv").is_file()
    # asked for test scores, it refuses, and writes no test table
    assert main(["results", str(tmp_path / "table"), "--storage", f"sqlite:///{folder / 'study.db'}",
                 "--study", "tiny", "--split", "test"]) == 2
    assert f"none of the {len(complete)} runs has test scores" in capsys.readouterr().err
    assert not (tmp_path / "table" / "results.csv").exists()
    assert main(["results", "--storage", f"sqlite:///{folder / 'study.db'}", "--study", "nonexistent"]) == 2
    assert "no study named 'nonexistent' in that storage (its studies: tiny)" in capsys.readouterr().err

    capsys.readouterr()
    code = main(["run", "--config", str(folder / "best.yaml"), "--results", str(tmp_path / "again"), "--quiet"])
    assert code == 0, capsys.readouterr().err


def test_a_study_resumed_with_another_space_says_so_and_refits_its_queued_points(capsys, tmp_path, tiny_models,
                                                                                  tiny_tasks):
    (tmp_path / "narrow").mkdir()
    narrow = write_space(tmp_path / "narrow", "methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n"
                                              "    lr: {low: 0.05, high: 0.1, log: true}\n"
                                              "    num_virtual_tokens: {value: 2}\n")
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--steps", "2", "--batch-size", "4",
            "--eval-every", "2", "--eval-size", "4", "--pruner", "none", "--results", str(tmp_path / "results"),
            "--tasks-dir", str(tiny_tasks), "--study", "moved"]
    assert main([*argv, "--trials", "1", "--space", str(write_space(tmp_path, SPACE))]) == 0, capsys.readouterr().err
    assert "sampled from another space" not in capsys.readouterr().out
    study = _study(tmp_path, "moved")
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    assert [point["method"] for point in queued] == ["p_tuning"]  # PEFT's P-tuning default, not run yet
    assert main([*argv, "--trials", "3", "--space", str(narrow)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # one trial ran; the other was a queued starting point, never sampled
    assert f"the study's 1 finished trial came from another space ({tmp_path / 'space.yaml'})" in out
    assert out.splitlines()[0].startswith("study moved on ")  # the study's line first, its notes after
    assert ("starting points queued under the earlier space: 0 queued again, fitted to this one; 1 dropped (their "
            "method or choice is not offered here)") in out
    trials = _study(tmp_path, "moved").trials
    assert main([*argv, "--trials", "1", "--space", str(write_space(tmp_path, SPACE))]) == 0  # nothing to run
    assert "another space" not in capsys.readouterr().out  # the space serves no trial: no word of it
    (withdrawn,) = [t for t in trials if t.user_attrs.get("not_run") == "queued under another search space"]
    assert withdrawn.system_attrs["fixed_params"]["method"] == "p_tuning"
    ran_since = [t for t in trials if t.number > 1 and t.state == optuna.trial.TrialState.COMPLETE]
    assert len(ran_since) == 2 and all(0.05 <= t.params["prompt_tuning.lr"] <= 0.1 for t in ran_since)


def test_a_budget_shorter_than_the_report_spacing_says_no_trial_can_be_pruned(capsys, tmp_path, tiny_models,
                                                                            tiny_tasks):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--steps", "2", "--batch-size", "4",
            "--eval-size", "4", "--trials", "1", "--space", str(write_space(tmp_path, SPACE)),
            "--tasks-dir", str(tiny_tasks)]
    assert main([*argv, "--results", str(tmp_path / "default")]) == 0, capsys.readouterr().err
    assert ("no pruning: a trial reports to the pruner every 20 steps (--eval-every) and trains 2 (--steps), so only "
            "at its end") in capsys.readouterr().out
    assert main([*argv, "--eval-every", "1", "--results", str(tmp_path / "spaced")]) == 0, capsys.readouterr().err
    assert "no pruning" not in capsys.readouterr().out
    # several tasks report at each one's end, and may be stopped at the first's
    several = [*argv, "--task", "tiny_cls,tiny_qa", "--results", str(tmp_path / "several")]
    assert main(several) == 0, capsys.readouterr().err
    assert "no pruning" not in capsys.readouterr().out


def test_a_study_resumed_with_other_choices_or_scale_is_refused_before_any_trial(capsys, tmp_path, tiny_models,
                                                                                tiny_tasks):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--steps", "2", "--batch-size", "4",
            "--eval-every", "2", "--eval-size", "4", "--pruner", "none", "--results", str(tmp_path / "results"),
            "--tasks-dir", str(tiny_tasks), "--study", "fixed"]
    assert main([*argv, "--trials", "2", "--space", str(write_space(tmp_path, SPACE))]) == 0, capsys.readouterr().err
    trials = len(_study(tmp_path, "fixed").trials)
    for change, clash in (
        (("[random, sampled_vocab]", "[random, sampled_vocab, text]"),
         "prompt_tuning.init: choices random, sampled_vocab in the study, choices random, sampled_vocab, text now"),
        (("high: 8, log: true", "high: 8, log: false"),
         "num_virtual_tokens: integers on a log scale in the study, integers on a linear scale now"),
    ):
        (tmp_path / "other").mkdir(exist_ok=True)
        other = write_space(tmp_path / "other", SPACE.replace(*change))
        assert main([*argv, "--trials", "4", "--space", str(other)]) == 2
        err = capsys.readouterr().err
        assert f"study 'fixed' cannot search this space ({other}): {clash}" in err
        assert len(_study(tmp_path, "fixed").trials) == trials  # nothing ran, nothing failed


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_search_draws_new_configs_not_the_last_invocations_again(capsys, tmp_path, tiny_models, tiny_tasks,
                                                                          sampler):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--space",
            str(write_space(tmp_path, SPACE)), "--steps", "2", "--batch-size", "4", "--eval-every", "2",
            "--eval-size", "4", "--pruner", "none", "--sampler", sampler, "--results", str(tmp_path / "results"),
            "--tasks-dir", str(tiny_tasks), "--study", "again"]
    assert main([*argv, "--trials", "4"]) == 0, capsys.readouterr().err  # two starting points, two drawn
    assert main([*argv, "--trials", "6"]) == 0, capsys.readouterr().err
    trials = _study(tmp_path, "again").trials
    first, resumed = [t.params for t in trials[2:4]], [t.params for t in trials[4:6]]
    assert len(resumed) == 2 and not any(params in first for params in resumed), (first, resumed)


def test_a_search_ended_by_its_timeout_says_so(capsys, tmp_path, tiny_models, tiny_tasks):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--space",
            str(write_space(tmp_path, SPACE)), "--steps", "2", "--batch-size", "4", "--eval-every", "2",
            "--eval-size", "4", "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks)]
    assert main([*argv, "--trials", "50", "--timeout", "0.5", "--study", "timed"]) == 0, capsys.readouterr().err
    assert "--timeout 0.5s reached: no new trial started after it" in capsys.readouterr().out
    assert main([*argv, "--trials", "1", "--timeout", "600", "--study", "counted"]) == 0, capsys.readouterr().err
    assert "--timeout" not in capsys.readouterr().out  # the trial budget ended this one


def test_multi_objective_search_has_a_pareto_front(capsys, tmp_path, tiny_models, tiny_tasks):
    argv = ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--trials", "3",
            "--objective", "score,trainable_params", "--space", str(write_space(tmp_path, SPACE)),
            "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--monitor-size", "4", "--eval-size", "4",
            "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks), "--study", "pareto"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "results" / "pareto" / "plots" / "pareto_front.png").exists()
    out = capsys.readouterr().out
    # a count of parameters said whole, as the trial lines say it (not 2.535e+04)
    front = re.search(r"Pareto front \(score, trainable_params\), (\d+) trials?: \d+ \(\d\.\d{4}, \d[\d,]*\)", out)
    assert front and "e+" not in out
    best = yaml.safe_load((tmp_path / "results" / "pareto" / "best.yaml").read_text())
    assert best["objectives"] == ["score", "trainable_params"] and len(best["validation_values"]) == 2
    assert len(best["pareto_front"]) == int(front.group(1)) - 1  # the front's other trade-offs (see below)
    header = (tmp_path / "results" / "pareto" / "trials.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["number", "score", "trainable_params"]
    with open(tmp_path / "results" / "pareto" / "trials.csv", newline="") as table:
        assert all(float(row["duration_s"]) > 0 for row in csv.DictReader(table))  # seconds, a number


def test_best_yaml_lists_the_fronts_other_trade_offs_each_runnable(tmp_path):
    from bench.train import TrainSettings
    from search.export import write_best
    from search.repeats import CONFIG_ATTR

    study = optuna.create_study(directions=["maximize", "minimize"])
    # (score, trainable params): the last is dominated by the first; 1 and 2 trade score for size
    for number, values in enumerate([(0.9, 1000), (0.8, 100), (0.7, 10), (0.6, 1000)]):
        config = {"method": "prompt_tuning", "settings": {"num_virtual_tokens": 4 + number}, "train": {"lr": 0.1}}
        study.add_trial(optuna.trial.create_trial(values=list(values), user_attrs={
            CONFIG_ATTR: config, "records": [str(tmp_path / "elsewhere" / "record.json")], "host": "box-2"}))
    best = yaml.safe_load(write_best(study, tmp_path, model="m", train_defaults=TrainSettings()).read_text())
    assert best["trial"] == 0 and best["validation_values"] == [0.9, 1000]
    front = best["pareto_front"]
    assert [(point["trial"], point["validation_values"]) for point in front] == [(1, [0.8, 100]), (2, [0.7, 10])]
    assert [point["settings"]["num_virtual_tokens"] for point in front] == [5, 6]
    assert all(point["method"] == "prompt_tuning" and point["train"]["lr"] == 0.1
               and point["train"]["steps"] == TrainSettings().steps for point in front)


def test_a_search_whose_trials_keep_failing_stops_and_keeps_what_finished(capsys, tmp_path, tiny_models,
                                                                          tiny_tasks, monkeypatch):
    import search.objective

    real_run = search.objective.execute_run

    def run_failing_from_trial_2(spec, **kwargs):
        if not spec.results_dir.name.endswith(("_0000", "_0001")):
            raise OSError("No space left on device")
        return real_run(spec, **kwargs)

    monkeypatch.setattr(search.objective, "execute_run", run_failing_from_trial_2)
    code = main(_search_argv(tmp_path, tiny_models, tiny_tasks, trials=6, study="failing", steps=2))
    captured = capsys.readouterr()
    assert code == 2 and "the last 5 trials failed; trials 2, 3, 4, 5, 6: OSError: No space left on device" in captured.err
    assert "failed (not counted): trial 6" in captured.out
    assert _states(_study(tmp_path, "failing")) == ["COMPLETE"] * 2 + ["FAIL"] * 5
    assert yaml.safe_load((tmp_path / "results" / "failing" / "best.yaml").read_text())["trial"] in (0, 1)


def test_a_space_whose_every_prompt_is_too_long_for_the_model_stops_at_its_first_trial(capsys, tmp_path,
                                                                                       tiny_models, tiny_tasks):
    from search.space import load_space

    argv = _search_argv(tmp_path, tiny_models, tiny_tasks, trials=4, study="long", steps=2)
    (tmp_path / "long").mkdir()
    too_long = write_space(tmp_path / "long", SPACE.replace("{low: 1, high: 8, log: true}", "{low: 600, high: 700}"))
    argv[argv.index("--space") + 1] = str(too_long)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (f"{too_long}: no prompt length it offers fits task 'tiny_cls' on '{tiny_models['gpt2'][0]}': its "
            "shortest is 600 virtual tokens, and at most 479 fit (trial 0: ") in err
    assert "exceed the 512 positions" in err
    assert _states(_study(tmp_path, "long")).count("FAIL") == 1  # not five failures in a row first
    # where some length fits, a trial that sampled one too long fails alone and the search goes on
    assert load_space(too_long).shortest_prompt() == 600 and load_space(tmp_path / "space.yaml").shortest_prompt() == 1


def test_an_interrupted_search_writes_out_what_finished_and_resumes(capsys, tmp_path, tiny_models, tiny_tasks,
                                                                   monkeypatch):
    import search.objective

    real_run = search.objective.execute_run

    def run_interrupted_at_trial_2(spec, **kwargs):
        if spec.results_dir.name.endswith("_0002"):
            raise KeyboardInterrupt  # what Ctrl-C raises in the training loop
        return real_run(spec, **kwargs)

    monkeypatch.setattr(search.objective, "execute_run", run_interrupted_at_trial_2)
    optuna_log = io.StringIO()  # Optuna's own handler writes to the stderr it found at import, not capsys's
    handler = logging.StreamHandler(optuna_log)
    logging.getLogger("optuna").addHandler(handler)
    argv = _search_argv(tmp_path, tiny_models, tiny_tasks, trials=4, study="interrupted", steps=2)
    try:
        code = main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped `spbench search` as a traceback")
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    captured = capsys.readouterr()
    assert code == 130
    assert "interrupted: writing out the 2 finished trials first" in captured.err
    assert "spbench search: interrupted; finished trials are kept" in captured.err
    # Optuna's two lines of the interrupted trial (one "failed with value None") are left to the search's own
    assert "Trial 2" not in optuna_log.getvalue() and "Traceback" not in optuna_log.getvalue()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    assert "failed (not counted): trial 2" in captured.out
    assert "interrupted (Ctrl-C, SIGINT or SIGTERM, or its search command was killed)" in captured.out
    folder = tmp_path / "results" / "interrupted"
    assert yaml.safe_load((folder / "best.yaml").read_text())["trial"] in (0, 1)
    assert (folder / "trials.csv").exists()

    monkeypatch.setattr(search.objective, "execute_run", real_run)
    assert main(argv) == 0, capsys.readouterr().err
    assert _states(_study(tmp_path, "interrupted")) == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]


def _search_argv(tmp_path, tiny_models, tiny_tasks, *, trials, study, workers=1, steps=6):
    return ["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--trials", str(trials),
            "--space", str(write_space(tmp_path, SPACE)), "--steps", str(steps), "--batch-size", "4",
            "--eval-every", "2", "--monitor-size", "4", "--eval-size", "4", "--pruner", "none",
            "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks), "--study", study,
            "--workers", str(workers)]


def _study(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'results' / name / 'study.db'}")


def _states(study):
    return [t.state.name for t in study.trials]


def poll_states(load) -> list[str]:
    """Trial states of a study another process may still be creating (then: none yet)."""
    try:
        return _states(load())
    except (KeyError, sqlalchemy.exc.SQLAlchemyError):
        return []


def test_two_local_workers_complete_exactly_the_budget(capsys, tmp_path, tiny_models, tiny_tasks):
    from search.study import WORKER_ATTR

    # trials long enough that the second worker, seconds in starting, has some left to run
    assert main(_search_argv(tmp_path, tiny_models, tiny_tasks, trials=6, study="workers", workers=2, steps=30)) == 0
    study = _study(tmp_path, "workers")
    assert _states(study).count("COMPLETE") == 6
    params = [tuple(sorted(t.params.items())) for t in study.trials if t.state.name == "COMPLETE"]
    assert len({t.number for t in study.trials}) == len(study.trials)  # no trial recorded twice
    assert len(params) == 6
    trained = [t for t in study.trials if t.state.name == "COMPLETE" and WORKER_ATTR in t.user_attrs]
    assert len({t.user_attrs[WORKER_ATTR] for t in trained}) == 2  # each worker ran trials of its own
    # the command's own trials are worker 0's (the spawned worker writes past the capture)
    lines = [line for line in capsys.readouterr().out.splitlines() if " complete: " in line]
    assert lines and all(line.startswith("worker 0: trial ") for line in lines)


def test_search_killed_with_sigkill_resumes(tmp_path, tiny_models, tiny_tasks, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench.study_storage import running_without_heartbeat

    env = {**os.environ, "SPBENCH_HEARTBEAT_SECONDS": "1"}
    argv = [sys.executable, "-m", "bench.cli", *_search_argv(tmp_path, tiny_models, tiny_tasks, trials=4,
                                                              study="killed", steps=12)]
    root = Path(__file__).parent.parent
    log = tmp_path / "first.log"
    with log.open("w") as output:
        first = subprocess.Popen(argv, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    db = tmp_path / "results" / "killed" / "study.db"
    deadline = time.time() + 180
    while time.time() < deadline:  # kill once one trial is done and the next one is running
        assert first.poll() is None, f"the search ended before it could be killed:\n{log.read_text()}"
        states = poll_states(lambda: _study(tmp_path, "killed")) if db.exists() else []
        # with its first heartbeat sent (a trial killed before it is another case, tested with the workers)
        if "COMPLETE" in states and states[-1] == "RUNNING" and not running_without_heartbeat(
                _study(tmp_path, "killed")):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"no trial finished with the next one running within 180 s:\n{log.read_text()}")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    finished_before = {t.number: t.values for t in _study(tmp_path, "killed").trials if t.state.name == "COMPLETE"}
    [killed] = [t.number for t in _study(tmp_path, "killed").trials if t.state.name == "RUNNING"]
    time.sleep(4)  # past the heartbeat grace period: the killed trial is now stale

    second = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    study = _study(tmp_path, "killed")
    assert _states(study).count("COMPLETE") == 4
    assert "FAIL" in _states(study)  # the trial that was running when the worker died
    assert "failed (not counted): trial" in second.stdout and "killed, or out of memory" in second.stdout
    # said as the study opens, where a command that ran no trial would count it as running
    # a starting point the killed trial held runs again, and the line says so
    again = "; its starting point queued again" if "fixed_params" in study.trials[killed].system_attrs else ""
    assert (f"resumed, {len(finished_before)} finished trial{'s' if len(finished_before) > 1 else ''} (trial {killed} "
            f"left running by a command that stopped without a word, marked failed and not counted{again})"
            ) in second.stdout
    for number, values in finished_before.items():  # nothing finished was lost or redone
        assert study.trials[number].values == values


RACE_LOSSES = {  # what the loser of the race to set up a fresh database sees, by where it lost
    "create table": sqlalchemy.exc.OperationalError(
        "CREATE TABLE studies", {}, Exception("table studies already exists")),
    "schema version row": sqlalchemy.exc.IntegrityError(
        "INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed: alembic_version.version_num")),
}


@pytest.mark.parametrize("lost_at", RACE_LOSSES)
def test_workers_racing_to_create_the_tables_both_get_the_storage(tmp_path, monkeypatch, lost_at):
    """The loser of the race to set up a fresh database looks again instead of failing."""
    from bench import study_storage as storage_module

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RACE_LOSSES[lost_at]
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(storage_module.time, "sleep", lambda seconds: None)
    storage = storage_module.open_storage(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert isinstance(storage, real) and len(calls) == 2

    def broken(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("CONNECT", {}, Exception("password authentication failed"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(ValueError, match=r"other.db: cannot open it \(.*password authentication failed\)"):
        storage_module.open_storage(f"sqlite:///{tmp_path / 'other.db'}")  # another error is not a lost race


def finished_study(tmp_path, scores: list[float], *, metric: str = "accuracy", n: int = 400) -> optuna.Study:
    """A study of completed trials, each with a run record as the objective leaves one."""
    study = optuna.create_study(direction="maximize")
    for number, score in enumerate(scores):
        path = tmp_path / f"trial_{number}" / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"task": {"primary_metric": metric},
                                    "scores": {"validation": {metric: score, "n": n}}}))
        study.add_trial(optuna.trial.create_trial(value=score, user_attrs={"records": [str(path)]}))
    return study


def test_trials_within_one_standard_error_of_the_best_are_named(tmp_path):
    from search.summary import summary
    from search.winner import statistical_ties

    # best 0.80 on 400 examples: standard error about sqrt(0.8 * 0.2 / 400) = 0.02, so 0.79 and 0.78
    # tie, 0.77 does not
    study = finished_study(tmp_path, [0.77, 0.80, 0.79, 0.60, 0.78])
    error, n, tied = statistical_ties(study)
    assert (error, n) == (pytest.approx(0.02, abs=1e-4), 400)
    assert [t.number for t in tied] == [2, 4]
    assert "2 other trials within one standard error (0.020, n=400 validation examples) of the best: " \
           "2 (0.7900), 4 (0.7800)" in summary(study)


def test_no_ties_are_claimed_where_the_score_is_not_a_proportion(tmp_path):
    from search.summary import summary
    from search.winner import statistical_ties

    alone = finished_study(tmp_path / "accuracy", [0.80, 0.70])
    assert statistical_ties(alone)[2] == [] and "no other trial within one standard error" in summary(alone)
    perfect = finished_study(tmp_path / "perfect", [1.0, 0.9], n=10)
    assert statistical_ties(perfect)[0] > 0.05  # 10 of 10 right is not certainty
    # ROUGE is not a mean of 0/1 outcomes: a binomial standard error would be made up
    rouge = finished_study(tmp_path / "rouge", [0.30, 0.29], metric="rougeL")
    assert statistical_ties(rouge) is None and "standard error" not in summary(rouge)


def test_a_study_refuses_a_rerun_that_would_mix_in_other_trials():
    from search.study import claim_study

    study = optuna.create_study(directions=["maximize"])
    definition = {"tasks": ["sst2"], "model": "minilm-l6", "objective": ["score"], "steps": 100}
    claim_study(study, definition, directions=["maximize"])
    study.add_trial(optuna.trial.create_trial(value=0.5))
    claim_study(study, dict(definition), directions=["maximize"])  # the same command resumes
    with pytest.raises(ValueError, match=r"holds trials of other settings \(--model 'minilm-l6' -> 'gpt2'; "
                                         r"--steps 100 -> 50\): pass another --study name"):
        claim_study(study, {**definition, "model": "gpt2", "steps": 50}, directions=["maximize"])
    # a study recorded before the seed counted keeps its first resume's seed (its trials' is unknown)
    claim_study(study, {**definition, "seed": 3}, directions=["maximize"])
    with pytest.raises(ValueError, match=r"--seed 3 -> 1"):
        claim_study(study, {**definition, "seed": 1}, directions=["maximize"])
    # another objective would fail every trial: refused before any runs
    with pytest.raises(ValueError, match=r"was made with --objective score, this command asks score,trainable_params: "
                                         r"pass another --study name"):
        claim_study(study, {**definition, "objective": ["score", "trainable_params"]},
                    directions=["maximize", "minimize"])


def test_a_study_without_a_definition_is_claimed_if_a_search_made_it_and_refused_if_not():
    from search.study import CONFIG_ATTR, claim_study

    definition = {"tasks": ["sst2"], "model": "minilm-l6", "objective": ["score"], "steps": 100,
                  "cards": {"sst2": {"version": 1}}}
    suite = optuna.create_study(study_name="suite-smoke", directions=["maximize"])  # a shared suite's runs
    suite.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"run_id": "sst2__m__lora"}))
    with pytest.raises(ValueError, match="'suite-smoke' holds 1 trial, none of them a search's"):
        claim_study(suite, definition, directions=["maximize"])
    old = optuna.create_study(directions=["maximize"])  # a search from before studies kept their definition
    old.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={CONFIG_ATTR: {"method": "prompt_tuning"}}))
    claim_study(old, definition, directions=["maximize"])  # resumed, and from now on checked
    with pytest.raises(ValueError, match=r"\(--task \['sst2'\] -> \['rte'\]\): pass"):  # the cards' change unsaid
        claim_study(old, {**definition, "tasks": ["rte"], "cards": {"rte": {"version": 1}}}, directions=["maximize"])


def test_a_shared_study_a_search_refuses_leaves_no_results_folder(capsys, tmp_path, tiny_models, tiny_tasks):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    suite = optuna.create_study(study_name="suite-smoke", storage=url, directions=["maximize"])
    suite.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"run_id": "sst2__m__lora"}))
    code = main(["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--tasks-dir", str(tiny_tasks),
                 "--trials", "1", "--storage", url, "--study", "suite-smoke", "--results", str(tmp_path / "results")])
    assert code == 2 and "holds 1 trial, none of them a search's" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    (tmp_path / "results").write_text("")  # a folder that cannot be made: said before a shared study is made
    code = main(["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--tasks-dir", str(tiny_tasks),
                 "--trials", "1", "--storage", url, "--study", "new", "--results", str(tmp_path / "results")])
    results = tmp_path / "results"
    err = capsys.readouterr().err
    assert code == 2 and f"results folder {results / 'new'}: {results} is a file, not a folder" in err
    assert optuna.get_all_study_names(url) == ["suite-smoke"]


def test_a_study_of_the_shipped_card_is_not_resumed_by_a_users_card_of_its_name(tmp_path, monkeypatch, capsys):
    """Its trials, and a repeat's result, would be the shipped card's."""
    from bench.cli import main
    from search import workers
    from tasks.registry import SHIPPED_CARDS

    monkeypatch.setattr(workers, "run_workers", lambda *args, **kwargs: None)  # the study is all this needs
    command = ["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--results", str(tmp_path)]
    assert main(command) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "sst2.yaml").write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\n"
                                                 "template: 'Text: {sentence}'\n")
    capsys.readouterr()
    assert main([*command, "--tasks-dir", str(tmp_path / "mine")]) != 0
    assert ("holds trials of other settings (--task (the cards the names find, and their versions) "
            "{'sst2': {'version': 1, 'card': 'cards/sst2.yaml'}} -> {'sst2': {'version': 1, 'card': 'mine/sst2.yaml'}})"
            in capsys.readouterr().err)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("in_the_background", [False, True])
def test_a_worker_is_interrupted_when_its_command_is_killed(tmp_path, in_the_background):
    """SIGKILL gives a command no chance to pass the signal on: its workers stop on their own, as at a
    Ctrl-C, rather than train on unseen; also a command started in a script's background (`cmd &`),
    which it and its workers start with SIGINT ignored."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "command.py"
    script.write_text(
        "import multiprocessing, os, sys, time\n"
        "from search.workers import stop_with_parent\n"
        "def worker(parent, path):\n"
        "    stop_with_parent(parent)\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    try:\n"
        "        time.sleep(60)\n"
        "    except KeyboardInterrupt:\n"
        "        open(path + '.interrupted', 'w').close()\n"
        "if __name__ == '__main__':\n"
        "    process = multiprocessing.get_context('spawn').Process(target=worker, args=(os.getpid(), sys.argv[1]))\n"
        "    process.start()\n"
        "    process.join()\n")
    started = tmp_path / "worker"
    root = Path(__file__).parent.parent
    ignoring_ctrl_c = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if in_the_background else None
    command = subprocess.Popen([sys.executable, str(script), str(started)], env={**os.environ, "PYTHONPATH": str(root)},
                               preexec_fn=ignoring_ctrl_c)
    deadline = time.time() + 60
    while not started.exists() or not started.read_text():
        assert time.time() < deadline and command.poll() is None, "the worker did not start"
        time.sleep(0.1)
    command.kill()
    command.wait()
    while not Path(f"{started}.interrupted").exists():
        assert time.time() < deadline + 10, "the worker went on after its command was killed"
        time.sleep(0.1)


@pytest.mark.parametrize("exitcode, name", [(-signal.SIGKILL, "SIGKILL"), (128 + signal.SIGTERM, "SIGTERM")])
def test_a_killed_worker_is_said_its_trial_failed_at_once_and_its_slot_run_here(monkeypatch, capsys, exitcode, name):
    """SIGKILL from the kernel (out of memory), or SIGTERM from a memory guard, which the worker takes as
    a Ctrl-C and exits with 128 + 15: either way sent to it alone, and its command goes on without it."""
    from search import workers
    from search.study import HOST_ATTR, WORKER_ATTR

    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.3})  # a starting point the killed worker had taken
    stranded = study.ask()
    elsewhere = study.ask()  # another process's, on this machine or one of the same host name: not this one's

    class Killed:  # a worker process the kernel killed (out of memory, say), or a memory guard stopped
        def __init__(self, target, args):
            (job,) = args
            self.worker = job.worker_id  # the id its trials carry

        def start(self):
            stranded.set_user_attr(WORKER_ATTR, self.worker)
            stranded.set_user_attr(HOST_ATTR, "this-machine")

        def join(self, timeout=None):
            pass

    Killed.exitcode = exitcode
    elsewhere.set_user_attr(WORKER_ATTR, "another-worker")
    elsewhere.set_user_attr(HOST_ATTR, "this-machine")
    optimized = []
    monkeypatch.setattr(workers.multiprocessing, "get_context", lambda method: type("Context", (), {"Process": Killed}))
    threads = {"now": 4}  # a 4-core machine's, as PyTorch would set them
    monkeypatch.setattr("torch.get_num_threads", lambda: threads["now"])
    monkeypatch.setattr("torch.set_num_threads", lambda count: threads.update(now=count))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    # finds no room; the threads each call trains on
    monkeypatch.setattr(workers, "optimize", lambda *args, **kwargs: optimized.append(threads["now"]))
    workers.run_workers(study, "sqlite://", None, strategy=None, workers=2, n_trials=1, timeout=None)
    err = capsys.readouterr().err
    assert f"worker 1 was killed ({name}): a trial it was running is not counted (trial 0, marked failed)" in err
    assert [t.state.name for t in study.trials[:2]] == ["FAIL", "RUNNING"]
    assert study.trials[2].state.name == "WAITING"  # the starting point, queued again
    assert study.trials[2].system_attrs["fixed_params"] == {"lr": 0.3}
    # the budget is short by the failed trial: this process runs it rather than leave it to a rerun, on
    # the share of the cores it had beside the killed worker (its time figures compare with the others')
    assert optimized == [2, 2] and "running the trials the budget still lacks in this process" in err


def test_a_rerun_takes_over_the_slot_of_a_killed_process_trial(tmp_path, monkeypatch):
    from bench import study_storage as storage_module
    from search.workers import optimize

    monkeypatch.setattr(storage_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(storage_module, "GRACE_SECONDS", 2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage_module.open_storage(url), direction="maximize")
    orphan = study.ask()  # a killed process's trial: one heartbeat, then silence
    study._storage.record_heartbeat(orphan._trial_id)
    optimize(study, lambda trial: 1.0, n_trials=3, timeout=60)
    states = [t.state.name for t in study.trials]
    # the orphan held the last slot until its heartbeat went stale; then a trial ran in its place
    assert states[0] == "FAIL" and states.count("COMPLETE") == 3


def test_a_killed_process_starting_point_is_queued_again(tmp_path, monkeypatch):
    """A starting point is queued once; if the process running it is killed, it goes back in the queue."""
    import time as clock

    from bench import study_storage as storage_module
    from search.cli import _queued_again
    from search.starting_points import REQUEUED_ATTR, REQUEUES, is_requeued, requeue_starting_point

    monkeypatch.setattr(storage_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(storage_module, "GRACE_SECONDS", 1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = storage_module.open_storage(url, on_stale=requeue_starting_point)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.enqueue_trial({"lr": 0.3})
    study.enqueue_trial({"lr": 0.01})
    killed = study.ask()  # takes the first point, beats once, then its process dies
    killed.suggest_float("lr", 1e-4, 1.0, log=True)
    study._storage.record_heartbeat(killed._trial_id)
    clock.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    waiting = [t.system_attrs["fixed_params"] for t in study.trials if t.state.name == "WAITING"]
    assert study.trials[0].state.name == "FAIL" and waiting == [{"lr": 0.01}, {"lr": 0.3}]
    # a point whose every run gets its process killed (out of memory, say) is queued twice, not for ever
    killed_again = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"lr": 0.3},
                                             distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0)},
                                             user_attrs={REQUEUED_ATTR: REQUEUES},
                                             system_attrs={"fixed_params": {"lr": 0.3}})
    before = len(study.trials)
    requeue_starting_point(study, killed_again)
    assert len(study.trials) == before
    # the next command's first line says which killed trials run again
    assert is_requeued(study.trials[0]) and not is_requeued(killed_again)
    assert _queued_again([0], [0]) == "; its starting point queued again"
    assert _queued_again([0, 3], [0, 3]) == "; their starting points queued again"
    assert _queued_again([0, 3, 5], [3]) == "; the starting point of trial 3 queued again"
    assert _queued_again([4], []) == ""


def test_a_config_the_method_refuses_fails_its_trial_in_one_line(capsys, tmp_path, tiny_models, tiny_tasks):
    (tmp_path / "mine").mkdir()  # _search_argv writes its own space.yaml in tmp_path
    space = write_space(tmp_path / "mine",
                        "methods: [prompt_tuning]\nshared: {num_virtual_tokens: {low: 600, high: 900}}\n")
    optuna_log = io.StringIO()
    handler = logging.StreamHandler(optuna_log)
    logging.getLogger("optuna").addHandler(handler)
    try:
        code = main(_search_argv(tmp_path, tiny_models, tiny_tasks, trials=2, study="too_long", steps=2)
                    + ["--space", str(space)])
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert code == 2 and "exceed the 512 positions" in capsys.readouterr().err  # five in a row stop the search
    assert "Trial 0 failed" in optuna_log.getvalue() and "Traceback" not in optuna_log.getvalue()


def test_a_budget_shorter_than_the_default_report_spacing_is_not_refused():
    from types import SimpleNamespace

    from search.request import EVAL_EVERY, _refuse_unusable_flags, _trial_settings

    args = SimpleNamespace(trials=1, timeout=None, workers=1, steps=EVAL_EVERY // 2, batch_size=4, eval_every=None,
                           eval_size=16, monitor_size=None, prune_margin=2.0, seed=0, gradient_checkpointing=False,
                           pruner="hyperband", objective="score", task="sst2")
    _refuse_unusable_flags(args)
    # --eval-every not given: reports at the end only, as before
    assert _trial_settings(args).eval_every == EVAL_EVERY
    with pytest.raises(ValueError, match="--eval-every 30 is more than --steps 10"):
        _refuse_unusable_flags(SimpleNamespace(**{**vars(args), "eval_every": 30}))
    # where nothing is pruned, reports only at the end are what was asked for
    _refuse_unusable_flags(SimpleNamespace(**{**vars(args), "eval_every": 30, "pruner": "none"}))
    _refuse_unusable_flags(SimpleNamespace(**{**vars(args), "eval_every": 30, "objective": "score,train_flops"}))
    _refuse_unusable_flags(SimpleNamespace(**{**vars(args), "eval_every": 30, "task": "sst2,rte"}))


def test_a_text_prompt_starts_from_the_same_text_in_a_search_as_in_a_suite(tmp_path):
    # a search's winner, rerun in a suite, must be the same run
    from bench.methods.prompt_tuning import DEFAULT_INIT_TEXT
    from bench.suite import load_suite

    space_file = tmp_path / "space.yaml"
    space_file.write_text("methods: [prompt_tuning]\nper_method:\n  prompt_tuning:\n    init: {value: text}\n"
                          "    num_virtual_tokens: {low: 1, high: 4}\n")
    study = optuna.create_study()
    _, settings, _ = load_space(space_file).sample(study.ask())
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: t\nmodels: [minilm-l6]\ntasks: {sst2: {steps: 1}}\n"
                     "methods: [{method: prompt_tuning, settings: {init: text}}]\n")
    (run,) = load_suite(str(suite), results_dir=tmp_path).runs
    assert settings["init_text"] == run.spec.method_settings["init_text"] == DEFAULT_INIT_TEXT


def test_a_search_given_relative_folders_hands_back_a_config_that_runs_from_anywhere(capsys, tmp_path, tiny_models,
                                                                                      tiny_tasks, monkeypatch):
    # a model folder and a task card given as relative paths: the study is named after the card,
    # lives under --results, and its best.yaml reruns from another directory
    import shutil

    shutil.copytree(tiny_models["gpt2"][0], tmp_path / "work" / "models" / "tiny-gpt2")
    shutil.copytree(tiny_tasks, tmp_path / "work" / "cards")
    monkeypatch.chdir(tmp_path / "work")
    argv = ["search", "--task", "cards/tiny_cls.yaml", "--model", "models/tiny-gpt2", "--trials", "1",
            "--space", str(write_space(tmp_path, SPACE)), "--steps", "2", "--batch-size", "4", "--eval-every", "2",
            "--eval-size", "4", "--results", "results"]
    assert main(argv) == 0, capsys.readouterr().err
    folder = tmp_path / "work" / "results" / "tiny_cls__tiny-gpt2"
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["model"] == str(tmp_path / "work" / "models" / "tiny-gpt2")
    assert best["tasks_dirs"] == [str(tmp_path / "work" / "cards")]
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(folder / "best_adapter")
    (folder / "best.yaml").unlink()
    # the same study ended from another folder (another machine's, on a shared file system): the
    # winner's adapter is found beside its record, not where its command's folder was
    absolute = [str(tmp_path / "work" / a) if a in ("cards/tiny_cls.yaml", "models/tiny-gpt2", "results") else a
                for a in argv]
    assert main(absolute) == 0, capsys.readouterr().err
    assert (folder / "best_adapter" / "tiny_cls" / "adapter_config.json").is_file()
    capsys.readouterr()
    assert main(["run", "--config", str(folder / "best.yaml"), "--results", str(tmp_path / "again"),
                 "--quiet"]) == 0, capsys.readouterr().err
    # the same command with absolute paths resumes the same study
    assert main([*absolute[:absolute.index("--trials") + 1], "2", *absolute[absolute.index("--trials") + 2:]]) == 0, \
        capsys.readouterr().err
    assert len(_study(tmp_path / "work", "tiny_cls__tiny-gpt2").trials) >= 2


def test_a_multi_task_best_config_says_what_its_score_is_made_of(capsys, tmp_path, tiny_models, tiny_tasks):
    argv = ["search", "--task", "tiny_cls,tiny_qa", "--model", tiny_models["gpt2"][0], "--trials", "1",
            "--space", str(write_space(tmp_path, SPACE)), "--steps", "2", "--batch-size", "4", "--eval-every", "2",
            "--eval-size", "4", "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks),
            "--study", "both"]
    assert main(argv) == 0, capsys.readouterr().err
    best = yaml.safe_load((tmp_path / "results" / "both" / "best.yaml").read_text())
    by_task = best["validation_by_task"]
    assert set(by_task) == {"tiny_cls", "tiny_qa"} == set(best["test"])
    # no full fine-tuning record: the tasks' raw scores were averaged, and best.yaml says so
    assert best["relative_to"].startswith("none") and best["validation_values"] == [pytest.approx(
        (by_task["tiny_cls"] + by_task["tiny_qa"]) / 2)]


def test_a_card_given_by_file_cannot_answer_for_another_task_of_its_name(capsys, tmp_path, tiny_models, tiny_tasks):
    # its folder joins the card folders, where its name would find it instead of the task given by name
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "copy.yaml").write_text((tiny_tasks / "tiny_cls.yaml").read_text().replace(
        "source: {local: data}", f"source: {{local: {tiny_tasks / 'data'}}}"))
    code = main(["search", "--task", f"tiny_cls,{tmp_path / 'mine' / 'copy.yaml'}", "--model", tiny_models["gpt2"][0],
                 "--trials", "1", "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks)])
    assert code == 2 and "--task (the names the cards declare): 'tiny_cls' is listed twice" in capsys.readouterr().err
    (tmp_path / "mine" / "other.yaml").write_text((tmp_path / "mine" / "copy.yaml").read_text().replace(
        "name: tiny_cls", "name: tiny_other"))
    (tmp_path / "mine" / "copy.yaml").rename(tmp_path / "mine" / "copy.yml")  # still declares tiny_cls
    code = main(["search", "--task", f"tiny_cls,{tmp_path / 'mine' / 'other.yaml'}", "--model", tiny_models["gpt2"][0],
                 "--trials", "1", "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks)])
    assert code == 2 and (f"--task tiny_cls: with the folders of the cards given as files, that name finds "
                          f"{tmp_path / 'mine' / 'copy.yml'}, not {tiny_tasks / 'tiny_cls.yaml'}") in \
        capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_value_refused_for_several_tasks_names_them_all(tiny_tasks):
    from search.space import load_space
    from search.space_checks import _refused_values
    from tasks import load_task

    cards = [load_task(name, tasks_dirs=(str(tiny_tasks),)).card for name in ("tiny_qa", "tiny_sum", "tiny_cls")]
    ((method, name, value, why),) = _refused_values(load_space(None), cards)
    assert (method, name, value) == ("prompt_tuning", "init", "class_labels")
    assert "'tiny_qa' is a qa task" in why and why.endswith("(and tiny_sum)")
