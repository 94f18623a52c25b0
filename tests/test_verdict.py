"""The suite's short answer: the prompt config chosen on validation, measured against full fine-tuning."""

import json
import math
from pathlib import Path

import pytest

from bench.report import write_report
from bench.results import aggregate
from bench.verdict import NOISE_SE, reference_command, verdict_text, verdicts
from tests.test_results_and_plots import make_record


def scored(record, *, validation, n=200):
    record["scores"]["validation"]["accuracy"] = validation
    for split in ("validation", "test"):
        record["scores"][split]["n"] = n
    return record


def suite_records(n=200):
    full = scored(make_record("full_ft", 0.80, params=10_000), validation=0.80, n=n)
    full["cost"].update(train_seconds=20.0, train_flops=2e12, peak_memory_bytes=2**31, artifact_bytes=2**20,
                        latency_overhead=1.0)
    return [
        full,
        scored(make_record("lora", 0.79, params=1_000), validation=0.77, n=n),
        # best on test, not on validation: the verdict must not pick it
        scored(make_record("prompt_tuning", 0.85, params=10, num_virtual_tokens=1, init="random"), validation=0.70,
               n=n),
        scored(make_record("p_tuning", 0.76, params=100, encoder="mlp"), validation=0.78, n=n),
    ]


def test_the_prompt_config_is_chosen_on_validation_and_its_costs_are_over_full_fine_tunings():
    [verdict] = verdicts(aggregate(suite_records()))
    assert (verdict.task, verdict.model) == ("sst2", "m")
    assert verdict.prompt.method == "p_tuning" and verdict.full_ft.method == "full_ft"
    assert verdict.lora.method == "lora"
    assert verdict.cost_ratio("train_seconds") == pytest.approx(0.5)
    assert verdict.cost_ratio("train_flops") == pytest.approx(0.5)
    assert verdict.cost_ratio("peak_memory_bytes") == pytest.approx(0.5)
    # 0.76 against 0.80 on 200 examples each: about 1 SE of the difference, within noise
    assert -NOISE_SE < verdict.gap_in_se < -0.5
    text = verdict_text(verdict, split="test")
    assert text.startswith("sst2, m: the best prompt config on validation, `p_tuning[encoder=mlp,lr=0.001]`, "
                           "scores 0.760 on test against full fine-tuning's 0.800 (0.950×); a gap of 1.0 standard "
                           "errors of the difference, not told apart on these examples (the error counts each "
                           "score's examples apart, its records keeping no example's score; one seed each, so "
                           "not training's own spread).")
    assert "0.50× the training time, 0.50× the training FLOPs, 0.50× the peak memory" in text
    assert "a 4 KiB artifact against 1,024 KiB" in text and "1.10× the base model's inference latency" in text
    assert "LoRA's best scores 0.790 (0.988×)" in text
    # P-tuning's encoder trains the prompt and is left out of its artifact: its parameters say so
    assert "It costs 100 trainable parameters (1.000% of the model, its prompt encoder among them, not saved)" in text
    records = suite_records()
    records[3]["method"]["name"] = "prompt_tuning"  # a prompt saved as trained
    assert "(1.000% of the model);" in verdict_text(verdicts(aggregate(records))[0], split="test")
    records[3]["method"].update(name="prefix_tuning", settings={"prefix_projection": True})  # its projection: not saved
    assert "among them, not saved)" in verdict_text(verdicts(aggregate(records))[0], split="test")


def test_configs_tied_on_validation_give_the_cheapest_and_the_answer_says_so():
    records = suite_records()
    # three prompt configs at the same validation score; record order puts the dearest first
    records[3]["scores"]["validation"]["accuracy"] = 0.70  # p_tuning, 100 parameters
    records.insert(1, scored(make_record("prefix_tuning", 0.74, params=5_000, prefix_projection=False),
                             validation=0.70))
    [verdict] = verdicts(aggregate(records))
    assert verdict.prompt.method == "prompt_tuning" and verdict.tied == 2  # 10 parameters, the cheapest of the three
    assert ("`prompt_tuning[init=random,num_virtual_tokens=1,lr=0.001]` (tied with 2 other configs at 0.700 on "
            "validation: the cheapest, by trainable parameters, then training FLOPs), scores 0.850 on test"
            ) in verdict_text(verdict, split="test")
    # where parameters tie too, training FLOPs decide
    for record, flops in ((records[1], 3e12), (records[3], 2e12), (records[4], 1e12)):  # prefix, prompt, P-tuning
        record["cost"].update(trainable_params=10, train_flops=flops)
    assert verdicts(aggregate(records))[0].prompt.method == "p_tuning"
    # no tie, no note
    assert "tied with" not in verdict_text(verdicts(aggregate(suite_records()))[0], split="test")


