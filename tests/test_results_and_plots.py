"""Aggregation and plot data, checked on hand-made records (numbers, not pixels)."""

import json
import math
import statistics
import warnings
from dataclasses import asdict

import pytest

from bench.config_labels import config_label
from bench.plots import data, draw
from bench.plots.render import render_all
from bench.record_folder import load_records
from bench.report import write_report
from bench.results import aggregate
from bench.results_table import format_table, write_csv
from tasks.notices import SkippedInput


def make_record(method, score, *, seed=0, task="sst2", params=100, lr=0.001, train=None, task_version=1,
                **settings):
    return {
        "run_id": f"{task}-{method}-{settings}-{seed}", "seed": seed,
        "task": {"name": task, "version": task_version, "primary_metric": "accuracy"}, "model": {"name": "m"},
        "method": {"name": method, "settings": settings}, "train": {"lr": lr, "seed": seed, **(train or {})},
        "scores": {"test": {"accuracy": score}, "validation": {"accuracy": score - 0.01}},
        "zero_shot": None, "base_zero_shot": {"test": {"accuracy": 0.5}},
        "improvement_pct": {"test": 100 * (score - 0.5) / 0.5},
        "cost": {"trainable_params": params, "trainable_pct": 1.0, "train_seconds": 10.0, "train_flops": 1e12,
                 "peak_memory_bytes": 2**30, "artifact_bytes": 4096, "latency_overhead": 1.1},
        "environment": {"hardware": {"device": "cpu"}, "packages": {"torch": "x"}, "git": {"commit": "abc"}},
    }


RECORDS = [
    make_record("full_ft", 0.90, params=10_000),
    make_record("full_ft", 0.88, seed=1, params=10_000),
    make_record("lora", 0.86, params=1_000),
    make_record("prompt_tuning", 0.70, params=10, num_virtual_tokens=1, init="random"),
    make_record("prompt_tuning", 0.80, params=100, num_virtual_tokens=10, init="random"),
    make_record("prompt_tuning", 0.84, params=100, num_virtual_tokens=10, init="class_labels"),
    make_record("prompt_tuning", 0.75, params=1_000, num_virtual_tokens=100, init="random"),
]


def test_aggregate_means_seeds_and_relates_to_full_ft():
    rows = {r.label: r for r in aggregate(RECORDS)}
    full = rows["full_ft[lr=0.001]"]
    assert (full.seeds, full.score) == (2, pytest.approx(0.89))
    assert full.score_std == pytest.approx(0.0141421, abs=1e-6)
    assert rows["lora[lr=0.001]"].relative_to_full_ft == pytest.approx(0.86 / 0.89)
    assert rows["lora[lr=0.001]"].score_std is None  # one seed: no spread, not a spread of 0
    table = {line.split()[2]: line for line in format_table(list(rows.values())).splitlines()[2:]}
    assert "0.890±0.014" in table["full_ft[lr=0.001]"] and "±" not in table["lora[lr=0.001]"]
    assert rows["prompt_tuning[init=random,num_virtual_tokens=10,lr=0.001]"].improvement_pct == pytest.approx(60.0)


def test_a_setting_without_effect_is_left_out_of_the_label_and_the_grouping():
    # a prefix's encoder size means nothing without its projection: the runs are one config
    runs = [make_record("prefix_tuning", score, seed=seed, num_virtual_tokens=20, prefix_projection=False,
                        encoder_hidden_size=size) for seed, (score, size) in enumerate([(0.8, 256), (0.7, 512)])]
    for record in runs:
        record["method"]["without_effect"] = ["encoder_hidden_size"]
    [row] = aggregate(runs)
    assert (row.label, row.seeds) == ("prefix_tuning[num_virtual_tokens=20,prefix_projection=False,lr=0.001]", 2)
    del runs[0]["method"]["without_effect"]  # a record from before records listed them: its method says
    assert [row.seeds for row in aggregate(runs)] == [2]
    assert "encoder_hidden_size" not in config_label(runs[0])
    runs[0]["method"]["settings"]["prefix_projection"] = True  # where it has an effect, it is shown
    assert "encoder_hidden_size=256" in config_label(runs[0])
    runs[0]["method"]["without_effect"] = None  # hand-edited: nothing hidden, nothing raised
    assert "encoder_hidden_size=256" in config_label(runs[0])


def test_zero_shot_is_the_base_models_whatever_a_run_scored_before_training():
    """A run's own state before training (`score_initial`: an untrained prompt, a fresh head) is no
    zero-shot baseline: every seed and method is measured against the base model, so a setting that
    only watches a run does not move its improvement."""
    base = {"test": {"accuracy": 0.4}}
    own = {**make_record("lora", 0.8), "zero_shot": {"test": {"accuracy": 0.2}}, "base_zero_shot": base,
           "improvement_pct": {"test": 300.0}}  # as older records measured it: stored, not read
    without = {**make_record("lora", 0.6, seed=1), "base_zero_shot": base}
    row, = aggregate([own, without])
    assert (row.seeds, row.zero_shot) == (2, pytest.approx(0.4))
    assert row.improvement_pct == pytest.approx(statistics.fmean([100 * 0.4 / 0.4, 100 * 0.2 / 0.4]))
    fresh_head = {**make_record("lora", 0.8), "zero_shot": {"test": {"accuracy": 0.3}}, "base_zero_shot": None}
    encoder, = aggregate([fresh_head])
    assert (encoder.zero_shot, encoder.improvement_pct) == (None, None)


def test_learning_rates_are_separate_configs():
    rows = aggregate([make_record("full_ft", 0.9), make_record("full_ft", 0.7, lr=1e-4)])
    assert sorted((r.label, r.seeds) for r in rows) == [("full_ft[lr=0.0001]", 1), ("full_ft[lr=0.001]", 1)]


def test_a_user_card_in_place_of_the_shipped_one_is_its_own_row_and_reference():
    """Same task name and version, another card file: two rows, each against its own full fine-tuning."""
    def on(card, record):
        record["task"]["card"] = card
        return record

    shipped, mine = "/a/machine/tasks/cards/sst2.yaml", "/home/me/mytasks/sst2.yaml"
    records = [on(shipped, make_record("full_ft", 0.90)), on(shipped, make_record("lora", 0.81)),
               on("/another/machine/tasks/cards/sst2.yaml", make_record("lora", 0.85, seed=1)),
               on(mine, make_record("full_ft", 0.60)), on(mine, make_record("lora", 0.54))]
    rows = {r.label: r for r in aggregate(records)}
    assert sorted(rows) == ["full_ft[lr=0.001,card=cards/sst2.yaml]", "full_ft[lr=0.001,card=mytasks/sst2.yaml]",
                            "lora[lr=0.001,card=cards/sst2.yaml]", "lora[lr=0.001,card=mytasks/sst2.yaml]"]
    assert rows["lora[lr=0.001,card=cards/sst2.yaml]"].seeds == 2  # the shipped card, read on two machines
    assert rows["lora[lr=0.001,card=cards/sst2.yaml]"].relative_to_full_ft == pytest.approx(0.83 / 0.90)
    assert rows["lora[lr=0.001,card=mytasks/sst2.yaml]"].relative_to_full_ft == pytest.approx(0.54 / 0.60)


