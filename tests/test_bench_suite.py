"""Suites: expansion, resume after a kill, failures recorded without stopping the suite."""

import dataclasses
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run_spec import RunSpec
from bench.suite import SHIPPED_SUITES, SuiteError, load_suite
from tasks.notices import UserNotice


def write_suite(folder: Path, tiny_models, tiny_tasks, *, failing: bool = False) -> Path:
    models = [tiny_models["gpt2"][0]] + ([tiny_models["t5"][0]] if failing else [])
    methods = ["{method: prompt_tuning, sweep: {num_virtual_tokens: [2, 4], init: [random, sampled_vocab], lr: [0.1]}}",
               "{method: lora, settings: {r: 2}, train: {lr: 0.002}}"]
    if failing:
        methods = ["{method: prefix_tuning, settings: {num_virtual_tokens: 2}}"]  # refused on t5
    path = folder / "tiny_suite.yaml"
    path.write_text(
        "name: tiny\nseeds: [0]\n"
        f"models: [{', '.join(models)}]\n"
        "train: {steps: 3, batch_size: 4, eval_every: 3, monitor_size: 4, eval_size: 6}\n"
        "tasks: {tiny_qa: {}}\n"
        "methods:\n" + "".join(f"  - {m}\n" for m in methods))
    return path


def spbench(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *map(str, args)], cwd=Path(__file__).parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_suite_expands_sweeps(tmp_path, tiny_models, tiny_tasks):
    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), tasks_dirs=(str(tiny_tasks),))
    assert len(suite.runs) == 5
    assert len({run.spec.run_id() for run in suite.runs}) == 5
    lora = [run for run in suite.runs if run.spec.method == "lora"]
    assert [run.spec.train.lr for run in lora] == [0.002] and lora[0].spec.train.steps == 3
    assert {run.spec.train.lr for run in suite.runs if run.spec.method != "lora"} == {0.1}  # swept
    assert all("lr" not in run.spec.method_settings for run in suite.runs)
    assert load_suite("standard").skipped  # encoders skip generation tasks


def test_sweep_points_that_differ_only_in_a_setting_without_effect_are_planned_once_and_said(tmp_path):
    path = tmp_path / "idle.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in {**GOOD_SUITE, "methods": (
        "[{method: prompt_tuning, sweep: {num_virtual_tokens: [4, 8], init_text: [a, b]}}]")}.items()))
    with pytest.warns(UserNotice, match=r"idle.yaml methods\[0\]: init_text changes nothing in 2 of its sweep's "
                                        r"points, each the same run as another: each planned once"):
        suite = load_suite(str(path))
    assert sorted(r.spec.method_settings["num_virtual_tokens"] for r in suite.runs) == [4, 8]  # not 4 runs


def test_runs_a_task_cannot_take_are_left_out_and_said():
    suite = load_suite("standard")
    generation = {"squad_v1", "samsum"}
    assert not [run for run in suite.runs
                if run.spec.task in generation and run.spec.method_settings.get("init") == "class_labels"]
    assert [run for run in suite.runs if run.spec.task in generation and run.spec.model == "smollm2-135m"
            and run.spec.method_settings.get("init") == "text"]  # the other inits still run there
    assert any(line.startswith("squad_v1 / minilm-l6: an encoder (classification head only) cannot answer qa tasks")
               for line in suite.skipped)
    assert ("samsum / smollm2-135m / prompt_tuning: prompt_tuning.init=class_labels needs a classification task; "
            "'samsum' is a summarization task, with no class labels to start from (12 runs)") in suite.skipped


def test_declared_model_kinds_leave_out_what_a_hub_model_cannot_take(tmp_path, tiny_models, tiny_tasks):
    t5, gpt2 = tiny_models["t5"][0], tiny_models["gpt2"][0]
    path = tmp_path / "kinds.yaml"
    path.write_text(f"name: kinds\nmodels: [{t5}, {gpt2}]\nmodel_kinds: {{{t5}: seq2seq}}\ntasks: {{tiny_qa: {{}}}}\n"
                    "methods: [{method: prefix_tuning}, {method: lora}]\n")
    suite = load_suite(str(path), tasks_dirs=(str(tiny_tasks),))
    assert sorted((run.spec.model == t5, run.spec.method, run.spec.model_kind) for run in suite.runs) == [
        (False, "lora", None), (False, "prefix_tuning", None), (True, "lora", "seq2seq")]
    assert suite.skipped == [f"tiny_qa / {t5} / prefix_tuning: prefix_tuning is not supported for seq2seq models "
                             "(PEFT's encoder-decoder prefix is ignored in generation with transformers 5); use "
                             "prompt_tuning or p_tuning"]
    full = load_suite("full")  # its hub models declare their kinds: no run it plans is refused for its kind
    assert not [r for r in full.runs if r.spec.model == "roberta-large" and r.spec.task in ("squad_v1", "samsum")]
    assert not [r for r in full.runs if r.spec.model_kind == "seq2seq" and r.spec.method == "prefix_tuning"]


@pytest.mark.parametrize("path", sorted(SHIPPED_SUITES.glob("*.yaml")), ids=lambda path: path.stem)
def test_shipped_suites_load(path):
    suite = load_suite(str(path))
    assert suite.runs and len({run.spec.run_id() for run in suite.runs}) == len(suite.runs)


