"""Gradient checkpointing: the same training for less memory, off after the run, refused where it cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from bench.methods import MethodError
from bench.models import ModelError
from bench.run_checks import prepare_run
from bench.run_spec import RunSpec
from bench.suite import load_suite
from bench.train import TrainSettings, train
from bench.train.checkpointing import recomputed_activations
from tests.test_methods_tiny import ALL_METHODS, build

ROOT = Path(__file__).parent.parent
CHECKPOINTABLE = [v for v in ALL_METHODS if not v.startswith("prefix_tuning")]


def _layer_calls(tuned) -> list[int]:
    """A counter of forward calls inside the first transformer layer (checkpointing wraps a layer's
    `forward`, so hooks on the layer itself fire once; its first weight module runs again)."""
    core = tuned.model.get_base_model() if hasattr(tuned.model, "get_base_model") else tuned.model
    layer = next(m for name, m in core.named_modules() if name.endswith(".0"))  # h.0, layers.0, layer.0, block.0
    first_leaf = next(m for m in layer.modules() if not list(m.children()))
    calls = [0]
    first_leaf.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("arch", ("gpt2", "llama", "bert", "t5"))
@pytest.mark.parametrize("variant", CHECKPOINTABLE)
def test_checkpointing_recomputes_and_trains_the_same(tiny_models, tiny_tasks, arch, variant):
    runs = {}
    for checkpointing in (False, True):
        task, base, tuned = build(tiny_models, tiny_tasks, arch, variant)
        calls = _layer_calls(tuned)
        settings = TrainSettings(steps=2, batch_size=4, warmup_ratio=0.0, gradient_checkpointing=checkpointing)
        result = train(tuned, task.examples("train")[:8], settings, lr=1e-2, progress=False)
        trained = [p.detach().clone() for p in tuned.model.parameters() if p.requires_grad]
        runs[checkpointing] = (result.losses, trained, calls[0])
        core = tuned.model.get_base_model() if hasattr(tuned.model, "get_base_model") else tuned.model
        still_on = [name for name, m in core.named_modules() if getattr(m, "gradient_checkpointing", False)]
        assert not still_on, "the model must not stay in checkpointing mode"
        assert not core.get_input_embeddings()._forward_hooks, "nor keep its input-embedding hook"
    (losses, weights, calls), (losses_cp, weights_cp, calls_cp) = runs[False], runs[True]
    assert calls_cp > calls, "the layers did not run again in the backward pass"
    assert losses_cp == pytest.approx(losses, rel=1e-5)
    # AdamW moves a weight by about the learning rate (1e-2) whatever its gradient's size, so a
    # gradient near 0 that rounds otherwise when recomputed moves it by up to twice that (T5: 1e-4
    # seen); the gradients themselves are compared below, where their size counts
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(weights, weights_cp))
    plain, recomputed = (_first_gradients(tiny_models, tiny_tasks, arch, variant, on) for on in (False, True))
    for a, b in zip(plain, recomputed):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6 * float(a.abs().max()))


def _first_gradients(tiny_models, tiny_tasks, arch: str, variant: str, checkpointing: bool) -> list[torch.Tensor]:
    """The trainable parameters' gradients of one training batch's loss (a gradient counted twice by
    the recomputation, or lost to it, differs here; AdamW's first step would not show a factor)."""
    task, _, tuned = build(tiny_models, tiny_tasks, arch, variant)
    tuned.model.train()
    torch.manual_seed(0)  # the same dropout in both
    with recomputed_activations(tuned.model, checkpointing):
        tuned.loss(task.examples("train")[:4]).loss.backward()
    return [p.grad.detach().clone() for p in tuned.model.parameters() if p.requires_grad]


def test_prefix_tuning_and_unsupported_models_are_refused_before_compute(tiny_models, tiny_tasks, monkeypatch):
    def spec(method):
        return RunSpec(task="tiny_cls", model=tiny_models["gpt2"][0], method=method, tasks_dirs=(str(tiny_tasks),),
                       train=TrainSettings(gradient_checkpointing=True))

    def no_model(*args, **kwargs):
        raise AssertionError("the method is refused before the model loads")

    with monkeypatch.context() as patch:
        patch.setattr("bench.run_checks.load_base_model", no_model)
        with pytest.raises(MethodError, match="'prefix_tuning' does not work with gradient_checkpointing"):
            prepare_run(spec("prefix_tuning"))
    monkeypatch.setattr("transformers.GPT2LMHeadModel.supports_gradient_checkpointing", False)
    with pytest.raises(ModelError, match="does not support gradient_checkpointing"):
        prepare_run(spec("prompt_tuning"))


def test_the_setting_left_off_keeps_earlier_run_ids():
    """The shipped reference records were written before the setting existed: the quick suite still finds them."""
    planned = {run.spec.run_id() for run in load_suite("quick").runs}
    shipped = {p.parent.name for p in (ROOT / "results" / "reference").glob("*/record.json")}
    assert planned == shipped
    spec = RunSpec(task="sst2", model="minilm-l6", method="prompt_tuning")
    on = RunSpec(task="sst2", model="minilm-l6", method="prompt_tuning",
                 train=TrainSettings(gradient_checkpointing=True))
    assert spec.run_id() != on.run_id()


def test_run_flag_is_recorded_and_names_its_own_run(capsys, tiny_models, tiny_tasks, tmp_path):
    from tests.test_cli import run_cli, tiny_run

    records = []
    for extra in ((), ("--gradient-checkpointing",)):
        code, out, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, "llama", "prompt_tuning",
                                                   "tiny_qa", *extra))
        assert code == 0, err
        records.append(json.loads(Path(out.strip().splitlines()[-1].removeprefix("record: ")).read_text()))
    off, on = records
    assert (off["train"]["gradient_checkpointing"], on["train"]["gradient_checkpointing"]) == (False, True)
    assert off["run_id"] != on["run_id"]
    assert on["curve"]["loss"] == pytest.approx(off["curve"]["loss"], rel=1e-5)
    assert on["cost"]["train_flops"] > off["cost"]["train_flops"]  # the layers' forward runs twice
    code, _, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, "llama", "prefix_tuning", "tiny_qa",
                                             "--gradient-checkpointing"))
    assert code == 2 and "'prefix_tuning' does not work with gradient_checkpointing" in err