def test_a_cost_whose_seeds_spread_widely_says_so_beside_its_ratio():
    records = suite_records()
    again = scored(make_record("p_tuning", 0.76, params=100, seed=1, encoder="mlp"), validation=0.78)
    records[3]["cost"]["train_seconds"], again["cost"]["train_seconds"] = 2.0, 30.0  # a busy machine's second seed
    [verdict] = verdicts(aggregate([*records, again]))
    text = verdict_text(verdict, split="test")
    assert "0.80× the training time (the seeds' figures spread ±124% of their mean), 0.50× the training FLOPs" in text
    assert "figures spread" not in verdict_text(verdicts(aggregate(suite_records()))[0], split="test")  # one seed each


def with_each(record, split_scores, examples="same 200"):
    """`record` keeping each example's score on test (its test score their mean), on `examples`."""
    record["per_example"] = {"test": {"examples": examples, "scores": split_scores}}
    record["scores"]["test"].update(accuracy=sum(split_scores) / len(split_scores), n=len(split_scores))
    return record


def test_runs_that_kept_each_example_s_score_are_compared_example_by_example():
    # 200 examples: both right on 140, both wrong on 40, the prompt alone right on 8, full FT alone on 12
    prompt_each = [1.0] * 140 + [0.0] * 40 + [1.0] * 8 + [0.0] * 12
    full_each = [1.0] * 140 + [0.0] * 40 + [0.0] * 8 + [1.0] * 12
    records = suite_records()
    with_each(records[0], full_each)
    with_each(records[3], prompt_each)
    [verdict] = verdicts(aggregate(records))
    assert verdict.paired and verdict.prompt.per_example == tuple(prompt_each)
    # Agresti and Min's adjusted Wald error, by hand: half an example added to each of the four cells
    right_wrong, wrong_right, n = 8.5, 12.5, 202
    error = math.sqrt((right_wrong + wrong_right) - (right_wrong - wrong_right) ** 2 / n) / n
    assert verdict.gap_in_se == pytest.approx((0.74 - 0.76) / error)
    # examples both runs answered alike say nothing of the gap: the paired error is about half the unpaired
    assert error < 0.6 * math.hypot(verdict.prompt.score_error, verdict.full_ft.score_error)  # 0.023 and 0.043
    assert "(the error counts the 200 examples' paired differences; one seed each" in verdict_text(verdict,
                                                                                                 split="test")
    # the same number of other examples (another sample, an edited card) does not pair up
    with_each(records[3], prompt_each, examples="other 200")
    [verdict] = verdicts(aggregate(records))
    assert not verdict.paired and "each score's examples apart, the two runs having scored other examples" in \
        verdict_text(verdict, split="test")


def test_a_handful_of_examples_that_differ_is_no_sure_gap():
    # 4 of 200 examples only full fine-tuning gets right: a plain paired error would call it 2.0 errors
    # (beyond noise); an exact sign test gives p = 0.125
    records = suite_records()
    with_each(records[0], [1.0] * 100 + [1.0] * 4 + [0.0] * 96)
    with_each(records[3], [1.0] * 100 + [0.0] * 4 + [0.0] * 96)
    [verdict] = verdicts(aggregate(records))
    assert verdict.gap_in_se == pytest.approx(-1.82, abs=0.01)
    assert "not told apart on these examples" in verdict_text(verdict, split="test")
    # two runs that answered every example alike: a gap of 0, not a missing one
    with_each(records[3], [1.0] * 104 + [0.0] * 96)
    [verdict] = verdicts(aggregate(records))
    assert verdict.gap_in_se == 0.0


def test_a_gap_beyond_the_examples_noise_is_called_so():
    [verdict] = verdicts(aggregate(suite_records(n=5000)))  # the same gap on 25 times the examples
    assert verdict.gap_in_se < -NOISE_SE
    assert "a gap of 4.8 standard errors of the difference, below it beyond the examples' noise" in \
        verdict_text(verdict, split="test")


def test_a_report_without_full_fine_tuning_says_how_to_make_it_for_a_folder_and_for_a_study(tmp_path):
    records = suite_records()[1:]
    folder = write_report(tmp_path, records=records, failures=[]).read_text()
    assert "Make one with `spbench run --task sst2 --model m --method full_ft" in folder
    study = write_report(tmp_path, records=records, failures=[], from_study=True).read_text()
    assert "spbench run" not in study  # its record would go to a folder the view does not read
    assert "A view of a study reads that study alone: list `{method: full_ft}` in the shared suite" in study


