"""The CLI end to end on tiny models, and its errors for bad input."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from peft import PeftModel

from bench.cli import main
from bench.models import load_base_model
from bench.record import RunRecord
from tasks import load_task
from tasks.registry import SHIPPED_CARDS
from tests.conftest import write_string_metric


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_run(tiny_models, tiny_tasks, tmp_path, arch, method, task="tiny_cls", *extra):
    return ("run", "--task", task, "--model", tiny_models[arch][0], "--method", method,
            "--tasks-dir", tiny_tasks, "--results", tmp_path, "--steps", 3, "--batch-size", 4,
            "--set", "eval_every=2", "--quiet", *extra)


@pytest.mark.parametrize("arch, method, task", [
    ("roberta", "prefix_tuning", "tiny_cls"),
    ("gpt2", "prompt_tuning", "tiny_qa"),
    ("llama", "p_tuning", "tiny_cls"),
    ("t5", "full_ft", "tiny_qa"),
])
def test_run_writes_a_complete_record(capsys, tiny_models, tiny_tasks, tmp_path, arch, method, task):
    code, out, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, arch, method, task))
    assert code == 0, err
    record_path = Path(out.strip().splitlines()[-1].removeprefix("record: "))
    record = json.loads(record_path.read_text())
    assert set(RunRecord.__annotations__) <= set(record)
    assert set(record["scores"]) == set(record["zero_shot"]) == {"validation", "test"}
    metric = record["task"]["primary_metric"]
    if record["model"]["kind"] == "encoder":  # a fresh head scored before training is no zero-shot baseline
        assert record["base_zero_shot"] is None and record["improvement_pct"] is None
        assert "zero-shot" not in out and "before training" in out
    else:  # measured against the base model, not against the untrained prompt
        base, after = record["base_zero_shot"]["test"][metric], record["scores"]["test"][metric]
        if base > 0:
            assert record["improvement_pct"]["test"] == pytest.approx(100 * (after - base) / base)
        assert f"zero-shot {metric}={base:.4f}" in out and "before training" in out
    assert [e["step"] for e in record["curve"]["eval"]] == [2, 3] and len(record["curve"]["loss"]) == 3
    for split, each in record["per_example"].items():  # each example's score, which the metric averages
        assert len(each["scores"]) == record["scores"][split]["n"] and len(each["examples"]) == 16
        assert sum(each["scores"]) / len(each["scores"]) == pytest.approx(record["scores"][split][metric], abs=1e-5)
    assert set(record["per_example"]) == {"validation", "test"}
    cost = record["cost"]
    assert 0 < cost["trainable_params"] <= cost["total_params"] and cost["tokens_seen"] > 0
    assert cost["artifact_bytes"] > 0 and cost["peak_memory_bytes"] > 0
    assert record["environment"]["packages"]["peft"]
    # without a projection, a prefix's encoder size has no effect: the label leaves it out
    assert record["method"]["without_effect"] == (["encoder_hidden_size"] if method == "prefix_tuning" else
                                                  ["init_text"] if method == "prompt_tuning" else [])
    if method != "full_ft":
        assert PeftModel.from_pretrained(load_base_model(tiny_models[arch][0], num_labels=2).model,
                                         record["artifact_path"]) is not None
        mask = os.umask(0o022)
        os.umask(mask)
        weights = Path(record["artifact_path"], "adapter_model.safetensors")
        assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~mask  # safetensors alone writes 0600


def test_methods_lists_every_method_with_its_default_rate_and_settings(capsys):
    from bench.methods import METHODS

    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    assert max(map(len, out.splitlines())) <= 100  # long descriptions and settings wrap
    flowing = re.sub(r"\n +", " ", out)  # each entry on one line again
    for method in METHODS.values():
        assert re.search(rf"^{method.name} +{method.default_lr:g} +{re.escape(method.description)}( settings:|$)",
                         flowing, re.M)
    assert "settings: num_virtual_tokens=20, init=sampled_vocab, init_text=None" in flowing  # prompt tuning's defaults
    assert "full_ft" in out and out.count("settings:") == len(METHODS) - 1  # full fine-tuning has none


def test_methods_and_a_search_space_are_read_without_the_training_stack():
    """Listing methods, checking their settings and a search space, and reading a model's kind answer
    at once: PEFT, transformers and torch (seconds of imports) load only where a model is built or
    trained. A fresh process: this one has them all loaded."""
    code = ("import sys, bench.cli, search.costs; from bench.methods import METHODS; from search.space import "
            "load_space; load_space(None); [m.settings() for m in METHODS.values()]; "
            "from bench.models import MODELS; MODELS['minilm-l6'].kind; "  # a table's reference command reads kinds
            "print(sorted(m for m in ('peft', 'torch', 'transformers') if m in sys.modules))")
    root = Path(__file__).parent.parent
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"


def test_skipping_the_initial_score_leaves_no_zero_shot(capsys, tiny_models, tiny_tasks, tmp_path):
    args = tiny_run(tiny_models, tiny_tasks, tmp_path, "roberta", "lora", "tiny_cls", "--set", "score_initial=false")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert record["zero_shot"] is None and record["improvement_pct"] is None  # an encoder has no base zero-shot
    assert "zero-shot" not in out
    code, out, err = run_cli(capsys, "results", tmp_path)
    assert code == 0, err
    assert re.search(r"lora.*\s-\s", out)


def test_same_seed_same_result(capsys, tiny_models, tiny_tasks, tmp_path):
    runs = []
    for folder in ("a", "b"):
        code, out, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path / folder, "gpt2", "prompt_tuning"))
        assert code == 0, err
        runs.append(json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text()))
    assert runs[0]["curve"]["loss"] == runs[1]["curve"]["loss"]
    assert runs[0]["scores"] == runs[1]["scores"]


def test_a_run_another_process_is_training_is_refused_not_trained_twice(capsys, tiny_models, tiny_tasks, tmp_path):
    from bench.run_claim import claim

    argv = tiny_run(tiny_models, tiny_tasks, tmp_path, "gpt2", "lora")
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    record = Path(out.strip().splitlines()[-1].removeprefix("record: "))
    written = record.stat().st_mtime_ns
    with claim(record.parent) as ours:  # as a `bench` or another `run` training it holds it
        assert ours
        code, _, err = run_cli(capsys, *argv)
    assert code == 2 and f"{record.parent}: another process is training this run now" in err
    assert record.stat().st_mtime_ns == written


@pytest.mark.parametrize("change, message", [
    ({"--model": "no-such-model-xyz"}, "unknown model 'no-such-model-xyz'"),
    ({"--model": "minilm-l7"}, "unknown model 'minilm-l7': did you mean 'minilm-l6'"),  # no hub lookup for a typo
    ({"--model": "MiniLM-L6"}, "unknown model 'MiniLM-L6': did you mean 'minilm-l6'"),  # nor for another case
    ({"--model": "smollm2"}, "unknown model 'smollm2': did you mean 'smollm2-135m'"),  # nor for the family name
    ({"--task": "no_such_task"}, "unknown task 'no_such_task'"),
    ({"--task": "sst3"}, r"unknown task 'sst3'; known tasks: .*; did you mean 'sst2'\?"),
    ({"--method": "soft_magic"}, "unknown method 'soft_magic'"),
    ({"--method": "loar"}, r"unknown method 'loar'; known methods: .*; did you mean 'lora'\?"),
    ({"--set": "init=class_label"}, r"init='class_label' is not one of .*: did you mean 'class_labels'\?"),
    ({"--set": "num_virtual_tokenz=3"}, "--set num_virtual_tokenz: unknown setting"),
    ({"--set": "num_virtual_tokens=0"}, r"prompt_tuning.num_virtual_tokens=0 is out of range"),
    ({"--set": "init=zeros"}, r"prompt_tuning.init='zeros' is not one of"),
    ({"--set": "lr=-1"}, r"training setting lr=-1.0 is out of range \(must be in \(0, 10\]\)"),
    ({"--set": "num_virtual_tokens=many"}, r"num_virtual_tokens='many': expected an integer$"),
    ({"--set": "eval_size=all"}, r"eval_size='all': expected an integer or none$"),
    ({"--set": "eval_size=-1"}, r"training setting eval_size=-1 is out of range"),  # not the monitor size it sets
])
def test_bad_input_is_named(capsys, tiny_models, tiny_tasks, tmp_path, change, message):
    argv = list(tiny_run(tiny_models, tiny_tasks, tmp_path, "gpt2", "prompt_tuning"))
    for flag, value in change.items():
        if flag == "--set":
            argv += ["--set", value]
        else:
            argv[argv.index(flag) + 1] = value
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert re.search(message, err), err
    assert not list(tmp_path.rglob("record.json")), "a failed run must not leave a record"


def test_task_with_missing_data_is_named(capsys, tiny_models, tmp_path):
    (tmp_path / "ghost.yaml").write_text(
        "name: ghost\nversion: 1\nkind: classification\nsource: {local: nowhere}\ntemplate: '{text}'\n"
        "label_field: label\nlabel_words: {0: [a], 1: [b]}\nmetrics: [accuracy]\n")
    code, _, err = run_cli(capsys, "run", "--task", "ghost", "--tasks-dir", tmp_path, "--model",
                           tiny_models["gpt2"][0], "--method", "prompt_tuning", "--results", tmp_path)
    assert code == 2
    assert "ghost.yaml [source]: data folder" in err and "nowhere does not exist" in err


def test_encoder_on_generation_task_is_refused(capsys, tiny_models, tiny_tasks, tmp_path):
    code, _, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, "roberta", "prompt_tuning", "tiny_qa"))
    assert code == 2 and "encoder" in err and "needs a classification task" in err


def test_class_label_init_needs_classification(capsys, tiny_models, tiny_tasks, tmp_path):
    argv = tiny_run(tiny_models, tiny_tasks, tmp_path, "gpt2", "prompt_tuning", "tiny_qa", "--set", "init=class_labels")
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "class_labels needs a classification task" in err


def test_a_label_word_the_tokenizer_drops_is_named_before_training(capsys, tiny_models, tiny_tasks, tmp_path):
    cards = tmp_path / "cards"
    shutil.copytree(tiny_tasks, cards)
    card = cards / "tiny_cls.yaml"
    card.write_text(card.read_text().replace("label_words: {0: [bad], 1: [good, great]}",
                                             'label_words: {0: ["\\u200b"], 1: [good, great]}'))
    argv = tiny_run(tiny_models, cards, tmp_path, "roberta", "prompt_tuning", "tiny_cls", "--set", "init=class_labels")
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "tiny_cls.yaml [label_words]: class 0: the word '\\u200b' is no token at all" in err, err
    code, _, err = run_cli(capsys, *tiny_run(tiny_models, cards, tmp_path, "roberta", "prompt_tuning", "tiny_cls"))
    assert code == 0, err  # a head reads no label word


def test_an_input_limit_that_holds_no_text_is_refused_and_cut_prompts_are_counted(capsys, tiny_models, tiny_tasks,
                                                                                   tmp_path):
    from tasks.notices import UserNotice

    cards = tmp_path / "cards"
    shutil.copytree(tiny_tasks, cards)
    card = cards / "tiny_cls.yaml"

    def run_with_limit(limit):
        card.write_text(re.sub(r"max_input_tokens: \d+", f"max_input_tokens: {limit}", card.read_text()))
        return run_cli(capsys, *tiny_run(tiny_models, cards, tmp_path / str(limit), "roberta", "lora", "tiny_cls"))

    code, _, err = run_with_limit(2)  # RoBERTa's <s> and </s> fill it
    assert code == 2 and "tiny_cls.yaml [max_input_tokens]: 2 tokens hold no text for" in err and "adds 2" in err
    with pytest.warns(UserNotice, match=r"task tiny_cls: (\d+) of \1 evaluated prompts are longer than its "
                                        r"max_input_tokens \(4\) .*; each keeps its start and end"):
        code, _, err = run_with_limit(4)
    assert code == 0, err


def test_sizes_beyond_a_split_are_noted_and_take_every_row(capsys, tiny_models, tiny_tasks, tmp_path, monkeypatch):
    from tasks.notices import UserNotice

    monkeypatch.setattr("bench.run_checks._SHORT_SPLITS_NOTED", set())  # noted once a process
    argv = tiny_run(tiny_models, tiny_tasks, tmp_path, "roberta", "lora", "tiny_cls", "--train-size", "9999",
                    "--eval-size", "9999")
    with pytest.warns(UserNotice) as caught:
        code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    noted = [str(w.message) for w in caught if "is more than the" in str(w.message)]
    assert any(re.fullmatch(r"task tiny_cls: train_size 9999 is more than the (\d+) rows of its train split; "
                            r"the run takes all \1", line) for line in noted), noted
    assert any(line.startswith("task tiny_cls: eval_size 9999 is more than the") and "validation split" in line
               for line in noted), noted
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert f"takes all {record['scores']['validation']['n']}" in next(line for line in noted if "validation" in line)


def test_an_interrupted_suite_says_so_in_a_line_and_keeps_finished_runs(capsys, monkeypatch, tmp_path):
    def interrupted(suite, **kwargs):
        raise KeyboardInterrupt  # what Ctrl-C raises mid-run

    monkeypatch.setattr("bench.suite_runner.run_suite", interrupted)
    try:
        code, _, err = run_cli(capsys, "bench", "--suite", "smoke", "--results", tmp_path)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped `spbench bench` as a traceback")
    assert code == 130
    assert err.strip().splitlines()[-1] == ("spbench bench: interrupted; finished runs are kept: the same command "
                                            "runs the others")


def test_models_lists_the_registry(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "minilm-l6" in out and "smollm2-135m" in out and "gemma3-270m" in out


@pytest.mark.parametrize("argv, refused_by, unknown", [
    (["predict", "runs/x", "--bogus"], "spbench predict", "--bogus"),
    (["results", "results/x", "--bogus", "1"], "spbench results", "--bogus 1"),
    (["--bogus", "models"], "spbench", "--bogus"),
])
def test_an_unknown_argument_is_refused_with_its_commands_usage(capsys, argv, refused_by, unknown):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2
    assert err.startswith(f"usage: {refused_by} ")  # that command's usage, not the list of commands
    assert err.rstrip().endswith(f"{refused_by}: error: unrecognized arguments: {unknown}")


EXACT_STRINGS = "return {'exact_strings': sum(p == r for p, r in zip(predictions, references)) / len(predictions)}"


@pytest.mark.parametrize("task", ["tiny_cls", "tiny_qa", "tiny_sum", "tiny_qa_local_metric"])
def test_user_cards_of_every_kind_run(capsys, tiny_models, tiny_tasks, tmp_path, task):
    """A card in the user's own folder runs through `run` with no code change."""
    cards = tiny_tasks
    if task == "tiny_qa_local_metric":  # an `evaluate` metric from a local folder, as users without a hub do
        write_string_metric(tmp_path, "exact_strings", EXACT_STRINGS)
        cards = tmp_path / "cards"  # its own folder: the session's tiny_tasks is shared by every test
        cards.mkdir()
        (cards / f"{task}.yaml").write_text(f"include: {tiny_tasks / 'tiny_qa.yaml'}\nname: {task}\n"
                                            f"metrics: [f1, 'evaluate:{tmp_path / 'exact_strings'}']\n")
    code, out, err = run_cli(capsys, *tiny_run(tiny_models, cards, tmp_path / "runs", "gpt2", "prompt_tuning", task))
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert record["task"]["name"] == task
    assert len(record["scores"]["test"]) == len(load_task(task, tasks_dirs=(str(cards),)).card.metrics) + 1
    assert sorted(p.name for p in tiny_tasks.glob("*.yaml")) == ["tiny_cls.yaml", "tiny_qa.yaml", "tiny_sum.yaml"]


