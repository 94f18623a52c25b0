"""Real embedded models, short runs. Marked slow: `python -m pytest -m slow` (CI runs them)."""

import math

import pytest
import torch
from peft import PeftModel

from bench.modeling import TunedModel
from bench.models import load_base_model
from bench.run import execute_run
from bench.run_spec import RunSpec
from bench.train import TrainSettings
from tasks import load_task

pytestmark = pytest.mark.slow
SHORT = TrainSettings(steps=4, batch_size=4, eval_every=2, monitor_size=8, eval_size=16)


@pytest.mark.parametrize("model, method, settings", [
    ("minilm-l6", "prompt_tuning", {"init": "class_labels"}),
    ("minilm-l6", "prefix_tuning", {}),
    ("smollm2-135m", "p_tuning", {"encoder": "lstm"}),
])
def test_short_run_on_sst2(tmp_path, model, method, settings):
    record = execute_run(RunSpec(task="sst2", model=model, method=method, method_settings=settings,
                                 train=SHORT, results_dir=tmp_path, progress=False))
    assert record["scores"]["validation"]["n"] == 16
    losses = record["curve"]["loss"]
    assert len(losses) == SHORT.steps and all(math.isfinite(loss) for loss in losses)
    assert record["cost"]["trainable_params"] < record["cost"]["total_params"] / 100
    if record["model"]["kind"] == "causal":  # an LM reads SST-2 through its label words before any training
        assert record["base_zero_shot"]["validation"]["accuracy"] >= 0.75  # 14 of these 16 measured; chance 0.5
    else:  # an encoder's fresh head has nothing to score before training
        assert record["base_zero_shot"] is None


def test_smollm2_squad_prompt_adapter_reloads_and_generates_padding_free(tmp_path):
    record = execute_run(RunSpec(task="squad_v1", model="smollm2-135m", method="prompt_tuning",
                                 method_settings={"init": "text", "init_text": "Answer from the context."},
                                 train=TrainSettings(steps=2, batch_size=2, eval_every=2, monitor_size=4, eval_size=4),
                                 results_dir=tmp_path, progress=False))
    task = load_task("squad_v1")
    examples = task.examples("validation", limit=4)
    base = load_base_model("smollm2-135m")
    tuned = TunedModel(PeftModel.from_pretrained(base.model, record["artifact_path"]), base, task.card)
    batched = tuned.predict(examples, batch_size=4)
    assert batched == [tuned.predict([ex], batch_size=1)[0] for ex in examples]
    assert any(batched)
    assert torch.isfinite(tuned.loss(examples).loss)


def test_the_smoke_suite_runs_end_to_end_into_a_report(tmp_path, capsys):
    from bench.cli import main

    assert main(["bench", "--suite", "smoke", "--results", str(tmp_path)]) == 0
    assert "done 2, already present 0, failed 0" in capsys.readouterr().out
    assert main(["bench", "--suite", "smoke", "--results", str(tmp_path)]) == 0  # a rerun redoes nothing
    assert "done 0, already present 2, failed 0" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "2 runs finished, 0 failed" in report and "`lora[" in report and "`prompt_tuning[" in report
    assert (tmp_path / "plots" / "score_vs_trainable_params__sst2__minilm-l6.png").stat().st_size > 0
