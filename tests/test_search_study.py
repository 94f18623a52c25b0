"""Study plumbing without training: the default sampler and pruner, time limits, plots, argument errors."""

import contextlib
import io
import logging
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.cli import main
from search.plots import write_plots
from search.strategy import make_pruner, make_sampler
from search.study import done_trials
from search.summary import summary
from search.workers import optimize


def test_defaults_are_multivariate_tpe_with_hyperband_and_nsga2_for_two_objectives():
    sampler = make_sampler("auto", multi_objective=False, seed=0)
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._multivariate and sampler._group
    assert isinstance(make_sampler("auto", multi_objective=True, seed=0), optuna.samplers.NSGAIISampler)
    pruner = make_pruner("hyperband", min_steps=20, max_steps=100, margin=0)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (20, 100, 3)


def test_a_timeout_ends_the_search_without_a_trial_budget():
    study = optuna.create_study()
    start = time.monotonic()
    optimize(study, lambda trial: time.sleep(0.2) or 0.0, n_trials=None, timeout=1.0)
    # the trial running at the limit finishes (plus a garbage collection after each trial)
    assert 1.0 <= time.monotonic() - start < 2.5 and study.trials


def test_search_plots_are_drawn_from_the_trials_and_replaced_whole(tmp_path, monkeypatch):
    import matplotlib.figure

    study = optuna.create_study(study_name="plots", direction="maximize")
    distributions = {"method": CategoricalDistribution(["prompt_tuning", "prefix_tuning"]),
                     "num_virtual_tokens": IntDistribution(1, 200, log=True),
                     "prompt_tuning.lr": FloatDistribution(1e-3, 0.3, log=True)}
    for i, (tokens, lr) in enumerate([(1, 0.001), (5, 0.01), (20, 0.03), (100, 0.3), (50, 0.1)]):
        study.add_trial(optuna.trial.create_trial(
            params={"method": "prompt_tuning", "num_virtual_tokens": tokens, "prompt_tuning.lr": lr},
            distributions=distributions, value=0.5 + 0.05 * i))
    study.enqueue_trial({"method": "prefix_tuning"})  # a starting point queued, never run
    titles, x_ranges = {}, {}
    original_savefig = matplotlib.figure.Figure.savefig

    def seen_and_saved(figure, path, **options):
        name = Path(path).name.removeprefix(".").partition(".partial")[0]
        titles[name] = [figure.axes[0].get_title(loc) for loc in ("left", "center")]
        x_ranges[name] = figure.axes[0].get_xlim()
        return original_savefig(figure, path, **options)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", seen_and_saved)
    names = {path.name for path in write_plots(study, tmp_path)}
    assert names == {"optimization_history.png", "param_importances.png", "score_vs_prompt_length.png",
                     "score_vs_lr.png"}
    # one title, where Optuna puts its own: not two drawn over each other
    assert titles["param_importances.png"] == ["", "Hyperparameter importances\nfrom 5 completed trials"]
    # the history's axis ends at trial 4, the last that ran, not at the queued trial 5
    assert 4 < x_ranges["optimization_history.png"][1] < 4.5
    monkeypatch.undo()
    # drawing them again is killed mid-write: the charts drawn before stay whole
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def killed_while_writing(figure, path, **options):
        Path(path).write_bytes(b"half an image")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        write_plots(study, tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # no half image beside them


def test_importances_of_trials_that_all_tie_are_not_drawn(tmp_path, capsys):
    study = optuna.create_study(study_name="tied", direction="maximize")
    distributions = {"num_virtual_tokens": IntDistribution(1, 200, log=True),
                     "prompt_tuning.lr": FloatDistribution(1e-3, 0.3, log=True)}
    (tmp_path / "param_importances.png").write_bytes(b"an earlier search's chart")
    for tokens, lr in [(1, 0.001), (5, 0.01), (20, 0.03)]:
        study.add_trial(optuna.trial.create_trial(params={"num_virtual_tokens": tokens, "prompt_tuning.lr": lr},
                                                  distributions=distributions, value=0.5))
    names = {path.name for path in write_plots(study, tmp_path)}
    assert "param_importances.png" not in names and not (tmp_path / "param_importances.png").exists()
    assert "plot param_importances skipped: every completed trial scored the same" in capsys.readouterr().out


def test_a_signal_made_to_interrupt_raises_as_ctrl_c_does_and_is_held_and_restored_with_it():
    import os
    import signal

    from bench.interrupts import hold_interrupts, interrupted_by, interrupting, interrupts_restored

    before = signal.getsignal(signal.SIGTERM)
    with interrupting(signal.SIGTERM):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert interrupted_by() == signal.SIGTERM
        with interrupts_restored():
            hold_interrupts()  # bookkeeping after a first interrupt: a second is ignored
            os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):  # and interrupts again after it
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_trial_is_said_to_start_while_trials_take_a_minute_or_more(capsys, monkeypatch):
    from search import trial_lines
    from search.repeats import CONFIG_ATTR
    from search.workers import optimize

    class Objective:  # as the search's: told when a trial starts training, once its config is sampled
        on_start = None

        def __call__(self, trial):
            lr = trial.suggest_float("prompt_tuning.lr", 1e-3, 0.3, log=True)
            trial.set_user_attr(CONFIG_ATTR, {"method": "prompt_tuning", "settings": {"num_virtual_tokens": 20},
                                              "train": {"lr": lr}})
            self.on_start(trial)
            return lr

    optimize(optuna.create_study(direction="maximize"), Objective(), n_trials=2, timeout=None)
    lines = capsys.readouterr().out.splitlines()
    # the first trial may take minutes (a generation task's); once one took seconds, none is announced
    assert lines[0].startswith("trial 0 started: prompt_tuning[") and lines[1].startswith("trial 0 complete")
    assert [line.split(":")[0] for line in lines[2:]] == ["trial 1 complete"]
    monkeypatch.setattr(trial_lines, "SLOW_TRIAL_SECONDS", 0)  # every trial counts as slow
    optimize(optuna.create_study(direction="maximize"), Objective(), n_trials=2, timeout=None)
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == [
        "trial 0 started", "trial 0 complete", "trial 1 started", "trial 1 complete"]