def test_user_card_named_like_a_shipped_one_is_used_everywhere(capsys, tmp_path):
    """`tasks` lists, and `tasks show` shows, the same card: the user's, found by the name it declares."""
    (tmp_path / "my_sst2.yaml").write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\nname: sst2\nversion: 9\n")
    code, out, err = run_cli(capsys, "tasks", "--tasks-dir", tmp_path)
    assert code == 0, err
    assert re.search(r"^sst2 .*\(v9, .*my_sst2\.yaml\)$", out, re.MULTILINE), out  # shown with its file
    code, out, err = run_cli(capsys, "tasks", "show", "sst2", "--tasks-dir", tmp_path)
    assert code == 0, err
    assert out.startswith(f"# {(tmp_path / 'my_sst2.yaml').resolve()}\n"), out
    merged = out.split("# with what it includes, the card reads:\n")[1]  # the keys it takes from sst2 too
    assert "version: 9\n" in merged and "label_words:\n  0: [negative]\n  1: [positive]\n" in merged
    assert "=> target: 'negative'  (class 0)" in out or "=> target: 'positive'  (class 1)" in out
    card = (tmp_path / "my_sst2.yaml").resolve()
    assert out.endswith(f"(one example a split; `spbench tasks validate {card}` checks every row)\n")
    code, out, err = run_cli(capsys, "tasks", "show", "sst2")
    assert code == 0 and "tasks validate" not in out  # a shipped card's rows are checked by the tests


