"""The tabular search benchmark on a hand-made grid: lookup, step accounting, stopping at a target."""

import importlib.util
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bench.suite import load_suite
from search.tabular import load_table, simulate

STEPS = 40
GRID = {
    "prompt_tuning": {"init": ["random", "class_labels"], "lr": [0.01, 0.1, 0.3]},
    "prefix_tuning": {"lr": [0.001, 0.01]},
}


def final_score(method: str, config: dict) -> float:
    score = 0.55 + (0.2 if method == "prompt_tuning" else 0.0) + (0.1 if config.get("init") == "class_labels" else 0)
    return score + 0.05 * GRID[method]["lr"].index(config["lr"])


def write_grid(folder, *, skip: int | None = None, derived: bool = False) -> None:
    index = 0
    for method, params in GRID.items():
        for values in itertools.product(*params.values()):
            config = dict(zip(params, values))
            index += 1
            if index == skip:
                continue
            final = final_score(method, config)
            settings = {k: v for k, v in config.items() if k != "lr"} | {"x": 1}
            if derived and "init" in config:  # resolved from init, like prefix init from projection
                settings["init_source"] = "vocab" if config["init"] == "class_labels" else "none"
            record = {
                "run_id": f"run{index}", "model": {"name": "m"},
                "task": {"name": "t", "kind": "classification", "primary_metric": "accuracy"},
                "method": {"name": method, "settings": settings},
                "train": {"lr": config["lr"], "steps": STEPS},
                "scores": {"validation": {"accuracy": final, "n": 100}}, "cost": {},
                # learning curves that rise to the final score: weaker configs are weaker early too
                "curve": {"eval": [{"step": s, "accuracy": 0.5 + (final - 0.5) * s / STEPS} for s in (8, 16, 24, 32, 40)]},
            }
            (folder / record["run_id"]).mkdir(parents=True)
            (folder / record["run_id"] / "record.json").write_text(json.dumps(record))


def steps_charged(trace) -> set[int]:
    """The distinct step counts the trials of a simulated search were charged."""
    return {b - a for a, b in zip([0] + trace.steps, trace.steps)}


def test_table_reads_the_grid_and_snaps_to_the_nearest_run(tmp_path):
    write_grid(tmp_path)
    table = load_table(tmp_path)
    assert len(table.entries) == 8 and table.steps == STEPS
    assert table.grid["prompt_tuning"] == {"init": ("class_labels", "random"), "lr": (0.01, 0.1, 0.3)}
    assert "x" not in table.grid["prompt_tuning"]  # one value everywhere: not a searched parameter
    entry = table.lookup("prompt_tuning", {"init": "class_labels", "lr": 0.05})  # log-nearest of 0.01 / 0.1
    assert dict(entry.params) == {"init": "class_labels", "lr": 0.1}
    assert entry.final == pytest.approx(0.9)
    assert table.best() == pytest.approx(0.95)
    assert table.standard_error() == pytest.approx((0.95 * 0.05 / 100) ** 0.5)
    space = table.space()
    assert space.methods == ("prefix_tuning", "prompt_tuning")
    lr = next(p for p in space.params["prompt_tuning"] if p.name == "lr")
    assert (lr.low, lr.high, lr.log) == (0.01, 0.3, True)
    # every curve rises in proportion to its final score: each step ranks configs as the end does
    assert table.rank_correlations() == [(step, pytest.approx(1.0)) for step in (8, 16, 24, 32, 40)]


def test_a_setting_that_follows_from_a_swept_one_is_not_an_axis(tmp_path):
    write_grid(tmp_path, derived=True)
    table = load_table(tmp_path)
    assert table.grid["prompt_tuning"] == {"init": ("class_labels", "random"), "lr": (0.01, 0.1, 0.3)}
    assert len(table.entries) == 8


def test_incomplete_grid_is_refused(tmp_path):
    write_grid(tmp_path, skip=3)
    with pytest.raises(ValueError, match="1 of 8 runs missing"):
        load_table(tmp_path)


def test_a_grid_built_in_parts_reads_as_one_table(tmp_path):
    write_grid(tmp_path / "all")
    first, second = tmp_path / "first", tmp_path / "more_lrs"
    for run in sorted((tmp_path / "all").iterdir()):
        record = json.loads((run / "record.json").read_text())
        part = second if record["train"]["lr"] in (0.1, 0.001) else first
        (part / run.name).mkdir(parents=True)
        (part / run.name / "record.json").write_text(json.dumps(record))
    table = load_table(first, second)
    assert table.entries == load_table(tmp_path / "all").entries
    assert table.grid["prompt_tuning"]["lr"] == (0.01, 0.1, 0.3)
    assert load_table(first).grid["prompt_tuning"]["lr"] == (0.01, 0.3)  # a grid of its own, coarser


def test_the_same_config_twice_is_refused(tmp_path):
    write_grid(tmp_path / "a")
    write_grid(tmp_path / "b")
    with pytest.raises(ValueError, match="runs run1 and run1 .* are the same config"):
        load_table(tmp_path / "a", tmp_path / "b")


