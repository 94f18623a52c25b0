"""The base model's zero-shot score is computed once per (task, examples, scoring, model, dtype, split)."""

import json

from bench.run import execute_run
from bench.run_spec import RunSpec
from bench.train import TrainSettings


def test_base_zero_shot_is_cached(tmp_path, monkeypatch, tiny_models, tiny_tasks):
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(task="tiny_cls", model=tiny_models["gpt2"][0], method="lora", tasks_dirs=(str(tiny_tasks),),
                   train=TrainSettings(steps=1, batch_size=4, monitor_size=4, eval_size=6),
                   results_dir=tmp_path / "runs", progress=False)
    first = execute_run(spec)
    cached = sorted((tmp_path / "cache" / "zero_shot").glob("*.json"))
    assert len(cached) == 2  # validation and test
    for path in cached:  # a marker value: if the next run recomputed, it would not see it
        path.write_text(json.dumps({**json.loads(path.read_text()), "accuracy": 0.123}))
    second = execute_run(RunSpec(**{**spec.__dict__, "method": "prompt_tuning"}))
    assert {s["accuracy"] for s in second["base_zero_shot"].values()} == {0.123}
    assert first["base_zero_shot"]["test"]["n"] == 6


def test_template_change_invalidates_the_cache(tmp_path, monkeypatch, tiny_models, tiny_tasks):
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "tiny_cls_v2.yaml").write_text(
        f"include: {tiny_tasks / 'tiny_cls.yaml'}\nname: tiny_cls\nversion: 2\ntemplate: 'Text: {{sentence}} Label:'\n")
    train = TrainSettings(steps=1, batch_size=4, monitor_size=4, eval_size=6)
    for card in (str(tiny_tasks / "tiny_cls.yaml"), str(tmp_path / "cards" / "tiny_cls_v2.yaml")):
        execute_run(RunSpec(task=card, model=tiny_models["gpt2"][0], method="lora", train=train,
                            results_dir=tmp_path / "runs", progress=False))
    assert len(list((tmp_path / "cache" / "zero_shot").glob("*.json"))) == 4


def test_a_variant_with_other_metrics_scores_its_own(tmp_path, monkeypatch, tiny_models, tiny_tasks):
    """Same name and version as its parent, other metrics: the parent's cached scores lack them."""
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cards").mkdir()
    variant = tmp_path / "cards" / "tiny_cls_mcc.yaml"
    variant.write_text(f"include: {tiny_tasks / 'tiny_cls.yaml'}\nmetrics: [mcc, accuracy]\n")
    train = TrainSettings(steps=1, batch_size=4, monitor_size=4, eval_size=6, score_initial=False)
    records = [execute_run(RunSpec(task=card, model=tiny_models["gpt2"][0], method="lora", train=train,
                                   results_dir=tmp_path / "runs", progress=False))
               for card in (str(tiny_tasks / "tiny_cls.yaml"), str(variant))]
    assert "mcc" in records[1]["base_zero_shot"]["test"] and "mcc" not in records[0]["base_zero_shot"]["test"]
    assert len(list((tmp_path / "cache" / "zero_shot").glob("*.json"))) == 4


def test_a_cached_score_without_the_metric_is_recomputed(tmp_path, monkeypatch, tiny_models, tiny_tasks):
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(task="tiny_cls", model=tiny_models["gpt2"][0], method="lora", tasks_dirs=(str(tiny_tasks),),
                   train=TrainSettings(steps=1, batch_size=4, monitor_size=4, eval_size=6, score_initial=False),
                   results_dir=tmp_path / "runs", progress=False)
    execute_run(spec)
    for path in (tmp_path / "cache" / "zero_shot").glob("*.json"):  # e.g. written before a metric was added
        path.write_text(json.dumps({"n": 6}))
    record = execute_run(spec)
    assert {"accuracy", "macro_f1"} <= set(record["base_zero_shot"]["test"])


def test_another_scoring_rule_or_package_version_scores_again(tmp_path, monkeypatch, tiny_models, tiny_tasks):
    # a cached score of the old generation rule, or of another tokenizers/metrics release, is not reused
    import bench.zero_shot

    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))
    train = TrainSettings(steps=1, batch_size=4, monitor_size=4, eval_size=6, score_initial=False)

    def run():
        execute_run(RunSpec(task="tiny_cls", model=tiny_models["gpt2"][0], method="lora", tasks_dirs=(str(tiny_tasks),),
                            train=train, results_dir=tmp_path / "runs", progress=False))
        return len(list((tmp_path / "cache" / "zero_shot").glob("*.json")))

    assert run() == 2
    monkeypatch.setattr(bench.zero_shot, "SCORING_VERSION", bench.zero_shot.SCORING_VERSION + 1)
    assert run() == 4
    versions = bench.zero_shot.provenance.package_versions()
    monkeypatch.setattr(bench.zero_shot.provenance, "package_versions", lambda: {**versions, "transformers": "0.0"})
    assert run() == 6


def test_scores_cached_on_one_gpu_model_are_not_another_s(monkeypatch):
    import torch

    from bench.zero_shot import _device_name

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert _device_name(torch.device("cuda")) == "cuda:NVIDIA H200"
    assert _device_name(torch.device("cpu")) == "cpu"  # as before: caches made on CPU stay valid


def test_scores_cached_in_bf16_are_kept_per_batch_size(tiny_models, tiny_tasks):
    import dataclasses

    import torch

    from bench.models import load_base_model
    from bench.zero_shot import _key
    from tasks import load_task

    task = load_task("tiny_cls", tasks_dirs=(str(tiny_tasks),))
    base = load_base_model(tiny_models["gpt2"][0])
    examples = task.examples("validation")
    # in fp32 the batch does not move a score: caches made before batch sizes counted stay valid
    assert _key(task, base, "validation", examples, 8) == _key(task, base, "validation", examples, 16)
    bf16 = dataclasses.replace(base, dtype=torch.bfloat16)
    assert _key(task, bf16, "validation", examples, 8) != _key(task, bf16, "validation", examples, 16)


def test_a_cache_that_cannot_take_the_scores_costs_their_reuse_not_the_run(tmp_path, monkeypatch, tiny_models,
                                                                           tiny_tasks):
    """A read-only or shared cache failed the run after the base model was scored (hours for SQuAD)."""
    import warnings

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "zero_shot").write_text("a file where the folder should be")
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(task="tiny_cls", model=tiny_models["gpt2"][0], method="lora", tasks_dirs=(str(tiny_tasks),),
                   train=TrainSettings(steps=1, batch_size=4, monitor_size=4, eval_size=6),
                   results_dir=tmp_path / "runs", progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = execute_run(spec)
    assert record["base_zero_shot"]["test"]["n"] == 6
    assert any("cannot keep the zero-shot score in" in str(w.message) and "SPBENCH_CACHE" in str(w.message)
               for w in caught)