def test_bad_suite_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntasks: {sst2: {}}\nmodels: [minilm-l6]\nmethods:\n  - {method: prompt_tuning, "
                    "settings: {num_virtual_tokens: 0}}\n")
    with pytest.raises(SuiteError, match=r"bad.yaml methods\[0\].*num_virtual_tokens=0 is out of range"):
        load_suite(str(path))
    path.write_text("name: bad\ntasks: {sst2: {}}\nmodels: [minilm-l6]\nmethods:\n  - {method: lora, "
                    "train: {lr: -1}}\n")
    with pytest.raises(SuiteError, match=r"bad.yaml methods\[0\] train: .*lr=-1 is out of range"):
        load_suite(str(path))
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        load_suite("nope")
    with pytest.raises(SuiteError, match=r"unknown suite 'smok'; shipped suites: .*; did you mean 'smoke'\?"):
        load_suite("smok")
    (tmp_path / "typo.yaml").write_text("name: t\ntaks: {sst2: {}}\nmodels: [minilm-l6]\nmethods: [{method: lora}]\n")
    with pytest.raises(SuiteError, match=r"typo.yaml: unknown key 'taks': did you mean 'tasks'\?"):  # not "missing"
        load_suite(str(tmp_path / "typo.yaml"))


GOOD_SUITE = {"name": "bad", "tasks": "{sst2: {}}", "models": "[minilm-l6]", "methods": "[{method: lora}]"}


@pytest.mark.parametrize("changes, message", [
    ({"name": "[a]"}, "name: must be non-empty text"),
    ({"name": "../../x"}, "name: '../../x' is not a folder name"),
    ({"tasks": "[sst2]"}, "tasks: must map task names to their budgets"),
    ({"tasks": "{}"}, "tasks: must map task names to their budgets"),
    ({"tasks": "{nope: {}}"}, "tasks.nope: unknown task 'nope'"),
    ({"tasks": "{sst2: 50}"}, "tasks.sst2: must be a mapping, got 50"),
    ({"tasks": "{sst2: {steps: lots}}"}, "tasks.sst2: `steps` must be an integer, got 'lots'"),
    ({"models": "minilm-l6"}, "models: must be a non-empty list of model names"),
    ({"model_kinds": "[encoder]"}, "model_kinds: must map model names to kinds"),
    ({"model_kinds": "{roberta-large: encoder}"}, "model_kinds.roberta-large: not one of the suite's models"),
    ({"model_kinds": "{minilm-l6: bert}"}, "model_kinds.minilm-l6: unknown kind 'bert'; expected one of"),
    ({"model_kinds": "{minilm-l6: causal}"}, "model_kinds.minilm-l6: a registered encoder model, not causal"),
    ({"seeds": "3"}, "seeds: must be a non-empty list of integers"),
    ({"seeds": "[0, true]"}, "seeds: must be a non-empty list of integers"),
    ({"train": "[steps, 5]"}, "train: must be a mapping"),
    ({"train": "{stepz: 5}"}, "train: unknown training setting 'stepz': did you mean 'steps'?"),
    ({"train": "{steps: 2.5}"}, "train: `steps` must be an integer, got 2.5"),
    ({"train": "{score_initial: 0}"}, "train: `score_initial` must be true or false"),
    ({"methods": "{method: lora}"}, "methods: must be a non-empty list of method entries"),
    ({"methods": "[{method: [lora]}]"}, "methods[0]: `method` must be a method name"),
    ({"methods": "[{method: lora, settings: [r, 2]}]"}, "methods[0].settings: must be a mapping"),
    ({"methods": "[{method: lora, settings: {rank: 2}}]"}, "methods[0].settings: unknown lora setting 'rank'"),
    ({"methods": "[{method: lora, settings: {r: two}}]"}, "methods[0].settings: `r` must be an integer"),
    ({"methods": "[{method: full_ft, settings: {r: 4}}]"},  # a setting of another method, to one that has none
     "methods[0].settings: unknown full_ft setting 'r' (there are none); r is a setting of lora only"),
    ({"methods": "[{method: prompt_tuning, sweep: {prefix_projection: [true, false]}}]"},
     "methods[0].sweep: unknown setting 'prefix_projection' (known: "),
    ({"methods": "[{method: prompt_tuning, sweep: {prefix_projection: [true, false]}}]"},
     "); prefix_projection is a setting of prefix_tuning only"),
    ({"methods": "[{method: lora, train: {lr: fast}}]"}, "methods[0].train: `lr` must be a number, got 'fast'"),
    ({"methods": "[{method: prompt_tuning, sweep: {num_virtual_tokens: 20}}]"},
     "methods[0].sweep: `num_virtual_tokens` must be a non-empty list of values, got 20"),
    ({"methods": "[{method: prompt_tuning, sweep: [num_virtual_tokens]}]"}, "methods[0].sweep: must be a mapping"),
    ({"methods": "[{method: prompt_tuning, settings: {num_virtual_tokens: 4}, sweep: {num_virtual_tokens: [2, 3]}}]"},
     "methods[0]: num_virtual_tokens is both set and swept; give it under `sweep` only"),
    ({"methods": "[{method: lora, train: {lr: 0.01}, sweep: {lr: [0.1, 0.2]}}]"},
     "methods[0]: lr is both set and swept"),
    ({"methods": "[{method: prompt_tuning, settings: {init: text, init_text: 5}}]"},
     "methods[0].settings: `init_text` must be text, got 5"),
    ({"methods": "[{method: lora}, {method: lora, settings: {r: 8}}]"},
     "methods[1]: plans a run methods[0] already plans (lora[r=8])"),
    ({"methods": "[{method: lora, sweep: {r: [4, 8]}}, {method: lora, settings: {r: 4}}]"},
     "methods[1]: plans a run methods[0] already plans (lora[r=4])"),
    ({"methods": "[{method: lora, settings: {dropout: 0}}, "
                 "{method: lora, train: {lr: 0.0005}, settings: {dropout: 0.0}}]"},  # the defaults, written out
     "methods[1]: plans a run methods[0] already plans (lora[dropout=0])"),
    ({"train": "{seed: 5}"}, "train: `seed` is set by the suite's `seeds: [...]` list"),
    ({"methods": "[{method: lora, sweep: {seed: [1, 2]}}]"}, "methods[0].sweep: `seed` is set by the suite's"),
    ({"tasks": "{sst2: {seed: 1}}"}, "tasks.sst2: `seed` is set by the suite's"),
    ({"train": "{lr: 0}"}, "train: training setting lr=0 is out of range"),
    ({"models": "[minilm-l7]"}, "models: unknown model 'minilm-l7': did you mean 'minilm-l6'?"),
    ({"seeds": "[0, 1, 0]"}, "seeds: 0 is listed twice"),
    ({"seeds": "[18446744073709551616]"}, "seeds: training setting seed=18446744073709551616 is out of range"),
    ({"models": "[minilm-l6, minilm-l6]"}, "models: 'minilm-l6' is listed twice"),
    ({"methods": "[{method: lora, sweep: {lr: [0.001, 1e-3]}}]"}, "methods[0].sweep.lr: 0.001 is listed twice"),
    ({"methods": "[{method: prefix_tuning, sweep: {init: [null, real_tokens]}}]"},  # the default, written out
     "methods[0]: plans a run methods[0] already plans (prefix_tuning[init=real_tokens])"),
    ({"methods": "[{method: prefix_tuning}, {method: prefix_tuning, settings: {encoder_hidden_size: 64}}]"},
     "methods[1]: plans a run methods[0] already plans "
     "(prefix_tuning; encoder_hidden_size changes nothing here)"),
])
def test_suite_value_of_the_wrong_shape_names_file_and_key(tmp_path, changes, message):
    path = tmp_path / "bad.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in {**GOOD_SUITE, **changes}.items()))
    with pytest.raises(SuiteError, match=re.escape(message)) as err:
        load_suite(str(path))
    assert str(err.value).startswith(f"{path} ")