def test_each_trial_prints_its_own_line_as_it_ends_and_optuna_only_its_warnings(capsys, caplog):
    from search.repeats import CONFIG_ATTR
    from search.study import PRUNED_REASON_ATTR

    def objective(trial):
        lr = trial.suggest_float("prompt_tuning.lr", 1e-3, 0.3, log=True)
        trial.set_user_attr(CONFIG_ATTR, {"method": "prompt_tuning", "settings": {"num_virtual_tokens": 20},
                                          "train": {"lr": lr}})
        if trial.number == 1:
            trial.set_user_attr(PRUNED_REASON_ATTR, "pruned at step 20 of sst2 (validation 0.5000)")
            raise optuna.TrialPruned()
        if trial.number == 2:
            trial.set_user_attr(PRUNED_REASON_ATTR, "training diverged at step 3: loss is nan")
            raise optuna.TrialPruned()
        return 0.25 * (trial.number + 1)

    study = optuna.create_study(direction="maximize")
    for lr in (0.01, 0.02, 0.03, 0.04):
        study.enqueue_trial({"prompt_tuning.lr": lr})
    with caplog.at_level(logging.INFO, logger="optuna"):
        optimize(study, objective, n_trials=4, timeout=None)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4
    assert lines[0].startswith("trial 0 complete: validation score 0.2500 (the best so far) in ")
    assert lines[0].endswith(": prompt_tuning[init=sampled_vocab,num_virtual_tokens=20,lr=0.01]")  # as tables label it
    assert lines[1].startswith("trial 1 pruned at step 20 of sst2 (validation 0.5000) in ")
    assert lines[2].startswith("trial 2 pruned: training diverged at step 3: loss is nan in ")
    assert lines[3].startswith("trial 3 complete: validation score 1.0000 (the best so far)")
    assert "finished with value" not in caplog.text and "pruned" not in caplog.text  # Optuna's INFO lines
    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored for the rest of the process


def test_trial_values_are_said_by_the_metric_and_cost_they_are():
    from search.study import DEFINITION_ATTR, METRIC_ATTR
    from search.trial_lines import said_values

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(DEFINITION_ATTR, {"tasks": ["squad_v1"], "objective": ["score", "trainable_params"]})
    assert said_values(study, (0.2083, 25350.0)) == "validation score 0.2083, trainable_params 25,350"
    study.set_user_attr(METRIC_ATTR, "f1")  # a one-task search's card names its metric
    assert said_values(study, (0.2083, 25350.0)) == "validation f1 0.2083, trainable_params 25,350"
    study.set_user_attr(DEFINITION_ATTR, {"tasks": ["squad_v1"], "objective": ["score", "train_seconds"]})
    assert said_values(study, (0.2083, 12.345)) == "validation f1 0.2083, train_seconds 12.35"
    study.set_user_attr(DEFINITION_ATTR, {"tasks": ["squad_v1"], "objective": ["score", "peak_memory_bytes"]})
    assert said_values(study, (0.2083, 4294967296.0)) == "validation f1 0.2083, peak_memory_bytes 4,294,967,296"