def test_a_shipped_card_stays_shipped_in_a_checkout_reached_through_a_symlink(capsys, monkeypatch, tmp_path):
    import tasks.registry

    linked = tmp_path / "cards"
    linked.symlink_to(SHIPPED_CARDS.resolve(), target_is_directory=True)
    monkeypatch.setattr(tasks.registry, "SHIPPED_CARDS", linked)  # as a checkout opened by its link names it
    code, out, err = run_cli(capsys, "tasks")
    assert code == 0 and not re.search(r"^sst2 .*sst2\.yaml\)$", out, re.MULTILINE), out
    code, out, err = run_cli(capsys, "tasks", "show", "sst2")
    assert code == 0 and "tasks validate" not in out, out


def test_a_missing_tasks_folder_is_refused_before_the_table_starts(capsys, tmp_path):
    code, out, err = run_cli(capsys, "tasks", "--tasks-dir", tmp_path / "nowhere")
    assert code == 2 and out == "" and f"tasks folder not found: {tmp_path / 'nowhere'}" in err
    code, out, err = run_cli(capsys, "tasks", "list", "sst2")  # a name the list would ignore
    assert code == 2 and out == "" and "tasks list takes no name (got 'sst2'): `spbench tasks show sst2`" in err


def test_the_projects_own_warnings_print_as_one_line_and_library_notices_are_left_out():
    import warnings

    import optuna

    import tasks.registry
    from bench.user_warnings import show_warnings_to_users
    from tasks.notices import SkippedInput

    show_warnings_to_users()
    ours = warnings.formatwarning("task card left out: x.yaml: bad", SkippedInput, tasks.registry.__file__, 60)
    assert ours == "spbench: warning: task card left out: x.yaml: bad\n"
    # a library's warning keeps its own form, even where it names the project's line that called it
    assert warnings.formatwarning("a note", UserWarning, tasks.registry.__file__, 3).startswith(tasks.registry.__file__)
    with warnings.catch_warnings(record=True) as caught:
        optuna.samplers.TPESampler(group=True, multivariate=True)  # experimental flags, used on purpose
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
        warnings.warn("anything else still shows", FutureWarning)
    assert [str(w.message) for w in caught] == ["anything else still shows"]