def test_suite_reads_numeric_text_as_the_number(tmp_path):
    """YAML reads 3e-4 (no dot) as text; a suite takes it as the number it spells."""
    path = tmp_path / "numbers.yaml"
    path.write_text("name: numbers\ntasks: {sst2: {steps: 1e2}}\nmodels: [minilm-l6]\ntrain: {lr: 3e-4}\n"
                    "methods:\n  - {method: lora}\n  - {method: lora, sweep: {lr: [1e-3, 0.01]}}\n")
    runs = load_suite(str(path)).runs
    assert [run.spec.train.lr for run in runs] == [3e-4, 1e-3, 0.01]
    assert {run.spec.train.steps for run in runs} == {100} and isinstance(runs[0].spec.train.steps, int)


def test_a_dry_run_lists_the_plan_and_runs_nothing(tmp_path, capsys):
    from bench.cli import main

    reference = Path(__file__).parents[1] / "results" / "reference"
    assert main(["bench", "--suite", "quick", "--dry-run", "--results", str(reference)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"0 to run, 14 with a record in {reference}"
    assert main(["bench", "--suite", "quick", "--dry-run", "--results", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"14 to run, 0 with a record in {tmp_path / 'new'}"
    assert not (tmp_path / "new").exists()
    assert "todo  sst2 / minilm-l6 / lora[lr=0.003] / seed 0  (sst2__minilm-l6__lora__" in out


def test_a_dry_run_names_a_model_this_machine_cannot_load_offline(tmp_path, capsys):
    from bench.cli import main

    suite = tmp_path / "hub.yaml"
    suite.write_text("name: hub\nseeds: [0]\nmodels: [minilm-l6, someone/not-cached-model]\n"
                     "tasks: {sst2: {steps: 2}}\nmethods:\n  - {method: lora}\n")
    assert main(["bench", "--suite", str(suite), "--dry-run", "--results", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("model someone/not-cached-model: a hub id not in this machine's hub cache; its runs download "
                       "it, and fail without a network")
    assert not any("minilm-l6:" in line for line in out)  # installed: nothing to say


def test_a_dry_run_of_a_shared_suite_reads_what_the_study_has_done(tmp_path, tiny_models, tiny_tasks, capsys):
    """Not the local folder, which holds only this machine's records."""
    from bench.cli import main
    from bench.shared_suite import RUN_ATTR, open_suite_study

    path = write_suite(tmp_path, tiny_models, tiny_tasks)
    suite = load_suite(str(path), tasks_dirs=(str(tiny_tasks),), results_dir=tmp_path / "here")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    argv = ["bench", "--suite", str(path), "--storage", url, "--dry-run", "--tasks-dir", str(tiny_tasks),
            "--results", str(tmp_path / "here")]
    assert main(argv) == 0  # no study yet: every run to do
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{len(suite.runs)} to run, 0 complete in the shared")
    assert not (tmp_path / "shared.db").exists()  # a dry run makes no database
    study = open_suite_study(suite, url)
    trial = study.ask()  # another machine's run, done
    study.tell(trial, 1.0)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(f"{len(suite.runs) - 1} to run, 1 complete in the shared study on")
    assert out.count("done  ") == 1 and f"({trial.user_attrs[RUN_ATTR]})" in next(
        line for line in out.splitlines() if line.startswith("done  "))
    assert main(["results", "--storage", url]) == 2  # which study: those it holds are named
    assert "--storage needs --study (suite-<suite name>, or a search's study); its studies: suite-tiny" in \
        capsys.readouterr().err


def test_runs_the_suite_defaults_make_equal_run_once(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\ntasks: {sst2: {steps: 2}, rte: {steps: 3}}\nmodels: [minilm-l6]\n"
                    "methods:\n  - {method: lora}\n  - {method: lora, train: {steps: 2}}\n")
    with pytest.warns(UserWarning, match=r"sst2 / minilm-l6 / lora\[steps=2\] is the same run as lora; it runs once"):
        runs = load_suite(str(path)).runs
    assert [(run.spec.task, run.spec.train.steps) for run in runs] == [("sst2", 2), ("rte", 3), ("rte", 2)]


@pytest.mark.parametrize("train, watched", [("{eval_size: 16}", 16), ("{eval_size: 16, monitor_size: 100}", 100),
                                             ("{eval_size: 500}", 200)])
def test_a_suite_run_watches_no_more_examples_than_it_scores_unless_told(tmp_path, train, watched):
    """As `spbench run` does: the same settings make the same run through either."""
    path = tmp_path / "watch.yaml"
    path.write_text(f"name: watch\ntasks: {{sst2: {{}}}}\nmodels: [minilm-l6]\ntrain: {train}\n"
                    "methods: [{method: lora}]\n")
    assert load_suite(str(path)).runs[0].spec.train.monitor_size == watched


def test_a_setting_without_effect_makes_no_other_run(tmp_path):
    """init_text only matters with init=text: a sweep over both trains each random init once."""
    path = tmp_path / "texts.yaml"
    path.write_text("name: texts\ntasks: {sst2: {steps: 2}}\nmodels: [minilm-l6]\n"
                    "methods:\n  - {method: prompt_tuning, sweep: {init: [random, text], init_text: [A, B]}}\n")
    runs = load_suite(str(path)).runs
    assert [run.spec.method_settings for run in runs] == [
        {"init": "random"}, {"init": "text", "init_text": "A"}, {"init": "text", "init_text": "B"}]
    assert len({run.spec.run_id() for run in runs}) == 3
    plain = RunSpec(task="sst2", model="minilm-l6", method="prefix_tuning")
    wider = dataclasses.replace(plain, method_settings={"encoder_hidden_size": 64})  # no projection to size
    assert wider.run_id() == plain.run_id()
    projected = dataclasses.replace(plain, method_settings={"prefix_projection": True})
    assert dataclasses.replace(projected, method_settings={"prefix_projection": True, "encoder_hidden_size": 64}
                               ).run_id() != projected.run_id()


def test_killed_suite_resumes_without_losing_or_redoing_runs(tmp_path, tiny_models, tiny_tasks):
    suite = write_suite(tmp_path, tiny_models, tiny_tasks)
    results = tmp_path / "results"
    args = ("bench", "--suite", suite, "--results", results, "--tasks-dir", tiny_tasks, "--quiet")
    first = spbench(*args, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(results.rglob("record.json")):
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    finished = {p: p.stat().st_mtime_ns for p in results.rglob("record.json")}
    assert 1 <= len(finished) < 5, "the kill should land mid-suite"
    for path in finished:
        json.loads(path.read_text())  # every record present is whole

    second = spbench(*args)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    assert f"already present {len(finished)}" in output
    records = list(results.rglob("record.json"))
    assert len(records) == 5
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items()), "a finished run was redone"


def test_two_commands_on_one_folder_share_its_runs_out(tmp_path, tiny_models, tiny_tasks):
    from bench.run_claim import claim
    from bench.suite_runner import describe

    suite = write_suite(tmp_path, tiny_models, tiny_tasks)
    results = tmp_path / "results"
    args = ("bench", "--suite", suite, "--results", results, "--tasks-dir", tiny_tasks)
    planned = load_suite(str(suite), results_dir=results, tasks_dirs=(str(tiny_tasks),)).runs
    with claim(planned[2].spec.record_path().parent) as ours:  # this process trains the third run
        assert ours
        other = spbench(*args)
        output = other.communicate(timeout=300)[0]
    assert other.returncode == 0, output
    assert f"[3/5] {describe(planned[2])}: being trained by another process, skipped" in output, output
    assert "done 4, already present 0, run by another process 1, failed 0" in output, output
    again = spbench(*args, "--quiet")  # the claim let go and no record written: the run is trained now
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "done 1, already present 4, failed 0" in output, output

    shared = tmp_path / "shared"  # two commands at once: each run trained once, by one or the other
    both = [spbench(*args[:4], shared, *args[5:], "--quiet") for _ in range(2)]
    outputs = [command.communicate(timeout=300)[0] for command in both]
    assert [command.returncode for command in both] == [0, 0], outputs
    done = [int(re.search(r"^done (\d+), ", output, re.M).group(1)) for output in outputs]
    assert sum(done) == 5, outputs
    assert len(list(shared.rglob("record.json"))) == 5 and not list(shared.rglob(".training"))


def test_a_run_another_process_is_training_is_passed_over(tmp_path, tiny_models, tiny_tasks, capsys):
    from bench.run_claim import claim
    from bench.suite_runner import describe, run_suite

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), results_dir=tmp_path / "results",
                       tasks_dirs=(str(tiny_tasks),))
    taken = suite.runs[0]
    suite = dataclasses.replace(suite, runs=[taken])
    with claim(taken.spec.record_path().parent) as ours:  # as another command holds it
        assert ours
        outcome = run_suite(suite, progress=True)
    assert outcome.elsewhere == [describe(taken)] and not outcome.done and not taken.spec.record_path().exists()
    assert f"[1/1] {describe(taken)}: being trained by another process, skipped" in capsys.readouterr().err


def test_a_claim_locked_on_a_file_its_holder_let_go_is_taken_on_the_paths_new_file(tmp_path, monkeypatch):
    from bench import run_claim

    folder = tmp_path / "run"
    with run_claim.claim(folder):
        orphan = os.open(folder / run_claim.CLAIM_FILE, os.O_RDWR)  # opened just before its holder let go
    real_open, handed = os.open, iter([orphan])
    monkeypatch.setattr(run_claim.os, "open", lambda *args: next(handed, None) or real_open(*args))
    with run_claim.claim(folder) as ours:
        assert ours
        with run_claim.claim(folder) as theirs:  # a third process, on the path's new file
            assert not theirs
    assert not (folder / run_claim.CLAIM_FILE).exists()


def test_failed_run_is_recorded_and_suite_goes_on(tmp_path, tiny_models, tiny_tasks):
    suite = write_suite(tmp_path, tiny_models, tiny_tasks, failing=True)
    results = tmp_path / "results"
    fresh = {**os.environ, "SPBENCH_CACHE": str(tmp_path / "cache")}  # no zero-shot score kept by another test
    run = spbench("bench", "--suite", suite, "--results", results, "--tasks-dir", tiny_tasks, env=fresh)  # to a pipe
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 1
    assert "FAILED" in output and "not supported for seq2seq" in output
    assert "\r" not in output, "progress bars are for a terminal, not a log"
    assert re.search(r"^step 3/3: loss \d+\.\d{4}  validation f1=\d\.\d{4}  exact_match=\d\.\d{4} \(n=4\)$", output,
                     re.M), output
    # a log shows the run at work from its first step, and before each long scoring
    assert re.search(r"^step 1/3: loss \d+\.\d{4}  \(\d+\.\d s a step; 2 steps to go\)$", output, re.M), output
    assert re.search(r"^scoring the base model zero-shot: test 6 examples$", output, re.M), output
    assert re.search(r"^scoring after training: validation 6 examples, test 6 examples$", output, re.M), output
    assert re.search(r"^\[1/2\] tiny_qa / .* / prefix_tuning\[.*\] / seed 0: done in \d+ s; about \d+ s left$",
                     output, re.M), output
    assert re.search(r"^\[2/2\] tiny_qa / .*: failed after \d+ s \(MethodError: .*not supported for seq2seq", output,
                     re.M), output
    assert len(list(results.rglob("record.json"))) == 1  # the gpt2 run still completed
    (failure,) = results.rglob("failure.json")
    assert "not supported for seq2seq" in json.loads(failure.read_text())["reason"]


def test_a_failure_that_cannot_be_written_is_still_reported_and_the_suite_goes_on(tmp_path, tiny_models, tiny_tasks,
                                                                                 monkeypatch):
    """A run folder that refuses failure.json (its permissions, a full disk) must not end the suite."""
    from bench import suite_runner

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), results_dir=tmp_path / "results",
                       tasks_dirs=(str(tiny_tasks),))
    attempted = []

    def failing_run(spec, pool):
        attempted.append(spec.run_id())
        raise RuntimeError("out of disk")

    def refused(entry, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(suite_runner, "execute_run", failing_run)
    monkeypatch.setattr(suite_runner, "write_json_atomic", refused)
    outcome = suite_runner.run_suite(suite, progress=False)
    assert len(attempted) == len(suite.runs) == len(outcome.failed)
    assert all("out of disk (and its failure.json could not be written: Permission denied)" in reason
               for _, reason in outcome.failed)


def test_suite_shared_through_a_study_runs_each_run_once(tmp_path, tiny_models, tiny_tasks):
    """Two machines (processes with their own results folders) share one suite through a storage."""
    suite = write_suite(tmp_path, tiny_models, tiny_tasks)
    url = os.environ.get("SPBENCH_TEST_POSTGRES") or f"sqlite:///{tmp_path / 'shared.db'}"
    name = f"tiny-{time.time_ns()}"
    (tmp_path / "named.yaml").write_text(suite.read_text().replace("name: tiny", f"name: {name}"))
    machines = [spbench("bench", "--suite", tmp_path / "named.yaml", "--results", tmp_path / f"machine{i}",
                        "--tasks-dir", tiny_tasks, "--quiet", "--storage", url) for i in range(2)]
    for machine in machines:
        output = machine.communicate(timeout=300)[0]
        assert machine.returncode == 0, output
    import optuna

    study = optuna.load_study(study_name=f"suite-{name}", storage=url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 5 and len({t.user_attrs["run_id"] for t in complete}) == 5
    local = len(list((tmp_path / "machine0").rglob("record.json"))) + len(list((tmp_path / "machine1").rglob("record.json")))
    assert local == 5  # every run happened on exactly one machine
    table = spbench("results", tmp_path / "table", "--storage", url, "--study", f"suite-{name}", "--split", "validation")
    output = table.communicate(timeout=120)[0]
    assert table.returncode == 0 and "5 runs finished, 0 failed" in output, output
    # no full fine-tuning in the suite: how a view of the study gets one (not a `spbench run`, which it would not read)
    assert "list `{method: full_ft}` in the shared suite and run it again with `--storage`" in " ".join(output.split())
    assert "--method full_ft" not in output, output


def test_a_machine_computing_in_another_precision_cannot_join_a_shared_suite(tmp_path, tiny_models, tiny_tasks,
                                                                              monkeypatch):
    from bench.shared_suite import open_suite_study

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), tasks_dirs=(str(tiny_tasks),),
                       results_dir=tmp_path / "machine")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    open_suite_study(suite, url)  # created on this CPU
    assert open_suite_study(suite, url).user_attrs["precision"] == "cpu/float32"  # a CPU joins
    monkeypatch.setattr("bench.shared_suite.compute_precision", lambda: "cuda/bfloat16")
    with pytest.raises(SuiteError, match=r"runs in cpu/float32, and this machine computes in cuda/bfloat16"):
        open_suite_study(suite, url)


def test_a_suite_refuses_a_study_of_its_name_that_holds_no_suites_runs(tmp_path, tiny_models, tiny_tasks):
    import optuna

    from bench.shared_suite import open_suite_study, runs_done_in_study

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), tasks_dirs=(str(tiny_tasks),))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    searched = optuna.create_study(study_name="suite-tiny", storage=url, direction="maximize")  # a search's
    searched.tell(searched.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1)}), 0.5)
    with pytest.raises(SuiteError, match=r"study suite-tiny holds 1 trial, none of them a suite's run \(a search's"):
        open_suite_study(suite, url)
    assert len(searched.get_trials()) == 1 and "runs_queued" not in searched.user_attrs  # left as it was
    with pytest.raises(SuiteError, match="holds 1 trial, none of them a suite's run"):  # a dry run says so too
        runs_done_in_study(suite, url)