def test_without_full_fine_tuning_the_answer_says_how_to_make_it_and_without_a_prompt_method_there_is_none():
    records = suite_records()
    [verdict] = verdicts(aggregate(records[1:]))
    assert verdict.full_ft is None and verdict.gap_in_se is None
    assert verdict_text(verdict, split="test").endswith(
        "scores 0.760 on test, with no full fine-tuning run on the same data and examples to measure it against. "
        "LoRA's best scores 0.790.")
    assert reference_command(verdict, None) == "spbench run --task sst2 --model m --method full_ft"
    for record in records:  # a user's card, a model folder read as a causal LM, a results folder with a space
        record["task"]["card"] = "/home/me/my cards/sst2.yaml"
        record["model"].update(name="/models/m", kind="causal")
        record["train"].update(steps=50, batch_size=16, eval_size=200)
    [verdict] = verdicts(aggregate(records[1:]))
    assert reference_command(verdict, Path("my results")) == (
        "spbench run --task '/home/me/my cards/sst2.yaml' --model /models/m --model-kind causal --method full_ft "
        "--steps 50 --batch-size 16 --eval-size 200 --results 'my results'")
    assert verdicts(aggregate(records[:2])) == []  # references only
    for record in records:  # a registered model of its usual kind needs no --model-kind
        record["model"].update(name="minilm-l6", kind="encoder")
    [verdict] = verdicts(aggregate(records[1:]))
    assert "--model minilm-l6 --method full_ft" in reference_command(verdict, None)


def test_runs_on_other_examples_are_not_measured_against_each_other():
    records = suite_records()
    records[3] = scored(records[3], validation=0.78, n=20)  # a smoke run's prompt config
    records[3]["train"].update(steps=20, batch_size=8, eval_size=20)
    smoke, real = verdicts(aggregate(records))
    assert real.prompt.method == "prompt_tuning"  # the comparable one, though it lost on validation
    assert smoke.full_ft is None and "--steps 20 --batch-size 8 --eval-size 20" in reference_command(smoke, None)
    assert reference_command(real, None) is None


def test_the_report_opens_with_the_answer(tmp_path):
    path = write_report(tmp_path, records=suite_records(), failures=[])
    text = path.read_text()
    assert text.index("## In short") < text.index("## sst2")
    assert "- sst2, m: the best prompt config on validation, `p_tuning" in text


def test_an_error_basis_shared_by_every_answer_is_said_once(tmp_path):
    records = suite_records()
    for record in suite_records():
        record["task"]["name"] = "rte"
        records.append(record)
    text = write_report(tmp_path, records=records, failures=[]).read_text()
    short = text[text.index("## In short"):text.index("## rte")]
    assert short.count("the error counts") == 1 and short.count("standard errors of the difference") == 2
    assert "\nIn each answer, the error counts each score's examples apart, its records keeping no example's score; " \
           "one seed each, so not training's own spread.\n" in short
    records.append(scored(make_record("p_tuning", 0.77, seed=1, params=100, encoder="mlp"), validation=0.78))
    text = write_report(tmp_path, records=records, failures=[]).read_text()  # sst2's prompt config: two seeds
    short = text[text.index("## In short"):text.index("## rte")]
    assert "In each" not in short and short.count("the error counts") == 2 and "spread over seeds" in short


def test_the_report_says_why_full_fine_tuning_trains_less_than_the_whole_model_where_it_does(tmp_path):
    records = suite_records()
    records[0]["cost"]["trainable_pct"] = 99.349  # MiniLM's pooler, which mean pooling replaces, stays frozen
    assert "full fine-tuning's is below 100%" in write_report(tmp_path, records=records, failures=[]).read_text()
    records[0]["cost"]["trainable_pct"] = 100.0
    assert "below 100%" not in write_report(tmp_path, records=records, failures=[]).read_text()


def test_the_answer_names_the_text_a_prompt_started_from_which_its_label_leaves_out():
    records = suite_records()
    records[3] = scored(make_record("prompt_tuning", 0.76, params=100, init="text", num_virtual_tokens=8,
                                    init_text="Classify the sentiment of this review."), validation=0.78)
    [verdict] = verdicts(aggregate(records))
    assert "`prompt_tuning[init=text,num_virtual_tokens=8,lr=0.001]` (its prompt started from the text " \
           "'Classify the sentiment of this review.'), scores 0.760" in verdict_text(verdict, split="test")