def test_a_config_of_several_tasks_says_which_one_it_runs(capsys, tiny_models, tiny_tasks, tmp_path):
    config = tmp_path / "best.yaml"
    config.write_text(f"model: {tiny_models['gpt2'][0]}\nmethod: prompt_tuning\nsettings: {{num_virtual_tokens: 2}}\n"
                      "train: {steps: 2, batch_size: 4, eval_every: 2, eval_size: 4}\ntasks: [tiny_cls, tiny_qa]\n")
    code, out, err = run_cli(capsys, "run", "--config", config, "--tasks-dir", tiny_tasks, "--results", tmp_path,
                             "--quiet")
    assert code == 0, err
    assert f"{config} holds 2 tasks (tiny_cls, tiny_qa): running tiny_cls; add --task to run another" in out
    config.write_text(config.read_text().replace("tasks: [tiny_cls, tiny_qa]", "tasks: [tiny_qa]"))
    code, out, err = run_cli(capsys, "run", "--config", config, "--task", "tiny_cls", "--tasks-dir", tiny_tasks,
                             "--results", tmp_path, "--quiet")
    assert code == 0, err
    assert f"{config} was chosen on tiny_qa; running it on tiny_cls, a task it was not chosen on" in out
    code, out, err = run_cli(capsys, "run", "--config", config, "--task", next(Path(tiny_tasks).glob("*qa*.yaml")),
                             "--results", tmp_path, "--quiet")
    assert code == 0, err
    assert "chosen on" not in out  # the card of a task it lists, given by its path