def test_training_budgets_and_task_versions_are_separate_configs(tmp_path):
    from bench.results import reruns_left_out

    records = [make_record("full_ft", 0.60, train={"steps": 50}),
               {**make_record("full_ft", 0.70, seed=1, train={"steps": 50}), "finished_at": "2026-02"},
               {**make_record("full_ft", 0.62, seed=1, train={"steps": 50}), "finished_at": "2026-01"},
               make_record("full_ft", 0.90, train={"steps": 300}),
               make_record("full_ft", 0.80, train={"steps": 300}, task_version=2)]
    rows = aggregate(records)
    # seed 1 was run twice: it counts once, as its latest run (0.70), and the run count says so
    assert [r.score for r in rows if r.steps == 50] == [pytest.approx(0.65)]
    assert reruns_left_out(records, rows, "test") == "; 1 superseded by a later run of its seed (not counted)"
    assert reruns_left_out(records[:2], aggregate(records[:2]), "test") == ""
    assert [r.steps for r in rows] == [50, 300, 300]  # numbers in labels sort as numbers
    assert sorted((r.label, r.seeds, r.steps, r.task_version) for r in rows) == [
        ("full_ft[lr=0.001,steps=300,task_version=1]", 1, 300, 1),
        ("full_ft[lr=0.001,steps=300,task_version=2]", 1, 300, 2),
        ("full_ft[lr=0.001,steps=50,task_version=1]", 2, 50, 1)]
    header, *lines = write_csv(rows, tmp_path / "results.csv").read_text().splitlines()
    assert "steps" in header.split(",") and len(lines) == 3
    # settings every run shares stay out of the label
    assert [r.label for r in aggregate([make_record("lora", 0.8, train={"steps": 50})])] == ["lora[lr=0.001]"]


def test_settings_that_only_watch_a_run_do_not_split_its_seeds():
    rows = aggregate([make_record("lora", 0.80, train={"monitor_size": 64, "eval_every": 10}),
                      make_record("lora", 0.84, seed=1, train={"monitor_size": 200, "eval_every": 25})])
    assert [(r.label, r.seeds, r.score) for r in rows] == [("lora[lr=0.001]", 2, pytest.approx(0.82))]


def test_full_fine_tuning_reference_is_chosen_on_validation_among_runs_scored_alike():
    chosen = make_record("full_ft", 0.85, lr=1e-4)
    chosen["scores"]["validation"]["accuracy"] = 0.88
    luckier_on_test = make_record("full_ft", 0.90, lr=1e-3)
    luckier_on_test["scores"]["validation"]["accuracy"] = 0.80
    smoke = make_record("full_ft", 0.95, lr=3e-3, train={"eval_size": 20})  # scored on 20 test examples
    lora = make_record("lora", 0.80)
    rows = {r.label: r for r in aggregate([chosen, luckier_on_test, smoke, lora])}
    assert rows["lora[lr=0.001,eval_size=None]"].relative_to_full_ft == pytest.approx(0.80 / 0.85)
    assert rows["full_ft[lr=0.001,eval_size=None]"].relative_to_full_ft == pytest.approx(0.90 / 0.85)
    assert rows["full_ft[lr=0.003,eval_size=20]"].relative_to_full_ft == pytest.approx(1.0)  # its own reference
    (chart,) = data.score_cost(list(rows.values()), axis="trainable_params")
    assert chart.references["full_ft"].score == pytest.approx(0.85)
    assert data.relative_scores(list(rows.values())).values["full_ft"]["sst2 (m)"] == pytest.approx(1.0)


def test_runs_scored_on_the_same_examples_compare_however_their_eval_size_was_written():
    # a search's winner asks for 300 of a split's 30 rows; a full fine-tuning run asks for all of them
    winner = make_record("prompt_tuning", 0.6, train={"eval_size": 300})
    full = make_record("full_ft", 0.75, lr=1e-4)
    smoke = make_record("full_ft", 0.95, lr=3e-3, train={"eval_size": 4})
    for record, n in ((winner, 30), (full, 30), (smoke, 4)):
        for split in record["scores"].values():
            split["n"] = n
    rows = {r.method + str(r.examples): r for r in aggregate([winner, full, smoke])}
    assert rows["prompt_tuning30"].relative_to_full_ft == pytest.approx(0.6 / 0.75)
    assert rows["full_ft4"].relative_to_full_ft == pytest.approx(1.0)  # its own reference: 4 examples are others


def test_configs_without_a_cost_are_left_out_of_its_plot_and_front(tmp_path):
    unmeasured = make_record("lora", 0.95, params=1_000)
    del unmeasured["cost"]["train_flops"]  # a record from before the FLOP estimate, say
    rows = aggregate(RECORDS[:2] + [unmeasured])
    (chart,) = data.score_cost(rows, axis="train_flops")
    assert [p.method for p in chart.points] == ["full_ft"] and [p.method for p in chart.pareto] == ["full_ft"]
    assert chart.unmeasured == ("lora[lr=0.001]",)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_all(rows, tmp_path, axes=("train_flops",))
    assert any("1 config(s) without train_flops in their records left out" in str(w.message) for w in caught)


def test_two_versions_of_a_task_get_their_own_charts_and_report_sections(tmp_path):
    second = [make_record("full_ft", 0.70, task_version=2), make_record("lora", 0.65, task_version=2)]
    rows = aggregate(RECORDS + second)
    charts = data.score_cost(rows)
    assert sorted(chart.task for chart in charts) == ["sst2 v1", "sst2 v2"]
    assert {chart.task: len(chart.points) for chart in charts} == {"sst2 v1": 6, "sst2 v2": 2}
    assert set(data.relative_scores(rows).tasks) == {"sst2 v1 (m)", "sst2 v2 (m)"}
    report = write_report(tmp_path, records=RECORDS + second).read_text()
    assert "## sst2 v1 (accuracy)" in report and "## sst2 v2 (accuracy)" in report
    assert [chart.task for chart in data.score_cost(aggregate(RECORDS))] == ["sst2"]  # one version: its name


def test_no_ratio_to_a_full_fine_tuning_score_at_or_below_zero():
    for baseline in (-0.05, 0.0):
        rows = aggregate([make_record("full_ft", baseline), make_record("lora", 0.2)])
        assert [r.relative_to_full_ft for r in rows] == [None, None]
        assert data.relative_scores(rows).tasks == []
        assert all(line.split()[5] == "-" for line in format_table(rows).splitlines()[2:])


def test_plot_files_of_a_hub_model_stay_in_the_plots_folder(tmp_path):
    records = [make_record("full_ft", 0.9), make_record("lora", 0.8)]
    for record in records:
        record["model"]["name"] = "HuggingFaceTB/SmolLM2-135M"
    (chart,) = data.score_cost(aggregate(records))
    paths = draw.draw_score_cost(chart, tmp_path)
    assert [p.name for p in paths] == ["score_vs_trainable_params__sst2__HuggingFaceTB_SmolLM2-135M.png",
                                       "score_vs_trainable_params__sst2__HuggingFaceTB_SmolLM2-135M.svg"]
    assert all(p.parent == tmp_path and p.exists() for p in paths)