def test_a_two_objective_front_draws_a_wide_cost_on_a_log_axis_and_leaves_the_process_style_alone(tmp_path,
                                                                                                  monkeypatch):
    import matplotlib
    import matplotlib.figure

    study = optuna.create_study(study_name="front", directions=["maximize", "minimize"])
    study.set_user_attr("definition", {"objective": ["score", "trainable_params"], "tasks": ["sst2"]})
    distributions = {"num_virtual_tokens": IntDistribution(1, 200, log=True)}
    # a trial's records, as the study keeps them
    kept = {"run_records": [{"task": {"primary_metric": "accuracy"}, "scores": {"validation": {"n": 200}}}]}
    for tokens, score, params in [(1, 0.6, 1e3), (20, 0.7, 2e4), (200, 0.8, 1.3e6)]:
        study.add_trial(optuna.trial.create_trial(params={"num_virtual_tokens": tokens}, distributions=distributions,
                                                  values=[score, params], user_attrs=kept))
    saved = []
    original_savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, path, **options: (
        saved.append((Path(path).name.removeprefix(".").partition(".partial")[0], figure.axes[0])),
        original_savefig(figure, path, **options))[1])
    style = dict(matplotlib.rcParams)
    write_plots(study, tmp_path, full_ft=0.75)  # a one-task search's full fine-tuning score, from bench records
    axes = dict(saved)["pareto_front.png"]
    assert axes.get_ylabel() == "accuracy (validation)"  # the task's metric, as its records name it
    assert [line.get_ydata()[0] for line in axes.get_lines()
            if line.get_label() == "full fine-tuning's score (0.750)"] == [0.75]
    assert axes.get_xscale() == "log" and axes.get_xlabel() == "trainable parameters"  # the cost, as suites draw it
    front = next(line for line in axes.get_lines() if line.get_label().startswith("Pareto front"))
    assert list(front.get_xdata()) == [1e3, 2e4, 1.3e6]  # every trial is on this front: each costs more for more
    assert "error bars: ±1 standard error" in axes.get_title()  # from each trial's 200 examples, as suites draw them
    assert sorted(text.get_text() for text in axes.texts) == ["#0", "#1", "#2"]  # as trials.csv numbers them
    assert matplotlib.rcParams["axes.facecolor"] == style["axes.facecolor"]  # Optuna's ggplot stays in its charts


@pytest.mark.parametrize("study", ["../elsewhere", "{tmp}/absolute", "a/b", ".."])
def test_a_study_name_that_is_no_folder_name_is_refused_before_anything_is_made(capsys, tmp_path, study):
    study = study.format(tmp=tmp_path)  # an absolute name wrote there, whatever --results said
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--study", study,
                 "--results", str(tmp_path / "results")])
    assert code != 0 and f"--study {study!r} is not a folder name" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("study", ["", "  "])
def test_an_empty_study_name_is_refused_not_taken_for_the_default(capsys, tmp_path, study):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--study", study,
                 "--results", str(tmp_path / "results")])
    assert code != 0 and "--study names no study (leave the flag out for the default name, sst2__minilm-l6)" in (
        capsys.readouterr().err)
    assert not any(tmp_path.iterdir())


def test_a_study_folder_with_url_characters_keeps_its_database_inside_it(tmp_path):
    from bench.study_storage import open_storage, storage_url

    folder = tmp_path / "q?x=1#y"
    optuna.create_study(study_name="q", storage=open_storage(storage_url(folder, None)))
    assert [p.name for p in folder.iterdir()] == ["study.db"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "q?x=1#y"]


@pytest.mark.parametrize("objective, named", [
    ("accuracy", ", got 'accuracy'"), ("score,colour", "; 'colour' is no cost"),
    ("score,params", "; 'params' is no cost: did you mean 'trainable_params'?"),
    ("score,trainable_param", "; 'trainable_param' is no cost: did you mean 'trainable_params'?"),
    ("score,train", "; 'train' is no cost: did you mean 'trainable_params' or 'train_seconds' or 'train_flops'?"),
    ("score,trainable_params,train_seconds", ", got 'score,trainable_params,train_seconds'")])
def test_a_bad_objective_is_refused_before_anything_runs(capsys, tmp_path, objective, named):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--objective", objective,
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "--objective must be `score` or `score,COST`" in err and err.rstrip().endswith(named)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("margin", ["-1", "nan", "inf"])
def test_a_prune_margin_it_cannot_use_is_refused_before_anything_runs(capsys, tmp_path, margin):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--prune-margin", margin,
                 "--results", str(tmp_path)])
    assert code != 0 and f"--prune-margin must be 0 or more standard errors, got {float(margin)}" in \
        capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flag, value", [("--monitor-size", "0"), ("--steps", "0")])