def test_a_record_without_its_learning_curve_is_named(tmp_path):
    write_grid(tmp_path)
    path = tmp_path / "run2" / "record.json"
    record = json.loads(path.read_text())
    del record["curve"]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="run run2 .* no 'curve'"):
        load_table(tmp_path)


def test_random_search_pays_full_runs_and_stops_at_the_target(tmp_path):
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=0), pruner_name="none", n_trials=12)
    assert trace.steps == [STEPS * (i + 1) for i in range(12)]
    assert trace.best == sorted(trace.best)
    stopped = simulate(table, sampler=optuna.samplers.RandomSampler(seed=0), pruner_name="none", n_trials=500,
                       stop_at=table.best())
    assert stopped.best[-1] == pytest.approx(table.best()) and len(stopped.steps) < 500
    assert stopped.steps_to_reach(table.best()) == stopped.steps[-1]
    assert trace.steps_to_reach(2.0) == float("inf")
    # 12 trials over 8 configs: some config ran more than once, and every trial's config is kept
    assert len(trace.runs) == 12 and trace.repeats() >= 4
    assert set(trace.runs) <= {(entry.method, entry.params) for entry in table.entries.values()}


def test_pruned_trials_are_charged_the_steps_they_ran(tmp_path):
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=1), pruner_name="median", n_trials=40)
    charges = steps_charged(trace)
    assert charges <= {8, 16, 24, 32, STEPS}
    assert min(charges) < STEPS, "the median pruner never stopped a weak trial"


def test_successive_halving_stops_trials_only_at_its_rungs(tmp_path):
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=1), pruner_name="successive_halving",
                     n_trials=40, margin=0)  # on any gap: this grid's scores on 100 examples are close early
    # rungs at the first evaluation (8) times powers of 3: trials stop at 8 and 24, never at 16 or 32
    assert steps_charged(trace) == {8, 24, STEPS}


def test_known_good_starting_points_run_first_snapped_to_the_grid(tmp_path):
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=0), pruner_name="none", n_trials=2,
                     known_good=True)
    # Lester's recipe (class labels, lr 0.03 -> grid 0.01), then the prefix default (lr 0.01); the
    # other starting points name choices this grid does not have and are left out
    assert trace.best == [pytest.approx(final_score("prompt_tuning", {"init": "class_labels", "lr": 0.01}))] * 2
    assert trace.steps == [STEPS, 2 * STEPS]


def test_on_the_grids_own_values_a_config_is_trained_once(tmp_path):
    # a space of choices holds exactly the table's configs: a trial that samples one an earlier trial
    # completed takes its result and is charged nothing, as `spbench search` does
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=0), pruner_name="none", n_trials=30,
                     grid_as_choices=True)
    assert len(trace.steps) == 30 and trace.repeats() == 0 and len(trace.runs) <= len(table.entries)
    assert steps_charged(trace) == {0, STEPS} and trace.steps[-1] == STEPS * len(trace.runs)


def test_starting_points_take_the_nearest_offered_number(tmp_path):
    # Lester's lr 0.03 is not among the choices 0.01, 0.1, 0.3: it takes 0.01, the nearest by ratio,
    # as a range would clamp it, instead of the starting point being dropped
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=0), pruner_name="none", n_trials=2,
                     known_good=True, grid_as_choices=True)
    assert trace.best == [pytest.approx(final_score("prompt_tuning", {"init": "class_labels", "lr": 0.01}))] * 2
    assert trace.steps == [STEPS, 2 * STEPS]


def test_a_repetition_is_reproducible_with_hyperband(tmp_path):
    # Hyperband buckets trials by a checksum of the study name: a random name would make the same
    # seed prune differently from one run of the benchmark to the next
    write_grid(tmp_path)
    table = load_table(tmp_path)

    def trace(name: str):
        return simulate(table, sampler=optuna.samplers.RandomSampler(seed=3), pruner_name="hyperband", n_trials=30,
                        study_name=name)

    names = [f"repetition-{i}" for i in range(6)]
    traces = [trace(name) for name in names]
    assert [trace(name) for name in names] == traces  # each name gives its trace again
    # and the name is what decides: the same draws, bracketed otherwise, are pruned otherwise
    assert len({tuple(t.steps) for t in traces}) > 1


def test_no_trial_is_pruned_before_the_first_rung(tmp_path):
    write_grid(tmp_path)
    table = load_table(tmp_path)
    trace = simulate(table, sampler=optuna.samplers.RandomSampler(seed=1), pruner_name="median", n_trials=40,
                     first_rung=24)
    charges = steps_charged(trace)
    assert charges <= {24, 32, STEPS} and min(charges) < STEPS


ROOT = Path(__file__).resolve().parents[1]
SHIPPED_RECORDS = {  # folder under results/search_tables -> the suite that built it
    "sst2__minilm-l6": "search_table_sst2.yaml",
    "sst2_more_lrs__minilm-l6": "search_table_sst2_more_lrs.yaml",
    "sst2_long__minilm-l6": "search_table_sst2_long.yaml",
    "ag_news__minilm-l6": "search_table_ag_news.yaml",
    "sst2_reseed__minilm-l6": "search_table_sst2_reseed.yaml",
}