def test_prompt_length_and_init_plots_show_each_point_at_its_best_learning_rate_on_validation():
    """A line per learning rate would bury the question; the rate is chosen on validation, as a
    sweep tunes it, never on the split the chart reports."""
    records = [make_record("prompt_tuning", score, lr=lr, num_virtual_tokens=length, init=init)
               for lr, score in ((0.1, 0.8), (0.3, 0.6))
               for length, init in ((1, "random"), (20, "random"), (20, "class_labels"))]
    for record in records:  # at length 20 with random init, the worse test score is the better on validation
        settings = record["method"]["settings"]
        if record["train"]["lr"] == 0.3 and settings == {"num_virtual_tokens": 20, "init": "random"}:
            record["scores"]["validation"]["accuracy"] = 0.95
    rows = aggregate(records)
    (curve,) = data.length_curves(rows)
    assert (curve.method, curve.lengths, curve.scores, curve.lrs_chosen) == (
        "prompt_tuning[init=random]", [1, 20], [0.8, 0.6], True)
    (comparison,) = data.init_comparisons(rows)
    assert (comparison.config, comparison.inits, comparison.scores, comparison.lrs_chosen) == (
        "prompt_tuning[num_virtual_tokens=20]", ["class_labels", "random"], [0.8, 0.6], True)
    one_rate = aggregate([r for r in records if r["train"]["lr"] == 0.1])
    assert [(c.method, c.lrs_chosen, c.lrs_differ) for c in data.length_curves(one_rate)] == [
        ("prompt_tuning[init=random,lr=0.1]", False, False)]
    # one rate at each length, another at each: nothing was chosen, and no one rate names the curve
    one_each = aggregate([r for r in records if (r["train"]["lr"] == 0.1) == (r["method"]["settings"]
                                                                              ["num_virtual_tokens"] == 1)])
    assert [(c.method, c.lrs_chosen, c.lrs_differ) for c in data.length_curves(one_each)] == [
        ("prompt_tuning[init=random]", False, True)]  # the chart says so, as its label names no rate


def test_curves_and_init_groups_sort_numbers_as_numbers_and_keep_cards_and_kinds_apart():
    records = [make_record("p_tuning", 0.7, num_virtual_tokens=n, encoder_hidden_size=size)
               for size in (128, 64) for n in (1, 5)]
    assert [c.method for c in data.length_curves(aggregate(records))] == [
        "p_tuning[encoder_hidden_size=64,lr=0.001]", "p_tuning[encoder_hidden_size=128,lr=0.001]"]
    as_causal = [dict(r, model={"name": "m", "kind": "causal"}, run_id=r["run_id"] + "c")
                 for r in records if r["method"]["settings"]["encoder_hidden_size"] == 64]
    as_encoder = [dict(r, model={"name": "m", "kind": "encoder"}) for r in records]
    curves = data.length_curves(aggregate(as_encoder + as_causal))
    assert len(curves) == 3 and sum("model_kind=causal" in c.method for c in curves) == 1
    assert sorted({c.model for c in curves}) == ["m (causal)", "m (encoder)"]  # a panel each


def test_prompts_initialised_from_different_texts_are_different_configs():
    long_text = "Decide whether the review below is positive or negative."
    rows = aggregate([make_record("prompt_tuning", 0.70, num_virtual_tokens=5, init="text", init_text="Sentiment:"),
                      make_record("prompt_tuning", 0.80, num_virtual_tokens=5, init="text", init_text=long_text),
                      make_record("prompt_tuning", 0.60, num_virtual_tokens=5, init="random", init_text=None)])
    # same seed, two texts: neither run is taken for a rerun of the other, and the labels tell them apart
    assert sorted((r.label, r.seeds, r.score) for r in rows) == [
        ("prompt_tuning[init=random,num_virtual_tokens=5,lr=0.001]", 1, 0.60),
        ("prompt_tuning[init=text,num_virtual_tokens=5,lr=0.001,init_text='Decide whether the revie'…#2f4a]", 1, 0.80),
        ("prompt_tuning[init=text,num_virtual_tokens=5,lr=0.001,init_text='Sentiment:']", 1, 0.70)]
    (comparison,) = data.init_comparisons(rows)
    assert comparison.config == "prompt_tuning[num_virtual_tokens=5,lr=0.001]"
    assert comparison.inits == ["random", "text 'Decide whether the revie'…#2f4a", "text 'Sentiment:'"]
    assert comparison.scores == [0.60, 0.80, 0.70]


def test_a_text_only_matters_to_prompts_initialised_from_it():
    text = "Decide whether the review below is positive or negative."
    # a suite's shared settings may hand init_text to every init: the random-init seeds stay one config
    rows = aggregate([make_record("prompt_tuning", 0.60, init="random", init_text=text),
                      make_record("prompt_tuning", 0.70, seed=1, init="random", init_text=None),
                      make_record("prompt_tuning", 0.80, init="text", init_text=text),
                      make_record("lora", 0.85)])
    assert sorted((r.label, r.seeds) for r in rows) == [  # one text: no label needs it
        ("lora[lr=0.001]", 1), ("prompt_tuning[init=random,lr=0.001]", 2), ("prompt_tuning[init=text,lr=0.001]", 1)]
    lengths = [make_record("prompt_tuning", 0.6, num_virtual_tokens=n, init="random", init_text=t)
               for n, t in ((1, text), (20, None))]
    assert [c.lengths for c in data.length_curves(aggregate(lengths))] == [[1, 20]]


def test_texts_with_the_same_opening_get_different_labels():
    texts = ["Classify the sentiment of this review:", "Classify the sentiment of the text:"]
    rows = aggregate([make_record("prompt_tuning", 0.7, init="text", init_text=t) for t in texts])
    assert len({r.label for r in rows}) == 2


def test_the_printed_table_keeps_configs_that_differ_late_in_a_long_label_apart():
    long = {"encoder_hidden_size": 256, "init": "real_tokens", "num_virtual_tokens": 20, "prefix_projection": False}
    rows = aggregate([make_record("prefix_tuning", 0.77, lr=0.01, **long),
                      make_record("prefix_tuning", 0.76, lr=0.017, **long)])
    printed = format_table(rows)
    for row in rows:
        assert row.label in printed
    header, rule, *lines = printed.splitlines()
    assert len({len(line) for line in [header, rule, *lines]}) == 1  # columns stay aligned


def test_the_printed_table_keeps_long_task_and_model_names_whole():
    small, large = make_record("lora", 0.8, task="boolq_fewshot"), make_record("lora", 0.9, task="boolq_fewshot")
    small["model"]["name"], large["model"]["name"] = "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B"
    header, _, *lines = format_table(aggregate([small, large])).splitlines()
    assert [line.split()[:2] for line in lines] == [["boolq_fewshot", "meta-llama/Llama-3.2-1B"],
                                                    ["boolq_fewshot", "meta-llama/Llama-3.2-3B"]]
    assert all(line.index("lora[") == header.index("config") for line in lines)


def test_pareto_front_keeps_only_undominated_points():
    points = [data.Point(str(c), "x", c, s, 0) for c, s in [(10, 0.7), (100, 0.84), (100, 0.80), (1000, 0.86),
                                                          (1000, 0.75), (10_000, 0.89)]]
    front = data.pareto_front(points)
    assert [(p.cost, p.score) for p in front] == [(10, 0.7), (100, 0.84), (1000, 0.86), (10_000, 0.89)]


def test_score_cost_marks_references():
    (chart,) = data.score_cost(aggregate(RECORDS), axis="trainable_params")
    assert chart.references["full_ft"].score == pytest.approx(0.89)
    assert chart.references["lora"].cost == 1_000
    assert len(chart.points) == 6
    with pytest.raises(ValueError, match="unknown cost axis"):
        data.score_cost([], axis="carbon")