def test_a_folder_of_failed_runs_only_names_them_and_a_missing_folder_says_so(capsys, tmp_path):
    failed = tmp_path / "runs" / "sst2__m__lora__abc__s0"
    failed.mkdir(parents=True)
    (failed / "failure.json").write_text(json.dumps({"run": "sst2 / m / lora / seed 0", "run_id": failed.name,
                                                     "reason": "ModelError: no such model\nmore", "seconds": 1.0}))
    for command in ("results", "report", "plot"):
        code, _, err = run_cli(capsys, command, tmp_path / "runs")
        assert code == 2 and "1 run failed:\n  sst2 / m / lora / seed 0: ModelError: no such model\n" in err, err
    stopped = tmp_path / "runs" / "sst2__m__lora__def__s0"  # stopped after saving its adapter
    (stopped / "adapter").mkdir(parents=True)
    code, _, err = run_cli(capsys, "results", tmp_path / "runs")
    assert f"1 run folder(s) hold an adapter but no record, runs stopped before they finished (not in the table; " \
           f"rerun their commands): {stopped}" in err
    code, _, err = run_cli(capsys, "results", tmp_path / "nowhere")
    assert code == 2 and f"no such folder: {tmp_path / 'nowhere'}" in err
    (tmp_path / "a_file").write_text("")
    code, _, err = run_cli(capsys, "results", tmp_path / "a_file")
    assert code == 2 and f"not a folder: {tmp_path / 'a_file'}" in err


def test_a_storage_that_cannot_be_read_is_named_and_not_created(capsys, tmp_path):
    missing = tmp_path / "typo.db"
    code, _, err = run_cli(capsys, "results", "--storage", f"sqlite:///{missing}", "--study", "s")
    assert code == 2 and "no such database file (reading would create an empty one)" in err
    assert not missing.exists()
    code, _, err = run_cli(capsys, "results", "--storage", "bogus://nowhere", "--study", "s")
    assert code == 2 and "--storage bogus://nowhere: not a storage URL (" in err
    import optuna

    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'st.db'}")
    url = f"sqlite:///{tmp_path / 'st.db'}?timeout=30"  # the file is there: the query string is not part of it
    code, _, err = run_cli(capsys, "results", "--storage", url, "--study", "s")
    assert code == 2 and f"no run records under {url}" in err, err
    code, _, err = run_cli(capsys, "results", "--storage", "postgresql://u:secret@127.0.0.1:1/x", "--study", "s")
    assert code == 2 and "postgresql://u:***@127.0.0.1:1/x: cannot open it" in err and "secret" not in err
    for password in ("secret", "se/cret", "se@cret"):  # a URL that does not parse hides it all the same
        code, _, err = run_cli(capsys, "results", "--storage", f"postgresql://u:{password}@host:port/x", "--study", "s")
        assert code == 2 and "--storage postgresql://u:***@host:port/x: not a storage URL" in err, err
        assert "cret" not in err
    # nor as a query parameter, nor behind another parameter
    code, _, err = run_cli(capsys, "results", "--storage", "postgresql://u@127.0.0.1:1/x?sslmode=disable&password=secret",
                           "--study", "s")
    assert code == 2 and "postgresql://u@127.0.0.1:1/x?password=***&sslmode=disable: cannot open it" in err, err
    assert "secret" not in err
    code, _, err = run_cli(capsys, "results", "--storage", "postgres://u@127.0.0.1:1/x", "--study", "s")
    assert code == 2 and "not a storage URL" in err and "PostgreSQL's scheme is postgresql://" in err