def test_search_leaves_prefix_tuning_out_of_the_default_space_and_refuses_it_in_another(capsys, tiny_models,
                                                                                       tiny_tasks, tmp_path):
    from bench.cli import main
    from search.space import DEFAULT_SPACE

    def search(*extra, checkpointing=True):
        return main(["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--trials", "4", "--steps", "2",
                     "--batch-size", "4", "--eval-every", "2", "--eval-size", "4", "--pruner", "none",
                     "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks), "--study", "cp",
                     *(["--gradient-checkpointing"] if checkpointing else []), *extra])

    assert search() == 0, capsys.readouterr().err
    assert "prefix_tuning left out of the default space" in capsys.readouterr().out
    study = optuna.load_study(study_name="cp", storage=f"sqlite:///{tmp_path / 'results' / 'cp' / 'study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and {t.params["method"] for t in done} <= {"prompt_tuning", "p_tuning"}
    assert set(study.trials[0].distributions["method"].choices) == {"prompt_tuning", "p_tuning"}
    before = len(study.trials)
    # the study's method choices cannot change: resumed without the flag, it is refused before any trial
    assert search("--trials", "6", checkpointing=False) == 2
    err = capsys.readouterr().err
    assert ("method: choices prompt_tuning, p_tuning in the study, choices prompt_tuning, p_tuning, prefix_tuning "
            "now") in err
    assert "search as before (--gradient-checkpointing leaves prefix_tuning out of the default space)" in err
    assert len(optuna.load_study(study_name="cp", storage=study._storage).trials) == before
    own = tmp_path / "space.yaml"
    own.write_text(DEFAULT_SPACE.read_text())
    assert search("--space", str(own), "--study", "cp2") == 2
    assert "prefix_tuning cannot train with --gradient-checkpointing" in capsys.readouterr().err
    assert not (tmp_path / "results" / "cp2").exists()


def test_a_suite_with_checkpointing_leaves_prefix_tuning_out_and_says_so(tmp_path, tiny_models, tiny_tasks):
    path = tmp_path / "suite.yaml"
    path.write_text(f"name: cp\nmodels: [{tiny_models['gpt2'][0]}]\ntasks: {{tiny_cls: {{steps: 2}}}}\n"
                    "train: {gradient_checkpointing: true}\n"
                    "methods:\n  - {method: prompt_tuning}\n  - {method: prefix_tuning}\n")
    suite = load_suite(str(path), tasks_dirs=(str(tiny_tasks),))
    assert [(run.spec.method, run.spec.train.gradient_checkpointing) for run in suite.runs] == [("prompt_tuning", True)]
    assert suite.skipped == ["tiny_cls / prefix_tuning: cannot train with gradient_checkpointing"]


def test_records_from_before_the_setting_group_with_new_ones_left_at_its_default():
    from bench.record import read_record
    from bench.results import aggregate

    old = read_record(next((ROOT / "results" / "reference").glob("sst2__minilm-l6__lora__*/record.json")))
    old["train"].pop("gradient_checkpointing", None)  # as records written before the setting existed
    new = json.loads(json.dumps(old))
    new["seed"] = new["train"]["seed"] = 1
    new["run_id"] = old["run_id"].replace("__s0", "__s1")
    new["train"]["gradient_checkpointing"] = False
    (row,) = aggregate([old, new], split="test")
    assert row.seeds == 2
    new["train"]["gradient_checkpointing"] = True  # the same scores, other costs: a row of its own
    assert len(aggregate([old, new], split="test")) == 2


def test_a_memory_or_time_objective_keeps_its_checkpointing_setting_a_score_one_may_change_it(capsys, tiny_models,
                                                                                              tiny_tasks, tmp_path):
    from bench.cli import main
    from tests.test_search import SPACE, write_space

    space = write_space(tmp_path, SPACE)  # no prefix tuning: the method choices stay the same either way

    def search(study, *extra):
        return main(["search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0], "--steps", "2",
                     "--batch-size", "4", "--eval-every", "2", "--eval-size", "4", "--pruner", "none",
                     "--space", str(space), "--results", str(tmp_path / "results"), "--tasks-dir", str(tiny_tasks),
                     "--study", study, *extra])

    memory = ("--objective", "score,peak_memory_bytes")
    assert search("memory", "--trials", "1", *memory) == 0, capsys.readouterr().err
    assert search("memory", "--trials", "2", *memory, "--gradient-checkpointing") == 2
    assert "holds trials of other settings (--gradient-checkpointing False -> True)" in capsys.readouterr().err
    # a study recorded before the setting existed trained without it
    study = optuna.load_study(study_name="memory", storage=f"sqlite:///{tmp_path / 'results' / 'memory' / 'study.db'}")
    definition = study.user_attrs["definition"]
    del definition["gradient_checkpointing"]
    study.set_user_attr("definition", definition)
    assert search("memory", "--trials", "2", *memory) == 0, capsys.readouterr().err
    assert search("score", "--trials", "1") == 0, capsys.readouterr().err
    assert search("score", "--trials", "2", "--gradient-checkpointing") == 0, capsys.readouterr().err