def test_each_point_is_tagged_with_what_tells_it_from_its_methods_other_points():
    records = RECORDS + [make_record("p_tuning", 0.8, encoder="mlp", num_virtual_tokens=20),
                         make_record("p_tuning", 0.8, encoder="lstm", num_virtual_tokens=20, lr=0.01,
                                     train={"gradient_checkpointing": True}),  # the same learning, less memory
                         make_record("prefix_tuning", 0.8, prefix_projection=False)]
    (chart,) = data.score_cost(aggregate(records), axis="trainable_params")
    tags = sorted((p.method, p.tag) for p in chart.points)
    assert tags == [("full_ft", ""), ("lora", ""), ("p_tuning", "lstm, lr=0.01"), ("p_tuning", "mlp, lr=0.001"),
                    ("prefix_tuning", ""),
                    ("prompt_tuning", "class_labels, tokens=10"), ("prompt_tuning", "random, tokens=1"),
                    ("prompt_tuning", "random, tokens=10"), ("prompt_tuning", "random, tokens=100")]


def test_length_curve_and_init_comparison():
    rows = aggregate(RECORDS)
    (curve,) = data.length_curves(rows)
    assert (curve.lengths, curve.scores) == ([1, 10, 100], [0.70, 0.80, 0.75])
    (comparison,) = data.init_comparisons(rows)
    assert (comparison.inits, comparison.scores) == (["class_labels", "random"], [0.84, 0.80])
    assert curve.metric == comparison.metric == "accuracy"  # each panel's axis names its task's metric
    assert comparison.commonest_class is None  # records that do not say: no line
    with_chance = [{**record, "commonest_class": {"test": 0.51, "validation": 0.5}} for record in RECORDS]
    assert data.init_comparisons(aggregate(with_chance))[0].commonest_class == 0.51  # the split the chart shows
    relative = data.relative_scores(rows)
    assert relative.values["prompt_tuning"]["sst2 (m)"] == pytest.approx(0.84 / 0.89)
    # the chart names the config behind each bar: the one of best validation score, not of best test score
    best = max((r for r in rows if r.method == "prompt_tuning"), key=lambda r: r.validation)
    assert relative.configs["prompt_tuning"]["sst2 (m)"] == best.label and best.score == pytest.approx(0.84)


def write_records(folder, records):
    """Each record in a run folder of its own under `folder`, as runs leave them."""
    for record in records:
        path = folder / f"{record['run_id']}-{record.get('finished_at', '')}" / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))