def test_a_shared_suite_passes_over_a_run_queued_by_another_plan(tmp_path, tiny_models, tiny_tasks):
    import optuna

    from bench.shared_suite import RUN_ATTR, open_suite_study, run_shared_suite

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), tasks_dirs=(str(tiny_tasks),),
                       results_dir=tmp_path / "machine")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = open_suite_study(suite, url)
    # a run an older version of the suite planned and queued, since left out of the plan
    study.enqueue_trial({"run": 99}, user_attrs={RUN_ATTR: "tiny_qa__left_out__s0"})
    # and one it completed: not counted among this plan's runs
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={RUN_ATTR: "tiny_qa__done_before__s0"}))
    optuna_log = io.StringIO()  # Optuna's own handler writes to the stderr it found at import
    handler = logging.StreamHandler(optuna_log)
    logging.getLogger("optuna").addHandler(handler)
    try:
        with pytest.warns(UserNotice, match="run tiny_qa__left_out__s0 is not in this suite's plan .*: passed over"):
            outcome = run_shared_suite(suite, url)
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert (outcome.done, outcome.running, outcome.failed, outcome.not_done) == (5, 0, [], 0)
    # Optuna's lines name no run and repeat the suite's own (a failure, a run passed over): none are shown
    assert optuna_log.getvalue() == ""
    (passed_over,) = [t for t in study.trials if t.user_attrs[RUN_ATTR] == "tiny_qa__left_out__s0"]
    assert passed_over.state.name == "FAIL"
    assert passed_over.user_attrs["passed_over"] == "run tiny_qa__left_out__s0 is not in this suite's plan"