@pytest.mark.parametrize("body, problem", [
    ("settings: [num_virtual_tokens, 4]", r"settings: must be a mapping, got \['num_virtual_tokens', 4\]"),
    ("train: steps=2", "train: must be a mapping, got 'steps=2'"),
    ("train: {steps: two}", "train: `steps` must be an integer, got 'two'"),
    ("train: {steps: 2.5}", "train: `steps` must be an integer, got 2.5"),
    ("train: {steps_typo: 3}", "train: unknown training setting 'steps_typo'"),
    ("train: {score_initial: 'no'}", "train: `score_initial` must be true or false, got 'no'"),
    ("settings: {init: text, init_text: 5}", "settings: `init_text` must be text, got 5"),
    ("setings: {num_virtual_tokens: 4}", "unknown key 'setings': did you mean 'settings'?"),
    ("model: [a, b]", r"`model` must be a name, got \['a', 'b'\]"),
    ("tasks: tiny_cls", "`tasks` must be a list of task names, got 'tiny_cls'"),
    ("settings: {num_virtual_tokens: -1}", r"prompt_tuning.num_virtual_tokens=-1 is out of range"),
    ("settings: {init: text}", r"prompt_tuning.init=text needs prompt_tuning.init_text"),
    ("train: {warmup_ratio: 2}", r"training setting warmup_ratio=2 is out of range"),
])
def test_a_bad_config_is_refused_naming_the_key_before_any_model_loads(capsys, tiny_tasks, tmp_path, monkeypatch,
                                                                       body, problem):
    monkeypatch.setattr("bench.run_checks.load_base_model", lambda *a, **k: pytest.fail("a model was loaded"))
    config = tmp_path / "c.yaml"
    tasks = "" if body.startswith("tasks:") else "tasks: [tiny_cls]\n"
    config.write_text(f"method: prompt_tuning\n{tasks}{body}\n")
    code, _, err = run_cli(capsys, "run", "--config", config, "--model", "gpt2-tiny", "--tasks-dir", tiny_tasks,
                           "--results", tmp_path, "--quiet")
    assert code == 2 and re.search(f"--config {re.escape(str(config))}.*{problem}", err), err