def test_corrupt_records_are_skipped_with_a_warning(tmp_path):
    write_records(tmp_path, RECORDS)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "record.json").write_text('{"run_id": "half-writ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records, _ = load_records(tmp_path)
    assert len(records) == len(RECORDS)
    assert any("broken" in str(w.message) for w in caught)


def test_records_a_table_cannot_use_are_skipped_by_name_and_stale_failures_dropped(tmp_path):
    no_metric = make_record("lora", 0.8, seed=1)
    del no_metric["scores"]["test"]["accuracy"]
    newer = {**make_record("lora", 0.8, seed=2), "schema_version": 99}
    null_cost = make_record("lora", 0.8, seed=3)
    null_cost["cost"]["train_flops"] = None
    del null_cost["environment"]
    no_validation = make_record("lora", 0.8, seed=4)  # tables choose by validation: a KeyError, before
    del no_validation["scores"]["validation"]
    nan_score = make_record("lora", 0.8, seed=5)  # json writes NaN, and reads it back as a float
    nan_score["scores"]["validation"]["accuracy"] = float("nan")
    for name, record in (("no_metric", no_metric), ("newer", newer), ("null_cost", null_cost), ("ok", RECORDS[0]),
                         ("no_validation", no_validation), ("nan_score", nan_score)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(json.dumps(record))
    failures = {"ok": {"run": "ran since", "reason": "x", "run_id": RECORDS[0]["run_id"]},
                "other": {"run": "still failed", "reason": "y", "run_id": "another"}, "junk": [1, 2]}
    for name, failure in failures.items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "failure.json").write_text(json.dumps(failure))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records, kept = load_records(tmp_path)
    said = " ".join(str(w.message) for w in caught)
    assert f"{tmp_path / 'no_metric' / 'record.json'}: no accuracy score on test" in said
    assert f"{tmp_path / 'newer' / 'record.json'}: schema version 99, newer than" in said
    assert f"{tmp_path / 'no_validation' / 'record.json'}: no validation scores" in said
    assert f"{tmp_path / 'nan_score' / 'record.json'}: its accuracy score on validation is nan" in said
    assert f"failure file left out: {tmp_path / 'junk' / 'failure.json'}: unreadable" in said
    assert sorted(r["seed"] for r in records) == [0, 3] and [f["run"] for f in kept] == ["still failed"]
    rows = aggregate(records)
    assert [math.isnan(r.train_flops) for r in rows if r.method == "lora"] == [True]  # a null cost is no number
    report = write_report(tmp_path, records=records, failures=kept).read_text()  # a record without environment
    assert "2 environments ran these records" in report
    assert report.count("- ran 1 record: sst2 (1)") == 2  # which records each environment ran


def test_one_model_loaded_as_two_kinds_is_two_configs_each_against_its_own_full_fine_tuning():
    def as_kind(record, kind):
        return {**record, "model": {"name": "m", "kind": kind}, "run_id": f"{record['run_id']}-{kind}"}

    records = [as_kind(make_record("full_ft", 0.9), "encoder"), as_kind(make_record("lora", 0.81), "encoder"),
               as_kind(make_record("full_ft", 0.6), "causal"), as_kind(make_record("lora", 0.3), "causal")]
    rows = {r.label: r for r in aggregate(records)}
    assert sorted(rows) == ["full_ft[lr=0.001,model_kind=causal]", "full_ft[lr=0.001,model_kind=encoder]",
                            "lora[lr=0.001,model_kind=causal]", "lora[lr=0.001,model_kind=encoder]"]
    assert rows["lora[lr=0.001,model_kind=encoder]"].relative_to_full_ft == pytest.approx(0.9)
    assert rows["lora[lr=0.001,model_kind=causal]"].relative_to_full_ft == pytest.approx(0.5)
    charts = data.score_cost(list(rows.values()))  # a chart each, neither's runs left out as incomparable
    assert [(c.model, len(c.points), c.incomparable) for c in charts] == [("m (causal)", 2, ()), ("m (encoder)", 2, ())]
    assert data.relative_scores(list(rows.values())).values["lora"] == {"sst2 (m (causal))": pytest.approx(0.5),
                                                                        "sst2 (m (encoder))": pytest.approx(0.9)}


def test_runs_on_another_device_or_dtype_are_another_config_against_their_own_full_fine_tuning():
    def on(record, device, dtype):
        return {**record, "model": {"name": "m", "device": device, "dtype": dtype},
                "run_id": f"{record['run_id']}-{device}"}

    records = [on(make_record("full_ft", 0.9), "cpu", "float32"), on(make_record("lora", 0.81), "cpu", "float32"),
               on(make_record("full_ft", 0.6), "cuda", "bfloat16"), on(make_record("lora", 0.3), "cuda", "bfloat16")]
    rows = {r.label: r for r in aggregate(records)}
    assert rows["lora[lr=0.001,precision=cpu/float32]"].relative_to_full_ft == pytest.approx(0.9)
    assert rows["lora[lr=0.001,precision=cuda/bfloat16]"].relative_to_full_ft == pytest.approx(0.5)
    assert len(rows) == 4  # not two seeds of each config averaged across machines
    # in bf16 the evaluation batch size moves scores: runs that differ there are two configs
    bf16 = [on(make_record("lora", 0.3, seed=seed, train={"eval_batch_size": size}), "cuda", "bfloat16")
            for seed, size in ((0, 16), (1, 32))]
    assert len(aggregate(bf16)) == 2
    fp32 = [on(make_record("lora", 0.3, seed=seed, train={"eval_batch_size": size}), "cpu", "float32")
            for seed, size in ((0, 16), (1, 32))]
    assert [row.seeds for row in aggregate(fp32)] == [2]


def test_a_record_without_what_a_row_reads_is_left_out_by_name():
    seedless = make_record("lora", 0.8)
    del seedless["seed"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = aggregate(RECORDS + [seedless])
    assert len(rows) == len(aggregate(RECORDS))
    assert any(f"run {seedless['run_id']} left out of the table: its record has no seed" in str(w.message)
               for w in caught)


def test_the_relative_plot_chooses_among_the_runs_scored_like_most(tmp_path):
    smoke_ft = make_record("full_ft", 0.50, lr=3e-3, train={"eval_size": 20})
    smoke_lora = make_record("lora", 0.99, lr=3e-3, train={"eval_size": 20})  # best validation, on 20 examples
    rows = aggregate(RECORDS + [smoke_ft, smoke_lora])
    assert data.relative_scores(rows).values["lora"]["sst2 (m)"] == pytest.approx(0.86 / 0.89)


def test_a_chart_without_any_measured_cost_is_not_drawn(tmp_path):
    records = json.loads(json.dumps(RECORDS[:3]))
    for record in records:
        del record["cost"]["train_flops"]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        paths = render_all(aggregate(records), tmp_path, axes=("train_flops",))
    assert not [p for p in paths if "train_flops" in p.name]


def test_a_run_found_twice_counts_once_by_its_latest_record(tmp_path):
    first = {**make_record("lora", 0.80), "finished_at": "2026-01-01T00:00:00"}
    again = {**make_record("lora", 0.86), "finished_at": "2026-02-01T00:00:00"}  # the same run_id: not a second seed
    write_records(tmp_path / "copy", [again])
    trial = {**make_record("lora", 0.86), "finished_at": "2026-03-01T00:00:00"}  # a search trial of the same run:
    trial["scores"] = {"validation": trial["scores"]["validation"]}  # scored on validation only
    write_records(tmp_path / "study", [trial])
    write_records(tmp_path, [first, make_record("full_ft", 0.90)])
    records, _ = load_records(tmp_path)
    (row,) = [r for r in aggregate(records) if r.method == "lora"]
    assert row.seeds == 1 and row.score == pytest.approx(0.86)  # the latest run that has test scores


def test_results_without_a_folder_leave_out_what_ships_under_results(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.chdir(tmp_path)
    write_records(tmp_path / "results", [make_record("lora", 0.86), make_record("full_ft", 0.90)])
    write_records(tmp_path / "results" / "reference", [make_record("lora", 0.50, seed=1)])
    write_records(tmp_path / "results" / "search_tables" / "sst2", [make_record("prompt_tuning", 0.7)])
    assert main(["results"]) == 0
    captured = capsys.readouterr()
    assert "\n2 runs finished, 0 failed; csv: results/results.csv" in captured.out
    assert "left out: results/reference, results/search_tables (shipped with the project" in captured.err
    assert main(["results", "results/reference"]) == 0  # named, it is read
    assert "\n1 run finished, 0 failed" in capsys.readouterr().out


def test_a_table_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path, capsys):
    from bench.cli import main

    write_records(tmp_path, [make_record("lora", 0.86), make_record("full_ft", 0.90)])
    (tmp_path / "results.csv").mkdir()  # something in the way, as a read-only folder would be
    assert main(["results", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"spbench results: error: {tmp_path / 'results.csv'}: Is a directory"


def test_a_table_interrupted_while_written_leaves_the_previous_one(tmp_path, monkeypatch):
    from bench import results_table

    rows = aggregate([make_record("lora", 0.86), make_record("full_ft", 0.90)])
    table = results_table.write_csv(rows, tmp_path / "results.csv")
    before = table.read_bytes()
    calls = []

    def killed_midway(row):
        calls.append(row)
        if len(calls) > 2:  # the header's row and the first line are through
            raise KeyboardInterrupt
        return asdict(row)

    monkeypatch.setattr(results_table, "asdict", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        results_table.write_csv(rows, table)
    assert table.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    monkeypatch.undo()

    def killed_at_the_rename(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.record.os.replace", killed_at_the_rename)  # the new table is written by then
    with pytest.raises(KeyboardInterrupt):
        results_table.write_csv(aggregate([make_record("lora", 0.5)]), table)
    assert table.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_records_of_two_flop_estimates_are_said_to_differ(tmp_path):
    import warnings

    from bench.cli import main
    from tasks.notices import UserNotice

    old, new = make_record("lora", 0.86), make_record("full_ft", 0.90)
    new["cost"] = {**new["cost"], "flops_estimate": 2}  # `old` predates the field: estimate 1
    write_records(tmp_path, [old, new])
    with pytest.warns(UserNotice, match=r"1 of 2 runs estimate training FLOPs with an older formula \(versions 1, 2\)"):
        assert main(["results", str(tmp_path)]) == 0
    old["cost"] = {**old["cost"], "flops_estimate": 2}
    write_records(tmp_path / "again", [old, new])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserNotice)
        assert main(["results", str(tmp_path / "again")]) == 0


def test_records_of_one_task_version_from_two_states_of_its_card_are_said_to_differ(tmp_path):
    import warnings

    from bench.cli import main
    from tasks.notices import UserNotice

    records = [make_record("lora", 0.86), make_record("full_ft", 0.90), make_record("full_ft", 0.88, seed=1),
               make_record("lora", 0.7, task="rte")]
    for record, digest in zip(records, ["a", "b", "b", None]):  # the rte record predates digests: not judged
        record["task"]["digest"] = digest
    write_records(tmp_path, records)
    with pytest.warns(UserNotice, match=r"task sst2 \(version 1\): its records came from 2 states of its card or data "
                                        r"at that version \(2 and 1 records\)"):
        assert main(["results", str(tmp_path)]) == 0
    records[0]["task"]["card"] = "/home/me/cards/sst2.yaml"  # a user's card of that name: another card
    write_records(tmp_path / "again", records)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserNotice)
        assert main(["results", str(tmp_path / "again")]) == 0


def test_plots_and_report_are_written(tmp_path):
    write_records(tmp_path, RECORDS)
    paths = render_all(aggregate(RECORDS), tmp_path / "plots")
    assert {p.suffix for p in paths} == {".png", ".svg"} and all(p.stat().st_size > 1000 for p in paths)
    report = write_report(tmp_path).read_text()
    assert "## sst2 (accuracy)" in report and "relative_to_full_ft.png" in report
    assert (tmp_path / "results.csv").read_text().count("\n") == 7  # header + 6 configs


def test_the_report_lists_the_records_it_left_out_and_runs_that_did_not_finish(tmp_path):
    from bench.cli import main

    write_records(tmp_path, RECORDS)
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "record.json").write_text('{"run_id": "half-writ')
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "record.json").write_text(json.dumps({**RECORDS[0], "schema_version": "2"}))
    (tmp_path / "no_cost").mkdir()
    (tmp_path / "no_cost" / "record.json").write_text(json.dumps({k: v for k, v in RECORDS[0].items() if k != "cost"}))
    (tmp_path / "stopped" / "adapter").mkdir(parents=True)  # a run killed between its adapter and its record
    with pytest.warns(SkippedInput, match="record left out: "):  # said at the terminal as well
        assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    left_out = report.split("## Records left out\n\n")[1].split("\n\n")[0].splitlines()
    assert len(left_out) == 4 and "some records left out (listed below)" in report
    assert any("cut" in line and "JSONDecodeError" in line for line in left_out)
    assert any("newer" in line and "its schema_version '2' is no version number" in line for line in left_out)
    assert any("no_cost" in line and "it has no 'cost'" in line for line in left_out)
    assert any("stopped" in line and "hold an adapter but no record" in line for line in left_out)


def test_plots_no_longer_drawn_are_removed_and_other_files_kept(tmp_path):
    folder = tmp_path / "plots"
    first = render_all(aggregate(RECORDS + [make_record("full_ft", 0.9, task="rte")]), folder, axes=("train_flops",))
    other_axis = render_all(aggregate(RECORDS), folder, axes=("train_seconds",))
    (folder / "notes.png").write_bytes(b"mine")
    again = render_all(aggregate(RECORDS), folder, axes=("train_flops",))  # rte's runs are gone
    assert {p.name for p in first} - {p.name for p in again} == {"score_vs_train_flops__rte__m.png",
                                                                 "score_vs_train_flops__rte__m.svg"}
    assert sorted(folder.iterdir()) == sorted({*again, *other_axis, folder / "notes.png"})


def test_a_validation_table_does_not_overwrite_the_test_tables_csv(tmp_path, capsys):
    from bench.cli import main

    write_records(tmp_path, RECORDS)
    assert main(["results", str(tmp_path)]) == 0
    test_table = (tmp_path / "results.csv").read_text()
    assert main(["results", str(tmp_path), "--split", "validation"]) == 0
    assert (tmp_path / "results.csv").read_text() == test_table
    assert (tmp_path / "results_validation.csv").read_text() != test_table


def test_a_validation_plot_or_report_leaves_the_test_ones_as_they_are(tmp_path):
    from bench.cli import main

    write_records(tmp_path, RECORDS)
    assert main(["report", str(tmp_path)]) == 0
    test_files = {p: p.read_bytes() for p in [tmp_path / "report.md", *(tmp_path / "plots").iterdir()]}
    assert main(["plot", str(tmp_path), "--split", "validation"]) == 0
    assert main(["report", str(tmp_path), "--split", "validation"]) == 0
    assert all(path.read_bytes() == content for path, content in test_files.items() if path.suffix != ".md")
    report = (tmp_path / "report_validation.md").read_text()
    assert "](plots_validation/relative_to_full_ft.png)" in report and "Scored on ? validation examples" in report
    assert (tmp_path / "plots_validation" / "relative_to_full_ft.svg").exists()


def test_charts_draw_the_same_svg_from_the_same_data(tmp_path):
    first = render_all(aggregate(RECORDS), tmp_path / "a")
    second = render_all(aggregate(RECORDS), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    # text is kept as text, not outlines: a figure editor can restyle a chart's words for a paper
    relative = next(p for p in first if p.name == "relative_to_full_ft.svg").read_text()
    assert ">Each method's best configuration (on validation), relative to full fine-tuning</text>" in relative


def test_score_cost_charts_hold_only_runs_scored_alike_in_the_axis_unit(tmp_path):
    smoke = make_record("prompt_tuning", 0.99, lr=3e-3, train={"eval_size": 20}, num_virtual_tokens=1, init="random")
    rows = aggregate(RECORDS + [smoke])
    (chart,) = data.score_cost(rows, axis="peak_memory_bytes")
    assert len(chart.points) == 6 and max(p.score for p in chart.pareto) == pytest.approx(0.89)
    assert chart.incomparable == ("prompt_tuning[init=random,num_virtual_tokens=1,lr=0.003,eval_size=20]",)
    assert {p.cost for p in chart.points} == {1024.0}  # 2**30 bytes, drawn in MiB
    full, single = chart.references["full_ft"], chart.references["lora"]
    # records that do not say how many examples they scored: the error bar is the seeds' alone
    assert full.error == pytest.approx(0.0141421 / math.sqrt(2), abs=1e-6) and single.error is None
    # the report says what its plots leave out, as the terminal does
    with pytest.warns(SkippedInput, match="left out of its score-cost plots"):
        report = write_report(tmp_path / "with_smoke", records=RECORDS + [smoke]).read_text()
    assert ("Left out of the plots:\n\n- sst2 / m: 1 config(s) trained on other data or scored on other examples"
            in report)
    with pytest.warns(UserWarning, match="1 config.* scored on other examples than the rest left out"):
        render_all(rows, tmp_path, axes=("peak_memory_bytes",))


def test_error_bars_are_standard_errors_of_the_examples_and_of_the_seeds_where_several(tmp_path):
    counted = [{**record, "scores": {split: {**scores, "n": 200} for split, scores in record["scores"].items()}}
               for record in RECORDS]
    rows = aggregate(counted)
    (chart,) = data.score_cost(rows)
    full, single = chart.references["full_ft"], chart.references["lora"]
    examples = {split: math.sqrt(score * (1 - score) / 200) for split, score in (("full", 0.89), ("lora", 0.86))}
    # Agresti-Coull on 200 examples is within a few percent of the plain binomial error
    assert single.error == pytest.approx(examples["lora"], rel=0.05)
    assert full.error == pytest.approx(math.sqrt(examples["full"] ** 2 + 0.0141421 ** 2 / 2), rel=0.05)
    assert full.error > math.sqrt(examples["full"] ** 2)  # the seeds widen it
    relative = data.relative_scores(rows)
    ratio = relative.values["lora"]["sst2 (m)"]
    assert ratio == pytest.approx(0.86 / 0.89)
    assert relative.errors["lora"]["sst2 (m)"] == pytest.approx(
        ratio * math.hypot(single.error / 0.86, full.error / 0.89))
    assert relative.errors["full_ft"]["sst2 (m)"] is None  # the reference itself: 1 by definition
    # the title says whose seeds are in the bars: LoRA's one seed against full fine-tuning's two
    assert relative.seeds["lora"]["sst2 (m)"] == (1, 2)
    svg = (tmp_path / "relative_to_full_ft.svg")
    draw.draw_relative(relative, tmp_path)
    assert ">scored examples and, where several, the seeds)</text>" in svg.read_text()  # its second line
    single_seeds = aggregate([record for record in counted if record["seed"] == 0])
    draw.draw_relative(data.relative_scores(single_seeds), tmp_path)
    assert "where several" not in svg.read_text() and ">scored examples)</text>" in svg.read_text()


def test_a_task_without_full_fine_tuning_is_named_beside_the_relative_chart(tmp_path):
    other_task = [make_record("lora", 0.6, task="rte"), make_record("prompt_tuning", 0.5, task="rte",
                                                                       num_virtual_tokens=4, init="random")]
    rows = aggregate(RECORDS + other_task)
    relative = data.relative_scores(rows)
    assert relative.tasks == ["sst2 (m)"] and relative.without_reference == ("rte (m)",)
    with pytest.warns(SkippedInput, match=r"rte \(m\): no full fine-tuning score to relate to"):
        render_all(rows, tmp_path)


def test_no_relative_change_is_averaged_over_the_seeds_with_a_baseline_only():
    missing = {**make_record("lora", 0.4), "zero_shot": None, "base_zero_shot": None}
    row, = aggregate([make_record("lora", 0.8, seed=1), missing])
    assert row.improvement_pct is None


def test_no_relative_change_is_averaged_over_some_seeds_only():
    # a seed whose score before training is 0 (exact match of an untrained prompt) has no relative
    # change; the others' mean beside a zero-shot mean over both would misstate the row
    zero = {**make_record("lora", 0.4), "base_zero_shot": {"test": {"accuracy": 0.0}}}
    other = {**make_record("lora", 0.2, seed=1), "base_zero_shot": {"test": {"accuracy": 0.1}}}
    row, = aggregate([zero, other])
    assert row.zero_shot == pytest.approx(0.05) and row.improvement_pct is None


def test_the_report_dashes_missing_figures_and_keeps_its_table_whole(tmp_path):
    records = json.loads(json.dumps(RECORDS[:3]))
    del records[2]["cost"]["latency_overhead"]
    records.append(make_record("prompt_tuning", 0.7, init="text", init_text="yes | no", num_virtual_tokens=4,
                               train={"eval_size": 500, "steps": 50, "batch_size": 16}))
    records[-1]["scores"]["test"]["n"] = 277  # a split smaller than eval_size: the examples scored are said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = write_report(tmp_path / "mine", records=records).read_text()
    assert report.startswith("# softprompt-bench report: mine\n")
    rows = [line for line in report.splitlines() if line.startswith("| m |")]
    assert len(rows) == 3 and all(line.count(" | ") == 12 for line in [r.replace("\\|", "") for r in rows])
    assert "nan" not in report and "| – |" in report
    # the score's standard error from the 277 examples it is over (Agresti-Coull: (0.7 * 277 + 2) / 281)
    assert "| 0.700 | 0.027 |" in report
    assert "Scored on 277 or ? test examples; trained for 50 or ? steps of 16 or ? examples." in report


def test_every_method_has_a_colour_of_its_own_and_an_unknown_one_a_spare():
    from bench.methods import METHODS

    assert set(METHODS) <= set(draw.METHOD_COLOURS), "give a new method a colour in bench.plots.draw.METHOD_COLOURS"
    assert len(set(draw.METHOD_COLOURS.values())) == len(draw.METHOD_COLOURS)
    spare = draw.method_colour("a_method_from_a_newer_version")
    assert spare in draw.SPARE_COLOURS and spare not in draw.METHOD_COLOURS.values()
    assert draw.method_colour("a_method_from_a_newer_version") == spare  # the same in every chart


def test_measured_costs_carry_their_spread_over_seeds_into_the_csv_and_the_report(tmp_path):
    first, second = make_record("lora", 0.86), make_record("lora", 0.88, seed=1)
    second["cost"] = {**second["cost"], "train_seconds": 14.0, "peak_memory_bytes": 2**30 + 2 * 2**20}
    (row,) = aggregate([first, second])
    assert row.train_seconds == 12.0 and row.train_seconds_std == pytest.approx(2.828427, abs=1e-6)
    assert row.peak_memory_bytes_std == pytest.approx(math.sqrt(2) * 2**20)
    assert row.latency_overhead_std == 0.0  # measured alike in both seeds: a spread of 0, not none
    (single,) = aggregate([first])
    assert single.train_seconds_std is None  # one seed has no spread
    older = {**second, "cost": {k: v for k, v in second["cost"].items() if k != "latency_overhead"}}
    (partial,) = aggregate([first, older])  # a record from before latency was measured
    assert partial.latency_overhead_std is None and partial.train_seconds_std == row.train_seconds_std
    header, line = write_csv([row], tmp_path / "results.csv").read_text().splitlines()
    cells = dict(zip(header.split(","), line.split(",")))
    assert cells["train_seconds_std"].startswith("2.828")
    # counts as the whole numbers they are; a mean of two memory peaks a megabyte apart, as it is
    assert (cells["trainable_params"], cells["artifact_bytes"], cells["peak_memory_bytes"]) == ("100", "4096",
                                                                                               str(2**30 + 2**20))
    header, line = write_csv([partial], tmp_path / "results.csv").read_text().splitlines()
    assert dict(zip(header.split(","), line.split(",")))["latency_overhead"] == ""  # unmeasured: empty, not "nan"
    (folder := tmp_path / "runs").mkdir()
    for record in (first, second):
        (folder / record["run_id"]).mkdir()
        (folder / record["run_id"] / "record.json").write_text(json.dumps(record))
    report = write_report(folder).read_text()
    assert "| 12.0 ± 2.8 |" in report and "| 1,025 ± 1 |" in report and "| 1.10 ± 0.00 |" in report


def test_error_bars_stop_at_the_metric_s_range():
    # a perfect accuracy's bar goes down only; a correlation reaches below 0; a ratio or an unknown metric is not cut
    below, above = draw._error_bars([0.04, 0.04, None], [1.0, 0.98, 0.5], "accuracy")
    assert below[:2] == [0.04, 0.04] and above[:2] == [0.0, pytest.approx(0.02)]
    assert math.isnan(below[2]) and math.isnan(above[2])  # unknown: no bar
    assert draw._error_bars([0.1], [-0.95], "mcc") == [[pytest.approx(0.05)], [0.1]]
    assert draw._error_bars([0.1], [0.99]) == [0.1]
    assert draw._error_bars([0.1], [0.99], "evaluate:bleu") == [0.1]


def test_the_error_bars_say_what_they_are_for_the_metrics_drawn():
    assert draw._error_note([0.02], ["accuracy"]).endswith("of the scored examples and, where several, the seeds")
    assert draw._error_note([0.02], ["mcc"]) == "error bars: ±1 standard error of the mean over seeds"
    assert "where the metric is a mean over them" in draw._error_note([0.02, None], ["accuracy", "macro_f1"])
    assert draw._error_note([None], ["accuracy"]) == "no error bars: no standard error known"
    # one seed each: the examples' error alone; several each: the seeds' spread too; some: where several
    assert draw._error_note([0.02], ["accuracy"], seeds=[1, 1]).endswith("±1 standard error, of the scored examples")
    assert draw._error_note([0.02], ["accuracy"], seeds=[3, 3]).endswith("of the scored examples and the seeds")
    assert draw._error_note([0.02], ["accuracy"], seeds=[1, 3]).endswith("and, where several, the seeds")
    rows = aggregate(RECORDS)
    assert {p.seeds for chart in data.score_cost(rows) for p in chart.points} == {1, 2}  # full FT has two seeds
    assert data.length_curves(rows)[0].seeds == (1, 1, 1) and data.init_comparisons(rows)[0].seeds == (1, 1)
    # the relative chart's bars are a ratio's error, wider than the report's paired one: said so
    assert draw._error_note([0.02], ["accuracy"], of=draw.RATIO_ERROR).startswith(
        "error bars: ±1 standard error of the ratio (from both scores' errors, unpaired), of the scored examples")


def test_init_panels_of_one_metric_share_an_axis_that_stops_near_its_maximum(tmp_path):
    import matplotlib.figure

    comparisons = [data.InitComparison(task, "m", "prompt_tuning[num_virtual_tokens=20]", ["random", "class_labels"],
                                       scores, [0.03, 0.03], "accuracy")
                   for task, scores in (("ag_news", [0.89, 0.87]), ("sst2", [0.70, 0.66]))]
    limits = []
    original = matplotlib.figure.Figure.savefig

    def saved(figure, path, **options):
        limits.extend(axes.get_ylim() for axes in figure.axes if axes.get_visible())
        return original(figure, path, **options)

    matplotlib.figure.Figure.savefig = saved
    try:
        draw.draw_inits(comparisons, tmp_path)
    finally:
        matplotlib.figure.Figure.savefig = original
    assert set(limits) == {(0.0, 1.0)}  # accuracy tops out at 1: not 1.07, and sst2's not at 0.84
    assert draw._score_limits([comparisons[1]._replace(metric="mcc", scores=[-0.2, 0.3])]) == \
        pytest.approx((-0.24, 0.36))  # a correlation can be below 0; room above the top bar
    # the commonest class's line above every bar (nothing learned) stays on the chart
    assert draw._score_limits([comparisons[1]._replace(scores=[0.5, 0.48], commonest_class=0.62)])[1] > 0.62


def test_tags_of_points_close_together_are_drawn_a_line_apart_and_inside_the_axes(tmp_path, monkeypatch):
    import matplotlib.figure

    # close costs on a linear axis, no reference line (whose limits matplotlib settles only when asked)
    points = [data.Point("a", "p_tuning", 1.00e5, 0.80, None, "mlp"),
              data.Point("b", "p_tuning", 1.05e5, 0.80, None, "lstm"),
              data.Point("c", "prompt_tuning", 0.5e5, 0.50, None, "random")]
    chart = data.ScoreCost("t", "m", "accuracy", "trainable_params", points, data.pareto_front(points), {})
    drawn, savefig = {}, matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, path, **options: (drawn.update(
        {text.get_text(): text for text in figure.axes[0].texts}), savefig(figure, path, **options)))
    draw.draw_score_cost(chart, tmp_path)
    assert abs(drawn["mlp"].xyann[1] - drawn["lstm"].xyann[1]) >= draw.LINE  # a line apart
    assert drawn["random"].xyann == (5, 3) and drawn["random"].get_ha() == "left"
    # the rightmost point's tag would cross the axes' edge: it ends left of its point
    assert drawn["lstm"].xyann[0] < 0 and drawn["lstm"].get_ha() == "right"


def test_points_at_nearly_one_cost_are_set_side_by_side_and_the_front_s_points_are_filled(tmp_path, monkeypatch):
    """LoRA and prefix tuning at one FLOP count drew one marker over the other and one error bar: points
    within NEAR of the axis's span are moved a few points apart, in their order along the axis."""
    import matplotlib.colors
    import matplotlib.figure

    points = [data.Point("pt_a", "prompt_tuning", 1.00e12, 0.70, 0.03, "class_labels"),
              data.Point("lora", "lora", 1.002e12, 0.735, 0.03),
              data.Point("prefix", "prefix_tuning", 1.003e12, 0.735, 0.03),
              data.Point("full", "full_ft", 1.5e12, 0.745, 0.03),
              data.Point("pt_b", "prompt_tuning", 1.7e12, 0.69, 0.03, "sampled_vocab")]
    dodges = draw._dodges(points, log=False)
    assert set(dodges) == {0, 1, 2}  # full fine-tuning and the last stand alone
    # by cost, then legend order at one cost: the cheapest stays leftmost
    assert [dodges[i].offset for i in (0, 1, 2)] == [-draw.DODGE, 0.0, draw.DODGE]
    assert {dodges[i].reach for i in (0, 1, 2)} == {draw.DODGE}
    assert draw._dodges(points[:1], log=False) == {} and draw._dodges([points[0], points[3]], log=True) == {}
    # on a log axis nearness is a ratio: 1e4 and 1.1e4 are near beside 1e7, not beside 2e4
    wide = [data.Point("a", "lora", 1e4, 0.5, None), data.Point("b", "p_tuning", 1.1e4, 0.5, None),
            data.Point("c", "full_ft", 1e7, 0.5, None)]
    assert set(draw._dodges(wide, log=True)) == {0, 1}
    assert draw._dodges([*wide[:2], data.Point("c", "full_ft", 2e4, 0.5, None)], log=True) == {}
    # many trials at one cost are set closer rather than across the chart, numbered in order
    trials = [data.Point(f"#{n}", "prompt_tuning", 100, 0.5 + n / 100, None) for n in range(15)]
    crowded = draw._dodges([*trials, data.Point("far", "full_ft", 1000, 0.5, None)], log=False)
    assert crowded[0].reach == draw.WIDEST / 2 and [crowded[n].offset for n in (0, 10, 14)] == pytest.approx(
        [-draw.WIDEST / 2, draw.WIDEST / 2 * 6 / 14, draw.WIDEST / 2])  # "#10" after "#9", not after "#1"

    chart = data.ScoreCost("t", "m", "accuracy", "train_flops", points, data.pareto_front(points), {})
    drawn, savefig = {}, matplotlib.figure.Figure.savefig

    def keep(figure, path, **options):
        axes = figure.axes[0]
        lines = axes.lines
        drawn.update(tags={text.get_text(): text for text in axes.texts}, xlabel=axes.get_xlabel(), axes=axes,
                     markers=[line for line in lines if line.get_marker() not in (None, "None", "_")],
                     front=next((line for line in lines if line.get_label().startswith("Pareto front")), None))
        return savefig(figure, path, **options)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    draw.draw_score_cost(chart, tmp_path)
    assert "points at nearly one cost are set side by side" in drawn["xlabel"]
    # the class-label point's tag goes past its group's outermost marker, not over its neighbour
    assert drawn["tags"]["class_labels"].xyann[0] == pytest.approx(draw.DODGE + 5)
    filled = {(line.get_xdata()[0], line.get_ydata()[0]): matplotlib.colors.to_rgba(line.get_markerfacecolor())[3] > 0
              for line in drawn["markers"] if len(line.get_xdata())}
    front = {(p.cost, p.score) for p in chart.pareto}
    assert front and all(filled[xy] == (xy in front) for xy in filled)
    # the front's line meets its markers where they are drawn, not where their costs would put them
    axes, to_points = drawn["axes"], 72 / drawn["axes"].figure.dpi
    corner = {(p.cost, p.score): (x, p.score) for p, x in zip(chart.pareto, drawn["front"].get_xdata())}
    for line in drawn["markers"]:
        if len(line.get_xdata()) and (xy := (line.get_xdata()[0], line.get_ydata()[0])) in corner:
            marker = line.get_transform().transform(xy)[0] * to_points
            # within half a point: the save lays the figure out again around the tags, moving the axes a hair
            assert axes.transData.transform(corner[xy])[0] * to_points == pytest.approx(marker, abs=0.5)
    lone = data.ScoreCost("t", "m", "accuracy", "train_flops", points[:1], points[:1], {})
    draw.draw_score_cost(lone, tmp_path)  # one point is no front: nothing filled, no front line
    assert drawn["front"] is None
    assert not any(matplotlib.colors.to_rgba(line.get_markerfacecolor())[3] > 0 for line in drawn["markers"])