def test_a_run_tried_again_names_the_failure_before_it_not_a_trial_that_passed_it_over():
    import optuna
    from optuna.trial import TrialState, create_trial

    from bench.shared_suite import FAILURE_ATTR, PASSED_OVER_ATTR, RUN_ATTR, _tried_before

    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={RUN_ATTR: "r", PASSED_OVER_ATTR: "not planned"}))
    assert _tried_before(study, "r", 9) == ""  # a machine with another plan passed over it: it did not fail
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={RUN_ATTR: "r"}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={RUN_ATTR: "r", FAILURE_ATTR: {
        "reason": "MethodError: refused\nTraceback ..."}}))
    assert _tried_before(study, "r", 9) == " (again: trial 2 of this run failed: MethodError: refused)"
    assert _tried_before(study, "r", 2) == " (again: trial 1 of this run failed: its machine was killed, or lost its " \
        "connection)"


def test_a_rerun_redoes_the_last_run_of_a_killed_machine(tmp_path, tiny_models, tiny_tasks, monkeypatch, capsys):
    """Every other run is done, so nothing is queued; the killed machine's run must be queued again."""
    from bench.shared_suite import open_suite_study, run_shared_suite
    from bench import study_storage as storage_module

    monkeypatch.setattr(storage_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(storage_module, "GRACE_SECONDS", 1)
    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), tasks_dirs=(str(tiny_tasks),),
                       results_dir=tmp_path / "machine")
    suite = dataclasses.replace(suite, runs=suite.runs[:2])
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = open_suite_study(suite, url)
    study.tell(study.ask(), 1.0)  # done by hand: the test trains only the killed run
    killed = study.ask()
    study._storage.record_heartbeat(killed._trial_id)  # its last heartbeat, then silence
    time.sleep(2.5)
    outcome = run_shared_suite(suite, url, progress=True)
    assert (outcome.done, outcome.running, outcome.failed) == (2, 0, [])
    assert len(list((tmp_path / "machine").rglob("record.json"))) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial ")]
    assert re.fullmatch(r"trial 2: tiny_qa / .* / seed 0 \(again: trial 1 of this run failed: its machine was killed, "
                        r"or lost its connection\)", lines[0]), lines
    assert re.fullmatch(r"trial 2: done in \d+ s", lines[-1])