def test_a_config_given_as_a_folder_is_its_best_yaml(capsys, tiny_tasks, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text("{}")
    code, _, err = run_cli(capsys, "run", "--config", run, "--results", tmp_path, "--quiet")
    assert code == 2 and f"--config {run}: a folder with no best.yaml in it (a run's folder: its record.json" in err
    search = tmp_path / "search"
    search.mkdir()
    (search / "best.yaml").write_text("method: prompt_tuning\nsetings: {}\n")  # read, then refused by key
    code, _, err = run_cli(capsys, "run", "--config", search, "--results", tmp_path, "--quiet")
    assert code == 2 and f"--config {search / 'best.yaml'}: unknown key 'setings'" in err, err


def test_a_value_out_of_range_is_blamed_on_the_config_only_where_it_came_from(capsys, tiny_tasks, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("method: prompt_tuning\ntasks: [tiny_cls]\nsettings: {num_virtual_tokens: -1}\n")
    code, _, err = run_cli(capsys, "run", "--config", config, "--set", "num_virtual_tokens=0", "--model", "gpt2-tiny",
                           "--tasks-dir", tiny_tasks, "--results", tmp_path, "--quiet")
    assert code == 2 and "num_virtual_tokens=0 is out of range" in err and "--config" not in err, err


def test_config_values_are_read_as_a_suite_reads_them_and_another_methods_are_not_applied(
        capsys, tiny_models, tiny_tasks, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {tiny_models['gpt2'][0]}\nmethod: prompt_tuning\nsettings: {{num_virtual_tokens: 2}}\n"
                      "train: {lr: 3e-2, steps: 2, batch_size: 4, eval_every: 2, eval_size: 4}\ntasks: [tiny_cls]\n")
    code, out, err = run_cli(capsys, "run", "--config", config, "--method", "lora", "--tasks-dir", tiny_tasks,
                             "--results", tmp_path, "--quiet")
    assert code == 0, err
    assert f"{config}: its settings and learning rate are prompt_tuning's, not applied to lora" in out
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert record["train"]["lr"] == 5e-4 and record["method"]["name"] == "lora"  # LoRA's own default
    assert record["train"]["steps"] == 2  # the budget still applies

    config.write_text("settings: {num_virtual_tokens: 3}\ntrain: {monitor_size: 300, eval_size: 8}\n")  # no method
    code, out, err = run_cli(capsys, "run", "--config", config, "--task", "tiny_cls", "--model", tiny_models["gpt2"][0],
                             "--method", "prompt_tuning", "--steps", 1, "--eval-size", 4, "--tasks-dir", tiny_tasks,
                             "--results", tmp_path, "--quiet")
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert record["method"]["settings"]["num_virtual_tokens"] == 3  # a config naming no method: for --method
    assert (record["train"]["eval_size"], record["train"]["monitor_size"]) == (4, 4)
    for given in (["--set", "eval_size=4"], []):  # by --set, or by the config alone: watched as it is scored
        config.write_text("settings: {num_virtual_tokens: 3}\ntrain: {eval_size: 4}\n")
        code, out, err = run_cli(capsys, "run", "--config", config, "--task", "tiny_cls", "--model",
                                 tiny_models["gpt2"][0], "--method", "prompt_tuning", "--steps", 1, *given,
                                 "--tasks-dir", tiny_tasks, "--results", tmp_path, "--quiet")
        assert code == 0, err
        record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
        assert record["train"]["monitor_size"] == 4


def test_a_results_path_naming_a_file_is_refused_before_any_model_loads(capsys, tiny_models, tiny_tasks, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr("bench.run_checks.load_base_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr("bench.models.pool.load_base_model", lambda *a, **k: pytest.fail("a model was loaded"))
    afile = tmp_path / "afile"
    afile.write_text("hi")
    suite = tmp_path / "s.yml"
    suite.write_text("name: mine\nmodels: [gpt2-tiny]\ntasks: {tiny_cls: {steps: 1}}\nmethods: [{method: lora}]\n")
    for command in (("run", "--task", "tiny_cls", "--model", "gpt2-tiny", "--method", "lora"),
                    ("bench", "--suite", suite),
                    ("search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--trials", 1)):
        code, _, err = run_cli(capsys, *command, "--tasks-dir", tiny_tasks, "--results", afile / "under")
        assert code == 2 and f"results folder {afile / 'under'}" in err and "cannot use it" in err, (command, err)


def test_a_file_where_a_runs_folder_or_adapter_goes_is_refused_before_any_model_loads(capsys, tiny_tasks, tmp_path,
                                                                                      monkeypatch):
    from bench.run_spec import RunSpec

    monkeypatch.setattr("bench.run_checks.load_base_model", lambda *a, **k: pytest.fail("a model was loaded"))
    run = ("run", "--task", "tiny_cls", "--model", "gpt2-tiny", "--method", "lora", "--tasks-dir", tiny_tasks,
           "--results", tmp_path)
    folder = RunSpec(task="tiny_cls", model="gpt2-tiny", method="lora", tasks_dirs=(str(tiny_tasks),),
                     results_dir=tmp_path).record_path().parent
    folder.write_text("not a folder")
    code, _, err = run_cli(capsys, *run)
    assert code == 2 and f"{folder}: a file where the run's folder goes" in err, err
    folder.unlink()
    (folder / "adapter").parent.mkdir()
    (folder / "adapter").write_text("not an adapter")
    code, _, err = run_cli(capsys, *run)
    assert code == 2 and f"{folder / 'adapter'}: a file where the run's adapter goes" in err, err


def test_a_suite_writes_under_its_declared_name_by_default(capsys, tiny_tasks, tmp_path, monkeypatch):
    from bench.suite import load_suite

    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "my_file.yml"
    suite.write_text("name: mine\nmodels: [gpt2-tiny]\ntasks: {tiny_cls: {steps: 1}}\nmethods: [{method: lora}]\n")
    loaded = load_suite(str(suite), tasks_dirs=(str(tiny_tasks),))
    assert loaded.results_dir == Path("results") / "mine" and loaded.runs[0].spec.results_dir == loaded.results_dir
    assert not Path("results").exists()  # planning a suite writes nothing


def test_a_registered_model_is_not_loaded_as_another_kind(capsys, tiny_tasks, tmp_path):
    code, _, err = run_cli(capsys, "run", "--task", "tiny_cls", "--model", "minilm-l6", "--model-kind", "causal",
                           "--method", "lora", "--tasks-dir", tiny_tasks, "--results", tmp_path, "--quiet")
    assert code == 2 and "model 'minilm-l6' is a registered encoder model, not causal" in err, err


def test_a_model_folder_without_weights_is_named(capsys, tiny_models, tiny_tasks, tmp_path):
    import transformers

    folder = tmp_path / "no_weights"
    transformers.AutoTokenizer.from_pretrained(tiny_models["gpt2"][0]).save_pretrained(folder)
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2}')
    code, _, err = run_cli(capsys, "run", "--task", "tiny_cls", "--model", folder, "--method", "lora",
                           "--tasks-dir", tiny_tasks, "--results", tmp_path, "--quiet")
    assert code == 2 and f"model '{folder}': cannot load its weights from {folder}" in err and "Traceback" not in err


def test_the_last_steps_evaluation_is_the_final_validation_score_when_it_scored_the_same_examples(
        capsys, tiny_models, tiny_tasks, tmp_path, monkeypatch):
    import bench.run

    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))  # no zero-shot score cached by another test
    scored = []
    evaluate = bench.run.evaluate
    monkeypatch.setattr(bench.run, "evaluate", lambda tuned, task, examples, batch_size: scored.append(
        len(examples)) or evaluate(tuned, task, examples, batch_size))
    code, out, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, "gpt2", "prompt_tuning"),
                             "--eval-size", 6)
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert record["train"]["monitor_size"] == 6  # --eval-size below 200 caps the monitored examples
    last = {k: v for k, v in record["curve"]["eval"][-1].items() if k != "step"}
    assert record["scores"]["validation"] == last
    # and each example's score is the last evaluation's too
    assert sum(record["per_example"]["validation"]["scores"]) / 6 == pytest.approx(
        last[record["task"]["primary_metric"]])
    # the base model's two splits, the initial state's two, steps 2 and 3, and only the final test
    assert scored == [6] * 7