def test_bad_training_settings_are_refused_before_anything_runs(capsys, tmp_path, flag, value):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", flag, value,
                 "--results", str(tmp_path)])
    assert code != 0 and f"{flag} must be 1 or more, got {value}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_every_worker_rebuilds_the_commands_sampler_and_pruner_with_its_own_seed(tmp_path, monkeypatch):
    from search import workers
    from search.strategy import Strategy
    from search.worker_id import worker_id

    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="s", storage=url)
    seen = []
    monkeypatch.setattr(workers, "optimize", lambda study, objective, **kwargs: seen.append(study))
    monkeypatch.setattr(workers, "stop_with_parent", lambda parent: None)  # this process is no worker's
    strategy = Strategy(sampler="random", pruner="none", multi_objective=False, seed=3, min_steps=2,
                        max_steps=8, margin=2.0)
    monkeypatch.setattr("search.worker_id._worker_id", "this-process")  # the worker takes the id it is given
    workers._worker(workers._WorkerJob(study_name="s", url=url, objective=None, strategy=strategy, index=1, workers=2,
                                       n_trials=2, timeout=None, parent=0, worker_id="worker-1"))
    assert worker_id() == "worker-1"
    assert isinstance(seen[0].sampler, optuna.samplers.RandomSampler)
    assert isinstance(seen[0].pruner, optuna.pruners.NopPruner)

    def first_draw(sampler):
        return optuna.create_study(sampler=sampler).ask().suggest_float("x", 0, 1)

    assert first_draw(strategy.make_sampler(0)) == first_draw(strategy.make_sampler(0))  # reproducible
    assert first_draw(strategy.make_sampler(0)) != first_draw(strategy.make_sampler(1))  # workers differ
    shared = Strategy(**{**strategy.__dict__, "shared_storage": True})
    monkeypatch.setattr("search.worker_id._worker_id", "process-a")
    in_one_process = first_draw(shared.make_sampler(0))
    assert first_draw(shared.make_sampler(0)) == in_one_process
    monkeypatch.setattr("search.worker_id._worker_id", "process-b")
    # processes running the same command, on one machine or several, differ
    assert first_draw(shared.make_sampler(0)) != in_one_process


def test_a_worker_waiting_for_the_last_slot_leaves_the_queued_starting_points(tmp_path, monkeypatch):
    import threading

    from bench import study_storage as storage_module

    monkeypatch.setattr(storage_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(storage_module, "GRACE_SECONDS", 3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage_module.open_storage(url), direction="maximize")
    for lr in (0.01, 0.02, 0.03):
        study.enqueue_trial({"lr": lr})

    def objective(trial):
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        time.sleep(3)
        return 1.0

    def worker():
        optimize(optuna.load_study(study_name="s", storage=storage_module.open_storage(url)), objective,
                 n_trials=1, timeout=None)

    first = threading.Thread(target=worker)
    first.start()
    time.sleep(1)
    worker()  # finds the only slot taken: waits for it instead of taking (and failing) queued trials
    first.join()
    states = [(t.state.name, t.params.get("lr", t.system_attrs.get("fixed_params", {}).get("lr")))
              for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states == [("COMPLETE", 0.01), ("WAITING", 0.02), ("WAITING", 0.03)]


def test_local_workers_share_the_cpu_cores_and_give_them_back(monkeypatch):
    import torch

    from bench.device import worker_share

    monkeypatch.setattr("bench.device.pick_device", lambda: torch.device("cpu"))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)  # the user's (or PyTorch's) pick, below the 16 cores
        with worker_share(3, 4):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 8
        with worker_share(0, 1):
            assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_local_workers_spread_over_the_gpus(monkeypatch):
    import torch

    from bench.device import worker_share

    chosen = []
    monkeypatch.setattr("bench.device.pick_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    with pytest.warns(UserWarning, match="3 workers share 2 GPU"):  # their timings are measured side by side
        for index in range(3):
            with worker_share(index, 3):
                pass
    assert chosen == [0, 1, 0]


def test_a_surplus_trial_puts_its_starting_point_back_in_the_queue():
    from bench.interrupts import quiet_trial_failures
    from search.workers import BudgetReached, _Guarded

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.enqueue_trial({"lr": 0.03})
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("optuna").addHandler(handler)
    try:
        quiet_trial_failures(silent=(BudgetReached,))  # as a search's workers run
        # the next trial takes the queued point, though the budget of 1 is spent
        study.optimize(_Guarded(lambda t: 0.0, n_trials=1), n_trials=1, catch=(BudgetReached,))
        surplus = list(logged)
        optuna.create_study().optimize(lambda t: 1 / 0, n_trials=2, catch=(ZeroDivisionError,))  # still logged
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    # Optuna's two lines about a trial that ran nothing are dropped (the summary says it below)
    assert not any(line.startswith("Trial 1 ") for line in surplus), surplus
    # another study's trial of the silenced number is a failure like any other
    assert sum(line.startswith("Trial 1 failed") for line in logged[len(surplus):]) == 2 and any(
        line.startswith("Trial 0 failed") and "ZeroDivisionError" in line for line in logged), logged
    assert study.trials[1].state == optuna.trial.TrialState.FAIL
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in queued] == [{"lr": 0.03}]
    # the summary says why the study holds a failed trial it does not list as a failure
    assert summary(study).splitlines()[-1] == ("not run (not counted): trial 1: the study already holds 1 "
                                               "finished or running trials")


def test_an_interrupted_trial_fails_with_the_reason_and_its_starting_point_goes_back_in_the_queue():
    from search.study import FAIL_REASON_ATTR, INTERRUPTED

    def objective(trial):
        raise KeyboardInterrupt

    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.03})
    with pytest.raises(KeyboardInterrupt):
        optimize(study, objective, n_trials=3, timeout=None)
    interrupted, queued = study.trials
    assert (interrupted.state.name, interrupted.user_attrs[FAIL_REASON_ATTR]) == ("FAIL", INTERRUPTED)
    assert (queued.state.name, queued.system_attrs["fixed_params"]) == ("WAITING", {"lr": 0.03})