def _config_of(spec) -> tuple:
    return spec.task, spec.model, spec.method, json.dumps(spec.configuration(), sort_keys=True), spec.train.seed


@pytest.mark.parametrize("folder, suite", SHIPPED_RECORDS.items())
def test_shipped_records_are_exactly_their_suites_runs(folder, suite):
    """A suite edited after its records were made would plan runs the folder does not hold. Compared
    by configuration: a table keeps the card version it was built with (AG News's is version 1, the
    card is now 2), which is in its run ids."""
    from bench.run_spec import RunSpec
    from bench.train import TrainSettings

    runs = load_suite(str(ROOT / "bench" / "suites" / suite)).runs
    planned = {_config_of(run.spec) for run in runs}
    records_dir = ROOT / "results" / "search_tables" / folder
    records = [json.loads(path.read_text()) for path in records_dir.glob("*/record.json")]
    held = {_config_of(RunSpec(task=r["task"]["name"], model=r["model"]["name"], method=r["method"]["name"],
                               method_settings=r["method"]["settings"], train=TrainSettings(**r["train"])))
            for r in records}
    assert held == planned and len(records) == len(runs)
    from tasks import load_task

    built_with = {"ag_news__minilm-l6": 1}  # a table older than its card's current version says so in its README
    versions = {r["task"]["version"] for r in records}
    assert versions == {built_with.get(folder, load_task(records[0]["task"]["name"]).card.version)}
    if len({run.spec.train.seed for run in runs}) == 1:  # one run a config: a table (the reseed folder is not)
        assert len(load_table(records_dir).entries) == len(planned)


@pytest.mark.parametrize("space", [[], ["--grid-as-choices"]])
def test_the_efficiency_script_compares_every_searcher_on_a_table(tmp_path, space):
    write_grid(tmp_path)
    script = ROOT / "scripts" / "search_efficiency.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path), "--random-trials", "4", "--repetitions", "4",
                             "--max-trials", "30", *space], capture_output=True, text=True, cwd=ROOT, check=True)
    assert f"table: 8 real runs of {STEPS} steps" in result.stdout
    assert ("space: the grid's values as choices" if space else "space: ranges between") in result.stdout
    assert f"random search: 4 trials, up to {4 * STEPS} steps" in result.stdout
    for searcher in ("random search itself", "spbench search default", "TPE + hyperband, cold",
                     "TPE + succ. halving, cold", "TPE + median, cold", "TPE, no pruning, cold", "random + hyperband"):
        assert re.search(rf"^{re.escape(searcher)} +steps / random's steps: median \S+", result.stdout, re.M), searcher


def _efficiency_script():
    spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "scripts" / "search_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_searchers_do_not_replay_the_draws_of_the_random_search_that_sets_their_target(tmp_path, monkeypatch,
                                                                                          capsys):
    """Seeded alike, TPE's random start-up trials were the target's random search's first draws
    (its best among them in about 8 of 20 repetitions), and random + Hyperband its whole sequence."""
    write_grid(tmp_path)
    module = _efficiency_script()
    seeds, search_until = [], module.search_until
    monkeypatch.setattr(module, "search_until", lambda table, goal, *, seed, **options: (
        seeds.append(seed), search_until(table, goal, seed=seed, **options))[1])
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", str(tmp_path), "--random-trials", "4",
                                      "--repetitions", "3", "--max-trials", "10"])
    module.main()
    assert seeds and min(seeds) >= module.SEARCHER_SEEDS > 3  # the targets' random searches: seeds 0, 1, 2


def test_the_median_ratio_comes_with_its_confidence_interval_from_order_statistics():
    # 20 repetitions: the distribution-free 95% interval of the median runs from the 6th to the 15th
    # smallest ratio; a repetition that never reached the target is the slowest, not dropped
    ratios = [i / 10 for i in range(1, 19)] + [float("inf")] * 2
    spread = _efficiency_script()._spread(ratios)
    assert spread.startswith("median 1.050 (95% CI [0.600, 1.500])")
    assert "max inf" in spread and "(<= 1/3 in 3/20; 2 never reached it)" in spread
    # a quartile between a ratio and a miss is past every ratio: inf, not nan (inf x 0) or a number
    assert _efficiency_script()._spread([0.1, 0.2, 0.3] + [float("inf")] * 3).startswith(
        "median inf (95% CI [0.100, inf])  IQR [0.225, inf]")


def test_the_nearest_number_is_by_ratio_only_where_every_value_is_positive():
    from search.space import nearest

    assert nearest([1, 5, 20, 100], 30) == 20 and nearest([0.001, 0.01, 0.1], 0.02) == 0.01
    assert nearest([0.0, 0.01, 0.1], 0.02) == 0.01  # a zero among them: by difference, not a log of 0