def test_a_machine_joining_while_the_runs_are_queued_does_not_queue_them_again(tmp_path, tiny_models, tiny_tasks):
    import threading

    import optuna

    from bench import shared_suite

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), tasks_dirs=(str(tiny_tasks),))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    creator = optuna.create_study(study_name=shared_suite.study_name(suite), storage=url, direction="maximize")
    creator.enqueue_trial({"run": 0}, user_attrs={shared_suite.RUN_ATTR: suite.runs[0].spec.run_id()})

    def finish_queueing():  # the creator, still queueing when the other machine arrives
        time.sleep(2)
        rest = dataclasses.replace(suite, runs=suite.runs[1:])
        shared_suite._enqueue(creator, rest, skip=set())

    queueing = threading.Thread(target=finish_queueing)
    queueing.start()
    joined = shared_suite.open_suite_study(suite, url)
    queueing.join()
    assert sorted(t.user_attrs[shared_suite.RUN_ATTR] for t in joined.get_trials()) == sorted(
        run.spec.run_id() for run in suite.runs)


def test_shared_suite_keeps_failures_in_the_study_and_a_rerun_redoes_them(tmp_path, tiny_models, tiny_tasks):
    import optuna

    suite = write_suite(tmp_path, tiny_models, tiny_tasks, failing=True)  # prefix tuning on t5 is refused
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ("bench", "--suite", suite, "--results", tmp_path / "machine", "--tasks-dir", tiny_tasks, "--quiet",
            "--storage", url)
    for attempt in range(2):
        run = spbench(*args)
        output = run.communicate(timeout=300)[0]
        assert run.returncode == 1 and "FAILED" in output and "not supported for seq2seq" in output, output
        assert "1/2 runs complete in the shared study" in output and "\n  1 not done, nor running anywhere (failed, " \
            "or passed over by a machine with another version of the suite, or queued again since): rerun this " \
            "command to run them" in output
    states = sorted(t.state.name for t in optuna.load_study(study_name="suite-tiny", storage=url).trials)
    assert states == ["COMPLETE", "FAIL", "FAIL"]  # the rerun queued the failed run again, not the finished one
    (failure,) = (tmp_path / "machine").rglob("failure.json")
    assert "not supported for seq2seq" in json.loads(failure.read_text())["reason"]
    table = spbench("results", tmp_path / "table", "--storage", url, "--study", "suite-tiny", "--split", "validation")
    output = table.communicate(timeout=120)[0]
    assert table.returncode == 0 and "1 run finished, 1 failed" in output, output