def test_a_starting_point_put_back_by_an_interrupted_trial_is_not_taken_for_run():
    from search.study import FAIL_REASON_ATTR, INTERRUPTED
    from search.workers import _Guarded

    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.03})
    interrupted = study.ask()  # another worker's trial, interrupted: failed by Optuna only in a moment
    interrupted.set_user_attr(FAIL_REASON_ATTR, INTERRUPTED)
    study.enqueue_trial({"lr": 0.03})
    study.optimize(_Guarded(lambda t: t.suggest_float("lr", 0.001, 0.1), n_trials=1), n_trials=1)
    assert study.trials[-1].state.name == "COMPLETE" and study.trials[-1].params == {"lr": 0.03}


def test_a_failing_trial_is_kept_with_its_reason_and_the_search_goes_on():
    from bench.methods.registry import MethodError
    from search.study import FAIL_REASON_ATTR

    def objective(trial):
        if trial.number == 1:
            raise MethodError("150 virtual tokens + 400 input tokens exceed the 512 positions")
        return 0.5

    study = optuna.create_study(direction="maximize")
    optimize(study, objective, n_trials=3, timeout=None)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].user_attrs[FAIL_REASON_ATTR] == ("MethodError: 150 virtual tokens + 400 input tokens "
                                                            "exceed the 512 positions")


def test_trials_failing_again_and_again_stop_the_search_with_their_reasons():
    from search.workers import FAILURES_IN_A_ROW, SearchError

    def objective(trial):
        if trial.number == 2:
            raise OSError("No space left on device")
        raise FileNotFoundError("no such model folder: /models/missing")

    study = optuna.create_study(direction="maximize")
    with pytest.raises(SearchError, match=f"the last {FAILURES_IN_A_ROW} trials failed; trials 0, 1, 3, 4: "
                                          "FileNotFoundError: no such model folder: /models/missing; "
                                          "trial 2: OSError: No space left on device$"):
        optimize(study, objective, n_trials=20, timeout=None)
    assert len(study.trials) == FAILURES_IN_A_ROW


def test_a_trial_that_never_ran_neither_counts_nor_breaks_a_run_of_failures():
    from search.study import FAIL_REASON_ATTR, NOT_RUN_ATTR
    from search.workers import FAILURES_IN_A_ROW, _StopOnRepeatedFailures

    class Study:
        stopped = False

        def stop(self):
            self.stopped = True

    study, stop = Study(), _StopOnRepeatedFailures()
    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                       user_attrs={FAIL_REASON_ATTR: "OSError: No space left on device"})
    not_run = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                        user_attrs={NOT_RUN_ATTR: "starting point {'lr': 0.03} already run by trial 0"})
    for trial in [failed] * (FAILURES_IN_A_ROW - 1) + [not_run, failed]:
        stop(study, trial)
    assert study.stopped and len(stop.failed) == FAILURES_IN_A_ROW


def test_an_error_about_the_model_stops_the_search_at_the_first_trial():
    from bench.models.registry import ModelError
    from search.workers import SearchError

    def objective(trial):
        raise ModelError("model 'minilm-l6' is an encoder: it needs a classification task")

    study = optuna.create_study(direction="maximize")
    with optuna_log() as log, pytest.raises(SearchError, match="stopped: trial 0: ModelError: model 'minilm-l6'"):
        optimize(study, objective, n_trials=20, timeout=None)
    assert len(study.trials) == 1
    assert "Trial 0 failed" in log.getvalue() and "Traceback" not in log.getvalue()  # its message says it all