def test_a_study_without_its_storage_is_refused_not_ignored(capsys, tmp_path):
    code, _, err = run_cli(capsys, "results", tmp_path, "--study", "sst2__minilm-l6")
    assert code == 2 and "--study sst2__minilm-l6 needs --storage" in err


def test_a_key_error_from_a_defect_is_not_dressed_as_bad_input(monkeypatch):
    # an unknown task is refused by name (above); a KeyError from a missing record field is a bug,
    # and its traceback must show rather than a bare "error: 'validation'"
    import bench.commands.records

    def broken(args):
        raise KeyError("validation")

    monkeypatch.setattr(bench.commands.records, "results", broken)
    with pytest.raises(KeyError, match="validation"):
        main(["results", "nowhere"])


@pytest.mark.parametrize("setting, problem", [
    ("weight_decay=inf", "training setting weight_decay=inf is out of range"),
    ("dropout=nan", "lora.dropout=nan is not a number"),
])
def test_settings_that_are_not_finite_numbers_are_refused(capsys, setting, problem):
    code, _, err = run_cli(capsys, "run", "--task", "sst2", "--model", "minilm-l6", "--method", "lora",
                           "--set", setting)
    assert code == 2 and problem in err


def test_a_diverged_run_is_reported_in_a_line(capsys, tiny_models, tiny_tasks, tmp_path, monkeypatch):
    from bench.train import DivergedError

    def diverge(*args, **kwargs):
        raise DivergedError(2, float("nan"))

    monkeypatch.setattr("bench.run.train", diverge)
    code, _, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, "gpt2", "lora"))
    assert code == 2 and err.strip().splitlines() == [
        "spbench run: error: training diverged at step 2: loss is nan (a lower learning rate, or a lower "
        "max_grad_norm, usually keeps it finite)"]


@pytest.mark.parametrize("arch, method, settings, task", [
    (None, "prompt_tuning", {"init": "class_labels"}, "tiny_qa"),  # ruled out by the task: before the model loads
    ("t5", "prefix_tuning", {}, "tiny_qa"),  # by the model's kind: as it loads, before execute_run scores it
])
def test_a_run_the_method_cannot_train_is_refused_before_any_scoring(tiny_models, tiny_tasks, monkeypatch,
                                                                      arch, method, settings, task):
    from bench.methods.registry import MethodError
    from bench.run_checks import prepare_run
    from bench.run_spec import RunSpec

    if arch is None:
        monkeypatch.setattr("bench.run_checks.load_base_model", lambda *a, **k: pytest.fail("the model loaded first"))
    spec = RunSpec(task=task, model=tiny_models[arch or "gpt2"][0], method=method, method_settings=settings,
                   tasks_dirs=(str(tiny_tasks),))
    with pytest.raises(MethodError, match="class_labels needs a classification task|not supported for seq2seq"):
        prepare_run(spec)


def test_a_card_s_own_training_budget_is_the_one_recorded(capsys, tiny_models, tiny_tasks, tmp_path):
    """A few-shot variant trains on its train_size, and its record (so the tables) says so, not "all"."""
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "few.yaml").write_text(f"include: {tiny_tasks / 'tiny_cls.yaml'}\nname: tiny_few\ntrain_size: 2\n")
    code, out, err = run_cli(capsys, *tiny_run(tiny_models, cards, tmp_path / "runs", "gpt2", "lora", "tiny_few"))
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text())
    assert record["train"]["train_size"] == 2
    code, out, err = run_cli(capsys, "tasks", "--tasks-dir", cards)
    assert code == 0 and re.search(r"^tiny_few .*\(v1, trains on 2, .*few\.yaml\)$", out, re.MULTILINE), out


def test_validating_a_folder_says_what_validate_takes(capsys, tmp_path):
    code, _, err = run_cli(capsys, "tasks", "validate", tmp_path)
    assert code == 2 and f"tasks validate checks one card file; {tmp_path} is a folder" in err
