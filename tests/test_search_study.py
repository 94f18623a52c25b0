"""Study plumbing without training: the default sampler and pruner, time limits, plots, argument errors."""

import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.cli import main
from search.export import write_plots
from search.study import make_pruner, make_sampler, optimize


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
    assert 1.0 <= time.monotonic() - start < 5 and study.trials


def test_search_plots_are_drawn_from_the_trials(tmp_path):
    study = optuna.create_study(study_name="plots", direction="maximize")
    distributions = {"method": CategoricalDistribution(["prompt_tuning", "prefix_tuning"]),
                     "num_virtual_tokens": IntDistribution(1, 200, log=True),
                     "prompt_tuning.lr": FloatDistribution(1e-3, 0.3, log=True)}
    for i, (tokens, lr) in enumerate([(1, 0.001), (5, 0.01), (20, 0.03), (100, 0.3), (50, 0.1)]):
        study.add_trial(optuna.trial.create_trial(
            params={"method": "prompt_tuning", "num_virtual_tokens": tokens, "prompt_tuning.lr": lr},
            distributions=distributions, value=0.5 + 0.05 * i))
    names = {path.name for path in write_plots(study, tmp_path)}
    assert names == {"optimization_history.png", "param_importances.png", "score_vs_prompt_length.png",
                     "score_vs_lr.png"}


@pytest.mark.parametrize("objective", ["accuracy", "score,colour", "score,trainable_params,train_seconds"])
def test_a_bad_objective_is_refused_before_anything_runs(capsys, tmp_path, objective):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--objective", objective,
                 "--results", str(tmp_path)])
    assert code != 0 and "--objective must be `score` or `score,COST`" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_negative_prune_margin_is_refused_before_anything_runs(capsys, tmp_path):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", "--prune-margin", "-1",
                 "--results", str(tmp_path)])
    assert code != 0 and "--prune-margin must be 0 or more standard errors, got -1.0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flag, value", [("--monitor-size", "0"), ("--steps", "0")])
def test_bad_training_settings_are_refused_before_anything_runs(capsys, tmp_path, flag, value):
    code = main(["search", "--task", "sst2", "--model", "minilm-l6", "--trials", "1", flag, value,
                 "--results", str(tmp_path)])
    setting = flag[2:].replace("-", "_")
    assert code != 0 and f"training setting {setting}={value} is out of range" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