def test_a_config_that_crashes_is_logged_with_its_traceback():
    def objective(trial):
        if trial.number == 0:
            raise RuntimeError("a bug somewhere")
        return 1.0

    with optuna_log() as log:
        optimize(optuna.create_study(direction="maximize"), objective, n_trials=1, timeout=None)
    assert "Trial 0 failed" in log.getvalue() and "Traceback" in log.getvalue()


@contextlib.contextmanager
def optuna_log():
    """What Optuna logs meanwhile (its own handler writes to the stderr it found at import, not capsys's)."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("optuna").addHandler(handler)
    try:
        yield log
    finally:
        logging.getLogger("optuna").removeHandler(handler)


def _study_and_another_process(tmp_path, monkeypatch, *, grace: int) -> tuple[optuna.Study, optuna.Study]:
    """A study with one finished trial, on fast heartbeats, as this process and another one see it."""
    from bench import study_storage as storage_module

    monkeypatch.setattr(storage_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(storage_module, "GRACE_SECONDS", grace)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage_module.open_storage(url), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    return study, optuna.load_study(study_name="s", storage=storage_module.open_storage(url))


def test_a_worker_that_waited_once_still_waits_for_a_slot_a_killed_process_holds(tmp_path, monkeypatch):
    import threading

    study, other = _study_and_another_process(tmp_path, monkeypatch, grace=3)
    live = other.ask()  # another worker's trial, alive for 2 s, then failed: this worker waits for its slot once

    def live_worker():
        for _ in range(2):
            other._storage.record_heartbeat(live._trial_id)
            time.sleep(1)
        other.tell(live, state=optuna.trial.TrialState.FAIL)

    threading.Thread(target=live_worker).start()
    calls = []

    def objective(trial):
        calls.append(trial.number)
        if len(calls) == 1:  # runs past the first wait's patience, then a process takes a trial and dies
            time.sleep(6)
            killed = other.ask()
            other._storage.record_heartbeat(killed._trial_id)
            raise RuntimeError("this config failed")
        return 1.0

    optimize(study, objective, n_trials=2, timeout=None)
    assert done_trials(study) == 2  # the killed process's slot was waited for and taken


def test_a_trial_whose_process_died_before_its_first_heartbeat_gives_its_slot_up(tmp_path, monkeypatch, capsys):
    from bench import study_storage as storage_module

    study, other = _study_and_another_process(tmp_path, monkeypatch, grace=1)
    other.ask()  # taken by a process killed before the trial's first heartbeat: Optuna's sweep never fails it
    assert storage_module.running_without_heartbeat(study) == {1}
    optimize(study, lambda trial: 1.0, n_trials=2, timeout=None)
    assert done_trials(study) == 2 and study.trials[1].state == optuna.trial.TrialState.FAIL
    assert "trial 1 sent no heartbeat in 3 s (its process stopped as it began): marked failed, its slot taken here" \
        in capsys.readouterr().out


def _fails_in_a_worker_process(trial):
    import multiprocessing

    from bench.models.registry import ModelError

    if multiprocessing.current_process().name != "MainProcess":
        raise ModelError("no such model here")
    deadline = time.monotonic() + 60  # the main process waits for the worker's trial, so that one runs
    while time.monotonic() < deadline and not trial.study.get_trials(states=(optuna.trial.TrialState.FAIL,)):
        time.sleep(0.2)
    return 0.5


def test_a_worker_process_stopping_with_an_error_fails_the_search(tmp_path):
    from bench.study_storage import open_storage
    from search.strategy import Strategy
    from search.workers import SearchError, run_workers

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    strategy = Strategy(sampler="random", pruner="none", multi_objective=False, seed=0, min_steps=1, max_steps=2,
                        margin=0.0)
    with pytest.raises(SearchError, match="worker 1 stopped with an error"):
        run_workers(study, url, _fails_in_a_worker_process, strategy=strategy, workers=2, n_trials=3, timeout=None)


def test_a_starting_point_queued_twice_runs_once():
    # two machines starting one study together can each queue the starting points
    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        study.enqueue_trial({"lr": 0.03}, skip_if_exists=False)

    def objective(trial):
        return trial.suggest_float("lr", 1e-3, 1e-1, log=True)

    optimize(study, objective, n_trials=2, timeout=None)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[0].params == {"lr": 0.03} and study.trials[2].params["lr"] != 0.03


def test_summary_and_trials_table_tell_ended_trials_from_running_and_queued_ones(tmp_path):
    from bench.shared_suite import SEARCH_RECORDS_ATTR
    from search.export import write_trials_table
    from search.study import NOT_RUN_ATTR

    study = optuna.create_study(study_name="s", direction="maximize")
    distribution = {"x": FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=distribution, value=0.7,
                                              user_attrs={SEARCH_RECORDS_ATTR: [{"a whole": "run record"}],
                                                          "config": {"x": 0.5}}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={NOT_RUN_ATTR: "the study already holds 1 finished trials"}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "OOM"}))
    study.ask()  # running
    study.enqueue_trial({"x": 0.1})  # a starting point, not run yet
    assert summary(study).splitlines()[0] == ("study s: 1 finished trial (complete 1); 1 failed (not counted); 1 not "
                                              "run (not counted); 1 running; 1 queued (starting points not run yet)")
    table = (write_trials_table(study, tmp_path)).read_text().splitlines()
    # header, the complete trial, the failed one, the running one: not the queued point nor the trial that never ran
    assert len(table) == 4 and "WAITING" not in "\n".join(table) and "already holds" not in "\n".join(table)
    assert SEARCH_RECORDS_ATTR not in table[0] and "user_attrs_config" in table[0]


def test_the_trials_table_names_its_objectives_and_gives_each_trials_costs(tmp_path):
    from bench.shared_suite import SEARCH_RECORDS_ATTR
    from search.export import write_trials_table
    from search.repeats import REPEAT_OF_ATTR

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("definition", {"objective": ["score", "trainable_params"]})
    costs = [{"trainable_params": 100, "train_seconds": 2.0}, {"trainable_params": 300, "train_seconds": 4.0}]
    study.add_trial(optuna.trial.create_trial(  # two tasks: their mean cost
        values=[0.8, 200], user_attrs={SEARCH_RECORDS_ATTR: [{"cost": c} for c in costs]}))
    study.add_trial(optuna.trial.create_trial(values=[0.8, 200], user_attrs={REPEAT_OF_ATTR: 0}))
    table = (write_trials_table(study, tmp_path)).read_text().splitlines()
    header = table[0].split(",")
    assert header[:3] == ["number", "score", "trainable_params"] and not any(c.startswith("values") for c in header)
    rows = [dict(zip(header, line.split(","))) for line in table[1:]]
    # a repeat shows the costs of the run it took its result from
    assert [(r["cost_trainable_params"], r["cost_train_seconds"]) for r in rows] == [("200.0", "3.0")] * 2
    assert rows[0]["cost_peak_memory_bytes"] == ""  # not in the records: no figure, not a made-up one


def test_a_study_without_a_completed_trial_says_why_there_is_no_best(tmp_path):
    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"fail_reason": "MethodError: too many virtual tokens"}))
    lines = summary(study).splitlines()
    assert lines[0] == f"study {study.study_name}: 2 finished trials (pruned 2); 1 failed (not counted)"
    assert lines[1].startswith("no trial completed, so there is no best config: 2 stopped early (each trial's "
                               "pruned_reason in trials.csv says where)")
    assert lines[2].endswith("MethodError: too many virtual tokens")


def test_the_summary_labels_the_best_config_as_the_results_table_does():
    """The summary names a trial's config as the table names its run: with the settings the trial left
    at their defaults (a prefix without projection starts from real tokens' activations), and without
    those that do nothing (its encoder size, which a space may sample for both)."""
    study = optuna.create_study(direction="maximize")
    for projection, value in ((False, 0.7), (True, 0.6)):
        config = {"method": "prefix_tuning", "train": {"lr": 0.01},
                  "settings": {"num_virtual_tokens": 8, "prefix_projection": projection, "encoder_hidden_size": 64}}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": config}))
    assert ("best: trial 0 (validation score 0.7000): prefix_tuning[init=real_tokens,num_virtual_tokens=8,"
            "prefix_projection=False,lr=0.01]") in summary(study)
    study.add_trial(optuna.trial.create_trial(value=0.8, user_attrs={"config": config}))  # with its projection
    assert "prefix_tuning[encoder_hidden_size=64,init=random,num_virtual_tokens=8,prefix_projection=True,lr=0.01]" in (
        summary(study))


def test_the_learning_rate_plot_is_drawn_from_a_shared_learning_rate_too(tmp_path):
    # a space may give every method one `lr` (key `lr`), not one per method (`prompt_tuning.lr`)
    study = optuna.create_study(direction="maximize")
    distributions = {"lr": FloatDistribution(1e-3, 0.3, log=True)}
    for i, lr in enumerate([0.001, 0.01, 0.1]):
        study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions=distributions, value=0.5 + 0.1 * i,
                                                  user_attrs={"config": {"method": "prompt_tuning"}}))
    assert "score_vs_lr.png" in {path.name for path in write_plots(study, tmp_path)}


def test_an_integer_parameter_only_some_trials_have_stays_an_integer_in_the_table(tmp_path):
    from search.export import write_trials_table

    study = optuna.create_study(direction="maximize")
    hidden = {"p_tuning.encoder_hidden_size": IntDistribution(16, 512, log=True)}
    study.add_trial(optuna.trial.create_trial(params={"p_tuning.encoder_hidden_size": 128}, distributions=hidden,
                                              value=0.5))
    study.add_trial(optuna.trial.create_trial(value=0.6))  # a method without it
    choice = {"p_tuning.num_virtual_tokens": CategoricalDistribution([4, 8])}
    study.add_trial(optuna.trial.create_trial(params={"p_tuning.num_virtual_tokens": 8}, distributions=choice,
                                              value=0.7, user_attrs={"repeat_of": 0}))
    table = (write_trials_table(study, tmp_path)).read_text().splitlines()
    header = table[0].split(",")
    for name, expected in (("params_p_tuning.encoder_hidden_size", ["128", "", ""]),
                           ("params_p_tuning.num_virtual_tokens", ["", "", "8"]),
                           ("user_attrs_repeat_of", ["", "", "0"])):
        assert [line.split(",")[header.index(name)] for line in table[1:]] == expected, name


def test_what_a_killed_trial_left_is_removed_and_finished_trials_kept(tmp_path):
    from bench.record_folder import unfinished_runs
    from search.objective import remove_failed_trials_leftovers, trial_folder

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # killed after saving its adapter
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # failed on its second task
    for number, files in ((0, ["run/adapter/adapter_model.safetensors"]), (1, ["run/record.json", "run/adapter/a"]),
                          (2, ["first/record.json", "second/adapter/a"])):
        for name in files:
            path = trial_folder(tmp_path, number) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
    assert len(unfinished_runs(tmp_path)) == 2  # what tables would name as runs to rerun
    assert remove_failed_trials_leftovers(study, tmp_path) == [0, 2]
    assert not trial_folder(tmp_path, 0).exists() and unfinished_runs(tmp_path) == []
    assert (trial_folder(tmp_path, 1) / "run/record.json").exists()  # a finished trial's, and a finished task's
    assert (trial_folder(tmp_path, 2) / "first/record.json").exists()
    assert remove_failed_trials_leftovers(study, tmp_path) == []  # nothing left to remove


def test_a_trial_silenced_for_one_handler_stays_silenced_after_another_drops_its_traceback():
    """Handlers share a log record: one whose filter only drops an interrupted trial's traceback (a
    suite's, set up earlier in the process) must not keep another's from silencing it (a search's)."""
    from bench.interrupts import _NoTracebackFor, quiet_trial_failures

    first, second = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(first), logging.StreamHandler(second)]
    logging.getLogger("optuna").addHandler(handlers[0])
    try:
        quiet_trial_failures()  # drops the traceback of Ctrl-C, on every handler there is
        handlers[1].addFilter(_NoTracebackFor((KeyboardInterrupt,), silent=(KeyboardInterrupt,)))  # drops its lines
        logging.getLogger("optuna").addHandler(handlers[1])

        def interrupted(trial):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            optuna.create_study().optimize(interrupted, n_trials=1)
    finally:
        for handler in handlers:
            logging.getLogger("optuna").removeHandler(handler)
    assert "Trial 0 failed" in first.getvalue() and "Traceback" not in first.getvalue()
    assert "Trial 0" not in second.getvalue()


@pytest.mark.parametrize("rates, scale", [((0.001, 0.3), "log"), ((0.011, 0.019), "linear")])
def test_a_learning_rate_axis_is_logarithmic_over_a_decade_or_more(tmp_path, monkeypatch, rates, scale):
    import matplotlib.figure

    study = optuna.create_study(direction="maximize")
    distributions = {"prompt_tuning.lr": FloatDistribution(1e-3, 0.3, log=True)}
    for lr in rates:
        study.add_trial(optuna.trial.create_trial(params={"prompt_tuning.lr": lr}, distributions=distributions,
                                                  value=lr))
    axes, savefig = {}, matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, path, **options: (axes.update(
        {Path(path).name.partition(".partial")[0].lstrip("."): figure.axes[0]}), savefig(figure, path, **options)))
    write_plots(study, tmp_path)
    drawn = axes["score_vs_lr.png"]
    # within a decade a log axis labels one tick at most, and its minor labels (1.1x10^-2 ...) run together
    assert drawn.get_xscale() == scale
