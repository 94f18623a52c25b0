"""The run's bookkeeping: run ids, cost figures (peak memory, latency), improvement, records."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.cost import latency_against_base, peak_memory, reset_peak_memory
from bench.methods import MethodError, get_method
from bench.record import copy_tree_atomic, write_json_atomic
from bench.run import _base_of, _improvement, _latency
from bench.run_checks import _check_fits
from bench.run_spec import RunSpec
from bench.train import TrainSettings
from tasks.registry import SHIPPED_CARDS


def spec(method: str, settings: dict, **train) -> RunSpec:
    return RunSpec(task="sst2", model="minilm-l6", method=method, method_settings=settings,
                   train=TrainSettings(**train))


def test_run_id_names_the_resolved_settings():
    typed_defaults = spec("prompt_tuning", {"num_virtual_tokens": 20, "init": "sampled_vocab"}, lr=0.03)
    assert spec("prompt_tuning", {}).run_id() == typed_defaults.run_id()
    assert spec("prefix_tuning", {}).run_id() == spec("prefix_tuning", {"init": "real_tokens"}).run_id()
    assert spec("lora", {"dropout": 0}, weight_decay=0).run_id() == spec("lora", {"dropout": 0.0}).run_id()
    assert spec("prompt_tuning", {}).run_id() != spec("prompt_tuning", {"num_virtual_tokens": 10}).run_id()
    assert spec("prompt_tuning", {}).run_id() != spec("prompt_tuning", {}, lr=0.1).run_id()
    with pytest.raises(MethodError):  # settings that cannot resolve still get an id (their failure's)
        get_method("prompt_tuning").settings(bogus=1)
    assert spec("prompt_tuning", {"bogus": 1}).run_id().startswith("sst2__minilm-l6__prompt_tuning__")


def test_a_task_is_one_run_by_name_or_by_card_path_and_a_new_card_version_is_a_new_run(tmp_path):
    by_name = spec("lora", {}).run_id()
    by_path = dataclasses.replace(spec("lora", {}), task=str(SHIPPED_CARDS / "sst2.yaml")).run_id()
    assert by_path == by_name
    (tmp_path / "sst2_v2.yaml").write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\nversion: 2\n")
    newer = dataclasses.replace(spec("lora", {}), tasks_dirs=(str(tmp_path),))
    assert newer.run_id() != by_name and newer.run_id().startswith("sst2__minilm-l6__lora__")
    unknown = dataclasses.replace(spec("lora", {}), task="no_such_task")
    assert unknown.run_id().startswith("no_such_task__")  # its failure still has an id


def test_a_user_card_in_place_of_a_shipped_one_of_the_same_version_is_not_the_shipped_task(tmp_path):
    """Its records would otherwise overwrite the shipped card's in one results folder, or be skipped
    by a suite as already run."""
    (tmp_path / "my_sst2.yaml").write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\ntemplate: 'Text: {{sentence}}'\n")
    mine = dataclasses.replace(spec("lora", {}), tasks_dirs=(str(tmp_path),))
    assert mine.run_id() != spec("lora", {}).run_id() and mine.run_id().startswith("sst2__minilm-l6__lora__")
    assert dataclasses.replace(mine, task=str(tmp_path / "my_sst2.yaml")).run_id() == mine.run_id()


def test_a_model_loaded_as_another_kind_is_another_run():
    plain = spec("lora", {})
    assert dataclasses.replace(plain, model_kind="causal").run_id() != plain.run_id()
    assert dataclasses.replace(plain, model_kind="encoder").run_id() == plain.run_id()  # minilm-l6's own kind


def test_a_run_on_a_gpu_is_another_run_than_on_a_cpu(monkeypatch):
    plain = spec("lora", {})
    cpu_id = plain.run_id()
    monkeypatch.setattr("bench.run_spec.compute_precision", lambda: "cuda/bfloat16")
    assert plain.run_id() != cpu_id
    monkeypatch.setattr("bench.run_spec.compute_precision", lambda: "cpu/float32")
    assert plain.run_id() == cpu_id


def test_a_model_folder_is_one_run_however_its_path_is_typed_or_wherever_a_copy_is_kept(tmp_path, monkeypatch):
    for place, width in (("a", 32), ("b", 32), ("c", 64)):
        (tmp_path / place / "my-model").mkdir(parents=True)
        (tmp_path / place / "my-model" / "config.json").write_text(f'{{"hidden_size": {width}}}')
        (tmp_path / place / "my-model" / "model.safetensors").write_bytes(b"w" * width)
    (tmp_path / "b" / "my-model" / "README.md").write_text("notes")  # not what the model is
    monkeypatch.chdir(tmp_path / "a")
    relative = dataclasses.replace(spec("lora", {}), model="./my-model")
    assert relative.run_id().startswith("sst2__my-model__lora__")
    assert dataclasses.replace(relative, model=str(tmp_path / "a" / "my-model")).run_id() == relative.run_id()
    assert dataclasses.replace(relative, model="my-model/").run_id() == relative.run_id()
    here = relative.run_id()
    monkeypatch.chdir(tmp_path / "b")
    assert relative.run_id() == here  # a copy elsewhere (another machine of a shared suite) is the same model
    monkeypatch.chdir(tmp_path / "c")
    assert relative.run_id() != here  # another model in a folder of the same name
    assert dataclasses.replace(relative, model="org/hub-model").run_id().startswith("sst2__org_hub-model__lora__")


def test_a_variant_card_given_by_path_keeps_its_own_runs_and_an_edited_version_counts_at_once(tmp_path):
    """A card that includes sst2 and keeps its name is not what the name finds: its runs are its own."""
    variant = tmp_path / "sst2_few.yaml"
    variant.write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\ntrain_size: 16\n")
    by_path = dataclasses.replace(spec("lora", {}), task=str(variant))
    assert by_path.run_id() != spec("lora", {}).run_id() and by_path.run_id().startswith("sst2_few__")
    first = by_path.run_id()
    variant.write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\ntrain_size: 16\nversion: 2\n")
    os.utime(variant, ns=(1, 1))  # a new file state, whatever the file system's clock resolution
    assert by_path.run_id() != first


def test_a_card_given_by_path_that_its_name_does_not_find_counts_its_version_however_the_path_is_typed(
        tmp_path, monkeypatch):
    (tmp_path / "cards").mkdir()
    card = tmp_path / "cards" / "mine.yaml"
    card.write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\nname: mine\nversion: 3\n")
    monkeypatch.chdir(tmp_path)
    ids = {dataclasses.replace(spec("lora", {}), task=typed).run_id()
           for typed in (str(card), "cards/mine.yaml", "./cards/mine.yaml")}
    assert len(ids) == 1 and ids.pop().startswith("mine__")
    version_3 = dataclasses.replace(spec("lora", {}), task=str(card)).run_id()
    card.write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\nname: mine\nversion: 4\n")
    os.utime(card, ns=(1, 1))
    assert dataclasses.replace(spec("lora", {}), task=str(card)).run_id() != version_3


def test_improvement_needs_a_positive_score_before_on_that_split_alone():
    after = {"validation": {"mcc": 0.3}, "test": {"mcc": 0.4}}
    assert _improvement(after, {"validation": {"mcc": 0.2}, "test": {"mcc": 0.2}}, "mcc") == pytest.approx(
        {"validation": 50.0, "test": 100.0})
    # a split whose base score is 0 or below has no ratio; the other keeps its own, as the tables do
    assert _improvement(after, {"validation": {"mcc": 0.2}, "test": {"mcc": 0.0}}, "mcc") == {
        "validation": pytest.approx(50.0), "test": None}
    assert _improvement(after, {"validation": {"mcc": -0.1}, "test": {"mcc": 0.2}}, "mcc") == {
        "validation": None, "test": pytest.approx(100.0)}
    assert _improvement(after, None, "mcc") is None


def test_too_long_inputs_name_every_term():
    tokenizer = lambda text, add_special_tokens: {"input_ids": text.split()}  # noqa: E731 - a word a token
    base = SimpleNamespace(kind="causal", context_length=64, name="tiny", tokenizer=tokenizer)
    card = SimpleNamespace(is_classification=False, kind="qa", max_input_tokens=40, max_new_tokens=8,
                           path=SHIPPED_CARDS / "t.yaml")
    task = SimpleNamespace(card=card, name="t")
    _check_fits(base, task, 16)  # 16 + 40 + 8 = 64 fits exactly
    with pytest.raises(MethodError, match="20 virtual tokens [+] 40 input tokens [+] 8 new tokens exceed the 64 "
                                          "positions of model 'tiny'; use at most 16 virtual tokens, or a card "
                                          "that includes 't' with a smaller max_input_tokens or "
                                          "max_new_tokens"):
        _check_fits(base, task, 20)
    card.max_input_tokens = 60  # 60 + 8 leave no position for a virtual token: only the card can give
    with pytest.raises(MethodError, match="positions of model 'tiny'; use a card that includes 't'"):
        _check_fits(base, task, 20)
    card.max_input_tokens = 40
    # a classification answer is its longest label word, not max_new_tokens; without virtual tokens,
    # only the card's input length can give
    card = SimpleNamespace(is_classification=True, kind="classification", max_input_tokens=62, max_new_tokens=8,
                           label_words={"neg": ["bad"], "pos": ["very good"]}, path=SHIPPED_CARDS / "t.yaml")
    _check_fits(base, SimpleNamespace(card=card, name="t"), 0)
    card.max_input_tokens = 63
    with pytest.raises(MethodError, match="0 virtual tokens [+] 63 input tokens [+] 2 label-word tokens exceed the 64 "
                                          "positions of model 'tiny'; use a card that includes 't'"):
        _check_fits(base, SimpleNamespace(card=card, name="t"), 0)
    card.path = Path("/home/me/cards/t.yaml")  # the user's own card: the advice is to edit it
    with pytest.raises(MethodError, match="use a smaller max_input_tokens in its card /home/me/cards/t.yaml"):
        _check_fits(base, SimpleNamespace(card=card, name="t"), 0)


def test_a_rotary_models_declared_context_bounds_a_run_though_no_table_does(tiny_models):
    """A rotary model has no position table to overflow, so only its declared context stops a card
    that asks for 100,000,000 new tokens from generating until killed."""
    from bench.models import load_base_model

    base = load_base_model(tiny_models["llama"][0])
    assert base.max_positions is None and base.context_length == base.model.config.max_position_embeddings
    card = SimpleNamespace(is_classification=False, kind="summarization", max_input_tokens=48,
                           max_new_tokens=100_000_000, path=SHIPPED_CARDS / "t.yaml")
    with pytest.raises(MethodError, match=f"[+] 100000000 new tokens exceed the {base.context_length} positions"):
        _check_fits(base, SimpleNamespace(card=card, name="t"), 0)
    gpt2 = load_base_model(tiny_models["gpt2"][0])  # a learned table: its size, as before
    assert gpt2.context_length == gpt2.max_positions == 512


def test_cpu_peak_memory_is_measured_per_run():
    cpu = torch.device("cpu")
    if not reset_peak_memory(cpu):
        pytest.skip("this system cannot reset the peak resident set size (/proc/self/clear_refs)")
    block = b"\1" * (300 * 2**20)  # written, so resident
    first, kind = peak_memory(cpu, reset=True)
    del block
    reset_peak_memory(cpu)
    second, _ = peak_memory(cpu, reset=True)
    assert kind == "cpu_run_peak_rss"
    assert first - second > 250 * 2**20  # the second run's peak does not carry the first one's
    assert peak_memory(cpu, reset=False)[1] == "cpu_max_rss"


class FakeClock:
    def __init__(self, drift: float):
        self.now, self.load, self.drift = 0.0, 1.0, drift

    def __call__(self) -> float:
        return self.now


class FakeModel:
    device = torch.device("cpu")

    def __init__(self, clock: FakeClock, seconds: float, *, spike_at: int | None = None):
        self.clock, self.seconds, self.spike_at, self.calls = clock, seconds, spike_at, 0

    def prompt_batch(self, prompts):
        return prompts

    def prompt_forward(self, batch):
        self.calls += 1
        self.clock.now += self.seconds * self.clock.load + (1.0 if self.calls == self.spike_at else 0.0)
        self.clock.load *= self.clock.drift


def use_clock(monkeypatch, clock: FakeClock) -> None:
    monkeypatch.setattr("bench.cost.time", SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr("bench.cost.device_clock", lambda device: clock())


def test_latency_times_base_and_tuned_in_turn(monkeypatch):
    clock = FakeClock(drift=1.05)  # the machine slows down steadily
    use_clock(monkeypatch, clock)
    base, tuned = FakeModel(clock, 0.010), FakeModel(clock, 0.020)
    base_s, tuned_s, overhead = latency_against_base(tuned, lambda: contextlib.nullcontext(base), ["p"] * 4,
                                                     min_rounds=5, max_rounds=9)
    # a tuned time between two base times cancels the drift: 2 * 1.05 / ((1 + 1.05^2) / 2) = 1.998
    assert overhead == pytest.approx(2.0, rel=0.005)
    assert tuned_s > base_s > 0.010 / 4


def test_one_disturbed_round_does_not_move_the_overhead(monkeypatch):
    clock = FakeClock(drift=1.0)
    use_clock(monkeypatch, clock)
    base, tuned = FakeModel(clock, 0.010), FakeModel(clock, 0.020, spike_at=4)  # a 1 s stall in one round
    _, tuned_s, overhead = latency_against_base(tuned, lambda: contextlib.nullcontext(base), ["p"],
                                                min_rounds=7, max_rounds=7)
    assert overhead == pytest.approx(2.0) and tuned_s == pytest.approx(0.020)


def test_latency_without_a_base_is_the_model_against_itself(monkeypatch):
    clock = FakeClock(drift=1.0)
    use_clock(monkeypatch, clock)
    base_s, tuned_s, overhead = latency_against_base(FakeModel(clock, 0.01), None, ["p"])
    assert base_s == tuned_s and overhead == 1.0


@pytest.mark.parametrize("arch", ["gpt2", "roberta"])
@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "prefix_tuning"])
def test_base_of_a_trained_adapter_is_the_untouched_base(tiny_models, tiny_tasks, arch, method):
    from bench.modeling import TunedModel
    from bench.models import load_base_model
    from tasks import load_task

    task = load_task("tiny_cls", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(tiny_models[arch][0], num_labels=2 if arch == "roberta" else None)
    examples = task.examples("validation")[:4]
    with torch.no_grad():
        expected = TunedModel(base.model, base, task.card).loss(examples).loss
    torch.manual_seed(0)
    settings = get_method(method).settings(**({} if method == "lora" else {"num_virtual_tokens": 4}))
    model = get_method(method).build(base, settings, task.card)
    tuned = TunedModel(model, base, task.card)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=5.0)
    tuned.loss(task.examples("train")[:4]).loss.backward()
    optimizer.step()
    with torch.no_grad():
        trained = tuned.loss(examples).loss
        with _base_of(tuned) as bare:
            assert bare.num_virtual_tokens == 0
            bare.prompt_forward(bare.prompt_batch([ex.prompt for ex in examples]))  # what is timed
            # an encoder's prompt methods train its head too: the same compute, other weights
            if arch != "roberta" or method == "lora":
                torch.testing.assert_close(bare.loss(examples).loss, expected)
        torch.testing.assert_close(tuned.loss(examples).loss, trained)  # the adapter is back on
    assert not torch.allclose(trained, expected)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_records_are_readable_as_the_umask_allows(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = write_json_atomic({"a": 1}, tmp_path / "record.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_record_is_written_whole_beside_the_old_one_then_renamed_into_place(tmp_path, monkeypatch):
    path = write_json_atomic({"run": "old"}, tmp_path / "record.json")
    seen = []

    def replace_then_die(source, destination):  # the process killed at the last moment
        seen.append((json.loads(Path(source).read_text()), json.loads(Path(destination).read_text())))
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.record.os.replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic({"run": "new"}, path)
    assert seen == [({"run": "new"}, {"run": "old"})]  # the new record complete, the old one untouched
    assert json.loads(path.read_text()) == {"run": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left behind


def test_a_copied_folder_replaces_the_old_one_whole(tmp_path):
    source, destination = tmp_path / "adapter", tmp_path / "best" / "adapter"
    source.mkdir()
    (source / "weights").write_text("new")
    os.chmod(source / "weights", 0o600)  # as safetensors writes an adapter's weights
    destination.mkdir(parents=True)
    (destination / "weights").write_text("old")
    (destination / "stale").write_text("from an older winner")
    copy_tree_atomic(source, destination)
    assert sorted(p.name for p in destination.iterdir()) == ["weights"]
    assert (destination / "weights").read_text() == "new"
    assert [p.name for p in destination.parent.iterdir()] == ["adapter"]  # no staging left behind
    assert stat.S_IMODE(destination.stat().st_mode) == 0o777 & ~_current_umask()
    assert stat.S_IMODE((destination / "weights").stat().st_mode) == 0o666 & ~_current_umask()


def test_a_copy_that_fails_midway_leaves_the_old_folder(tmp_path, monkeypatch):
    source, destination = tmp_path / "adapter", tmp_path / "best" / "adapter"
    source.mkdir()
    (source / "weights").write_text("new")
    destination.mkdir(parents=True)
    (destination / "weights").write_text("old")

    def copy_then_die(src, dst, **kwargs):
        Path(dst, "weights").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr("bench.record.shutil.copytree", copy_then_die)
    with pytest.raises(OSError, match="disk full"):
        copy_tree_atomic(source, destination)
    assert (destination / "weights").read_text() == "old"
    assert [p.name for p in destination.parent.iterdir()] == ["adapter"]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_card_that_only_emulates_bf16_computes_in_fp16(monkeypatch):
    """Before Ampere, torch reports bf16 "supported" by emulation, several times slower than native fp16."""
    from bench.device import pick_dtype

    for capability, dtype in (((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        assert pick_dtype(torch.device("cuda")) == dtype
    assert pick_dtype(torch.device("cpu")) == torch.float32


def test_the_clock_waits_for_cuda_work_and_not_for_the_cpu(monkeypatch):
    from bench.device import device_clock

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", waited.append)
    device_clock(torch.device("cpu"))
    assert waited == []
    device_clock(torch.device("cuda"))
    assert waited == [torch.device("cuda")]


@pytest.mark.parametrize("method, settings", [("p_tuning", {"encoder": "lstm"}), ("p_tuning", {"encoder": "mlp"}),
                                              ("prefix_tuning", {"prefix_projection": True}), ("prompt_tuning", {})])
def test_latency_runs_the_prompt_encoder_once_as_a_saved_prompt_would(tiny_models, tiny_tasks, method, settings,
                                                                        monkeypatch):
    from bench.modeling import TunedModel
    from bench.models import load_base_model
    from bench.run import prompt_computed_once
    from tasks import load_task

    task = load_task("tiny_cls", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(tiny_models["gpt2"][0])
    torch.manual_seed(0)
    model = get_method(method).build(base, get_method(method).settings(num_virtual_tokens=4, **settings), task.card)
    tuned = TunedModel(model, base, task.card)
    encoder = model.prompt_encoder[model.active_adapter]
    parts = [module for module in encoder.modules() if module is not encoder]
    calls = []
    for module in parts:
        module.register_forward_hook(lambda *args: calls.append(1))
    batch = tuned.prompt_batch([ex.prompt for ex in task.examples("validation")[:3]])
    with torch.no_grad():
        expected = tuned.prompt_forward(batch)
        per_forward = len(calls)
        with prompt_computed_once(model):
            served = [tuned.prompt_forward(batch) for _ in range(3)]
        assert len(calls) == 2 * per_forward  # three forwards, one run of the encoder
        for output in served:
            torch.testing.assert_close(output, expected)
        tuned.prompt_forward(batch)  # afterwards the encoder runs again, as training needs
    assert len(calls) == 3 * per_forward and "forward" not in vars(encoder)

    def timed(tuned_model, base_of, prompts):  # what a run's latency measures runs under it
        assert "forward" in vars(encoder)
        return 1.0, 1.0, 1.0

    monkeypatch.setattr("bench.run.latency_against_base", timed)
    assert _latency(tuned, ["a prompt"]) == (1.0, 1.0, 1.0) and "forward" not in vars(encoder)


def test_a_tree_is_dirty_by_its_code_not_by_the_records_a_run_rewrites(tmp_path):
    import subprocess

    from bench.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "bench").mkdir()
    (tmp_path / "results" / "reference").mkdir(parents=True)
    (tmp_path / "bench" / "run.py").write_text("code\n")
    (tmp_path / "results" / "reference" / "record.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    assert git_state(tmp_path / "bench")["dirty"] is False
    (tmp_path / "results" / "reference" / "record.json").unlink()  # the reference being made again
    assert git_state(tmp_path / "bench")["dirty"] is False
    (tmp_path / "bench" / "run.py").write_text("other code\n")
    assert git_state(tmp_path / "bench")["dirty"] is True


def test_records_name_the_code_the_process_loaded_not_a_checkout_that_moved_on(capsys, tiny_models, tiny_tasks,
                                                                               tmp_path, monkeypatch):
    from bench import provenance
    from tests.test_cli import run_cli, tiny_run

    commits = iter(["loaded", "checked out later"])
    monkeypatch.setattr(provenance, "git_state", lambda: {"commit": next(commits), "dirty": False})
    provenance.code_loaded.cache_clear()
    try:
        for steps in (2, 3):  # two runs of one process, as in a suite
            code, _, err = run_cli(capsys, *tiny_run(tiny_models, tiny_tasks, tmp_path, "gpt2", "lora"),
                                   "--steps", steps)
            assert code == 0, err
    finally:
        provenance.code_loaded.cache_clear()
    commits = [json.loads(path.read_text())["environment"]["git"]["commit"] for path in tmp_path.rglob("record.json")]
    assert commits == ["loaded", "loaded"]