def test_results_and_report_print_the_answer(tmp_path, capsys):
    from bench.cli import main

    for index, record in enumerate(suite_records()):
        (tmp_path / str(index)).mkdir()
        (tmp_path / str(index) / "record.json").write_text(json.dumps(record))
    (tmp_path / "stopped" / "adapter").mkdir(parents=True)  # a run stopped before writing its record
    for command in ("results", "report"):
        assert main([command, str(tmp_path)]) == 0
        out, err = capsys.readouterr()
        assert "sst2, m: the best prompt config on validation, p_tuning[encoder=mlp,lr=0.001], scores 0.760" in out
        assert "1 run folder(s) hold an adapter but no record" in err and str(tmp_path / "stopped") in err


def test_the_spread_over_seeds_widens_the_error():
    records = suite_records(n=5000)
    again = scored(make_record("p_tuning", 0.84, seed=1, params=100, encoder="mlp"), validation=0.78, n=5000)
    [verdict] = verdicts(aggregate(records + [again]))  # 0.76 and 0.84: a mean of 0.80, a wide spread
    assert verdict.prompt.seeds == 2 and abs(verdict.gap_in_se) < 0.1
    text = verdict_text(verdict, split="test")
    assert "and the prompt config's spread over seeds; one seed of full fine-tuning)" in text


def test_verdicts_of_one_task_and_model_say_what_tells_them_apart():
    smoke = [scored(record, validation=record["scores"]["validation"]["accuracy"], n=20) for record in suite_records()]
    for record in smoke:  # a smoke run of each config beside the real one
        record["run_id"] += "-smoke"
        record["train"]["eval_size"] = 20
    found = verdicts(aggregate(suite_records() + smoke))
    assert [v.task for v in found] == ["sst2 (scored on 20 examples)", "sst2 (scored on 200 examples)"]


def test_a_reference_scoring_zero_gives_no_ratio():
    records = suite_records()
    records[0]["scores"]["test"]["accuracy"] = 0.0
    [verdict] = verdicts(aggregate(records))
    text = verdict_text(verdict, split="test")
    assert "against full fine-tuning's 0.000;" in text and "LoRA's best scores 0.790." in text and "–" not in text


def test_a_score_on_the_split_it_was_chosen_on_is_called_optimistic():
    [verdict] = verdicts(aggregate(suite_records(), split="validation"))
    assert "scores 0.780 on validation (the split it was chosen on: an optimistic score)" in \
        verdict_text(verdict, split="validation")


def test_a_reference_that_learned_nothing_is_called_so_and_differing_budgets_are_named():
    records = suite_records()
    for record in records:
        record["commonest_class"] = {"test": 0.79, "validation": 0.79}
    for record in records:
        record["train"].update(steps=50, batch_size=16)
    records[0]["train"].update(steps=20)
    [verdict] = verdicts(aggregate(records))
    text = verdict_text(verdict, split="test")
    assert ("Full fine-tuning is not told apart from answering every example with the commonest class of those "
            "scored (0.790): it may not have learned at this budget, and the comparison says little.") in text
    # 0.760 against 0.790: below it, which says more than that the gap is noise
    assert ("The prompt config scores no better than answering every example with the commonest class of those "
            "scored (0.790).") in text
    assert "The budgets differ: it trained 50 steps of 16 examples, full fine-tuning 20 of 16." in text
    for record in records:
        record["commonest_class"] = {"test": 0.5, "validation": 0.5}
    assert "commonest class" not in verdict_text(verdicts(aggregate(records))[0], split="test")


@pytest.mark.parametrize("metric, expected", [("accuracy", 0.75), ("macro_f1", (2 * 0.75 / 1.75) / 2), ("mcc", 0.0)])
def test_a_run_records_what_answering_the_commonest_class_scores(tmp_path, metric, expected):
    from bench.run import commonest_class_scores
    from tasks import load_task
    from tests.test_task_cards import write_card

    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate([1, 0, 1, 1])]
    task = load_task(str(write_card(tmp_path, rows=rows, metrics=f"[{metric}]")))
    scores = commonest_class_scores(task, {"test": task.examples("test")})
    assert scores == {"test": pytest.approx(expected)}
    qa = write_card(tmp_path, rows=[{"text": "hi", "ans": "a"}], kind="qa", metrics="[f1]", label_field=None,
                    label_words=None, target_field="ans")
    assert commonest_class_scores(load_task(str(qa)), {"test": []}) is None
