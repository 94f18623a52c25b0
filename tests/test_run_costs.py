"""The run's bookkeeping: run ids, cost figures (FLOPs, peak memory, latency), improvement, records."""

from __future__ import annotations

import pytest
import torch

from bench.cost import peak_memory, reset_peak_memory
from bench.methods import MethodError, get_method
from bench.run import RunSpec
from bench.train import TrainSettings


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