def test_a_shared_suite_keeps_a_failure_whose_file_cannot_be_written(tmp_path, tiny_models, tiny_tasks, monkeypatch):
    """As in a local suite: a run folder that refuses failure.json must not lose the failure from the study."""
    import optuna

    from bench import shared_suite, suite_runner

    suite = load_suite(str(write_suite(tmp_path, tiny_models, tiny_tasks)), results_dir=tmp_path / "results",
                       tasks_dirs=(str(tiny_tasks),))

    def failing_run(spec, pool):
        raise RuntimeError("out of disk")

    def refused(entry, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(suite_runner, "execute_run", failing_run)  # where both runners run a planned run
    monkeypatch.setattr(suite_runner, "write_json_atomic", refused)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    outcome = shared_suite.run_shared_suite(suite, url)
    assert len(outcome.failed) == len(suite.runs)
    trials = optuna.load_study(study_name="suite-tiny", storage=url).trials
    reasons = [t.user_attrs[shared_suite.FAILURE_ATTR]["reason"] for t in trials]
    assert len(reasons) == len(suite.runs) and all(
        "out of disk (and its failure.json could not be written: Permission denied)" in r for r in reasons)


def test_a_damaged_record_is_run_again_not_counted_done(tmp_path, tiny_models, tiny_tasks, capsys):
    from bench.suite_runner import run_suite

    path = tmp_path / "one.yaml"
    path.write_text(f"name: one\nmodels: [{tiny_models['gpt2'][0]}]\ntasks: {{tiny_cls: {{steps: 1}}}}\n"
                    "train: {batch_size: 4, eval_size: 4, score_initial: false}\nmethods: [{method: lora}]\n")

    def suite():
        return load_suite(str(path), results_dir=tmp_path / "results", tasks_dirs=(str(tiny_tasks),))

    assert run_suite(suite(), progress=False).done
    record = suite().runs[0].spec.record_path()
    record.write_text(record.read_text()[:200])  # a damaged disk, or a hand edit
    again = run_suite(suite(), progress=False)
    assert again.done and not again.skipped
    assert "is unreadable (JSONDecodeError" in capsys.readouterr().err
    assert json.loads(record.read_text())["status"] == "completed"
    assert run_suite(suite(), progress=False).skipped  # whole again: counted done
    from bench.record import SCHEMA_VERSION

    newer = json.loads(record.read_text())
    record.write_text(json.dumps({**newer, "schema_version": SCHEMA_VERSION + 1, "scores": {}}))
    assert run_suite(suite(), progress=False).skipped  # a later version's record is done, not damaged


def test_a_model_that_cannot_load_fails_the_suites_next_runs_at_once(monkeypatch):
    """A hub id that cannot be reached costs its retries once per suite, not once per run."""
    from bench.models import ModelPool
    from bench.models.registry import ModelUnavailable

    attempts = []

    def unreachable(name, **kwargs):
        attempts.append(name)
        raise ModelUnavailable(f"unknown model {name!r}: not reachable")

    monkeypatch.setattr("bench.models.pool.load_base_model", unreachable)
    pool = ModelPool()
    for num_labels in (2, 4):  # another task's head: the model is still not there
        with pytest.raises(ModelUnavailable, match="not reachable"):
            pool.get("someorg/some-model", num_labels=num_labels)
    assert attempts == ["someorg/some-model"]


def test_the_pool_loads_a_language_model_once_for_tasks_of_any_number_of_classes(monkeypatch, tiny_models):
    """An LM has no classifier to size: an SST-2 run and an AG News run share one pristine copy; an
    encoder gets one per head size."""
    import bench.models.pool as pool_module
    from bench.models import ModelPool

    loads, load = [], pool_module.load_base_model

    def counted(name, **kwargs):
        loads.append((name, kwargs["num_labels"]))
        return load(name, **kwargs)

    monkeypatch.setattr(pool_module, "load_base_model", counted)
    pool = ModelPool()
    gpt2, bert = tiny_models["gpt2"][0], tiny_models["bert"][0]
    for num_labels in (2, 4, None, 2):
        assert pool.get(gpt2, num_labels=num_labels).kind == "causal"
    for num_labels in (2, 4, 2):
        assert pool.get(bert, num_labels=num_labels).model.config.num_labels == num_labels
    assert loads == [(gpt2, 2), (bert, 2), (bert, 4)]



def test_records_of_a_card_edited_without_a_new_version_are_named(tmp_path, tiny_models, tiny_tasks, capsys):
    """Its runs keep their ids (the version did not change), so their records pass for the card's now:
    the suite says so, where it would otherwise show the old scores as the edited card's."""
    import shutil

    from bench.cli import main

    tasks = tmp_path / "tasks"
    shutil.copytree(tiny_tasks, tasks)
    suite = tmp_path / "one.yaml"
    suite.write_text(f"name: one\nseeds: [0]\nmodels: [{tiny_models['gpt2'][0]}]\n"
                     "train: {steps: 2, batch_size: 4, eval_every: 2, monitor_size: 4, eval_size: 4}\n"
                     "tasks: {tiny_cls: {}}\n"
                     "methods:\n  - {method: prompt_tuning, settings: {num_virtual_tokens: 2}}\n")
    argv = ["bench", "--suite", str(suite), "--tasks-dir", str(tasks), "--results", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    assert main([*argv, "--dry-run"]) == 0
    assert "another state" not in capsys.readouterr().out  # as it was: nothing to say
    card = tasks / "tiny_cls.yaml"
    card.write_text(card.read_text() + "description: words for people change no score\n")
    assert main([*argv, "--dry-run"]) == 0
    assert "another state" not in capsys.readouterr().out
    with (tasks / "data" / "tiny_cls_test.jsonl").open("a") as data:
        data.write('{"sentence": "one more", "label": 1}\n')
    assert main([*argv, "--dry-run"]) == 0
    assert (f"task tiny_cls: 1 record here came from another state of {card} or its data, at the same version: "
            "kept as done; give the card a new `version`") in capsys.readouterr().out
    assert main(argv) == 0  # the run itself: skipped, and said
    captured = capsys.readouterr()
    assert "another state of" in captured.err and "already present 1" in captured.out
