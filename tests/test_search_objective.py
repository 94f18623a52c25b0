"""The search objective's bookkeeping, with the run path replaced by recorded learning curves:
reports to the pruner across several tasks, relative scores, diverging runs."""

import json
from pathlib import Path

import optuna
import pytest

import search.objective
from bench.train import DivergedError, TrainSettings
from search.objective import Objective, Reference, full_ft_references
from search.pruning import REPORT_ERRORS_ATTR
from search.references import TaskReference, against_full_ft, one_task_reference, task_references
from search.space import load_space

STEPS = 4


def _found(references: dict[str, Reference]) -> dict[str, tuple[float, int]]:
    return {task: (reference.score, reference.steps) for task, reference in references.items()}

# validation score at steps 2 and 4 (the final one is the last) per (task, learning rate)
CURVES = {("a", 0.01): (0.6, 0.8), ("b", 0.01): (0.4, 0.5),
          ("a", 0.02): (0.7, 0.8), ("b", 0.02): (0.1, 0.2), ("c", 0.01): (0.9, 0.3)}


@pytest.fixture
def recorded_runs(monkeypatch, tmp_path):
    def execute_run(spec, *, on_eval, pool):
        curve = CURVES[(spec.task, spec.train.lr)]
        for step, value in zip((2, STEPS), curve):
            on_eval(step, value, 100)
        folder = tmp_path / spec.task / f"lr{spec.train.lr}"
        return {"task": {"primary_metric": "accuracy"}, "scores": {"validation": {"accuracy": curve[-1]}},
                "cost": {"trainable_params": 100}, "artifact_path": str(folder / "adapter")}

    monkeypatch.setattr(search.objective, "execute_run", execute_run)


def objective(tmp_path: Path, references: dict) -> Objective:
    space_file = tmp_path / "space.yaml"
    space_file.write_text("methods: [prompt_tuning]\nshared: {num_virtual_tokens: {value: 4}}\n"
                          "per_method:\n  prompt_tuning:\n    init: {value: random}\n    lr: {choices: [0.01, 0.02]}\n")
    return Objective(space=load_space(space_file), tasks=["a", "b"], model="tiny", results_dir=tmp_path,
                     train=TrainSettings(steps=STEPS, eval_every=2), references=references)


def test_several_tasks_are_scored_relative_to_full_fine_tuning_and_pruned_on_any_task(recorded_runs, tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.3))
    run = objective(tmp_path, references={"a": 0.8, "b": 0.5})
    study.enqueue_trial({"prompt_tuning.lr": 0.01})
    study.enqueue_trial({"prompt_tuning.lr": 0.02})
    study.optimize(run, n_trials=2)
    kept, stopped = study.trials
    # task b's steps follow task a's: every trial reports the same task at the same step
    assert kept.intermediate_values == {2: 0.6, 4: 0.8, 6: 0.4, 8: 0.5}
    # with the standard error of each report, on the 100 examples behind it
    assert kept.user_attrs[REPORT_ERRORS_ATTR] == pytest.approx(
        {"2": 0.049, "4": 0.04, "6": 0.049, "8": 0.05}, abs=5e-4)
    assert kept.value == pytest.approx((0.8 / 0.8 + 0.5 / 0.5) / 2)
    assert kept.user_attrs["tasks"] == ["a", "b"] and len(kept.user_attrs["records"]) == 2
    assert [r["scores"]["validation"]["accuracy"] for r in kept.user_attrs["run_records"]] == [0.8, 0.5]
    # strong on the first task, weak on the second: stopped there, before finishing
    assert stopped.state == optuna.trial.TrialState.PRUNED
    assert stopped.intermediate_values == {2: 0.7, 4: 0.8, 6: 0.1}


def test_a_diverging_run_is_pruned_with_its_reason(monkeypatch, tmp_path):
    def diverging(spec, *, on_eval, pool):
        raise DivergedError(3, float("nan"))

    monkeypatch.setattr(search.objective, "execute_run", diverging)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective(tmp_path, references={}), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_reason"] == ("training diverged at step 3: loss is nan (a lower learning rate, "
                                                 "or a lower max_grad_norm, usually keeps it finite)")


def test_references_cover_every_task_or_none_and_stay_with_the_study(monkeypatch, capsys, tmp_path):
    from types import SimpleNamespace

    found = {"a": Reference(0.8, 10)}
    monkeypatch.setattr(search.objective, "full_ft_references",
                        lambda results, tasks, model, steps, **kwargs: dict(found))
    request = SimpleNamespace(results=tmp_path, model="tiny", train=TrainSettings(steps=10, batch_size=4, eval_size=16),
                              tasks=("a", "b", "c"), tasks_dirs=("cards",), card_versions=None)
    study = optuna.create_study(direction="maximize")
    assert task_references(study, request) == {}  # a mean of a ratio and a raw score means nothing
    out = capsys.readouterr().out
    assert "no full fine-tuning record of tiny on b, c" in out
    budget = f"--steps 10 --batch-size 4 --eval-size 16 --tasks-dir cards --results {tmp_path}"  # the search's own
    assert (f"`spbench run --task b --model tiny --method full_ft {budget}; "
            f"spbench run --task c --model tiny --method full_ft {budget}` makes them") in out
    found.update(b=Reference(0.5, 40), c=Reference(0.6, 10))  # recorded later: the study keeps its first scale
    assert task_references(study, request) == {}
    assert "scoring each task raw (no full fine-tuning score of every task" in capsys.readouterr().out
    fresh = optuna.create_study(direction="maximize")
    assert task_references(fresh, request) == {"a": 0.8, "b": 0.5, "c": 0.6}
    assert "relative to full fine-tuning: a 0.8000, b 0.5000, c 0.6000 (the best full fine-tuning config by " \
           f"validation score under {tmp_path}, mean over seeds: a 10 steps, b 40 steps, c 10 steps)" \
           in capsys.readouterr().out
    found["b"] = Reference(0.5, 40, "scores no better than answering every example with the commonest class")
    weak = optuna.create_study(direction="maximize")
    warning = ("  b: full fine-tuning scores no better than answering every example with the commonest class on "
               "validation: it may not have learned at its budget, and a trial's ratio to it says little")
    assert task_references(weak, request)["b"] == 0.5
    assert warning in capsys.readouterr().out
    found.clear()  # records gone since: the resumed study keeps its scale, and says it again
    assert task_references(weak, request)["b"] == 0.5 and warning in capsys.readouterr().out


def test_a_one_task_winner_is_measured_against_full_fine_tuning_from_the_records(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from search.study import DEFINITION_ATTR

    seen = {}

    def found(results, tasks, model, *, steps, eval_size, batch_size, cards):
        seen.update(tasks=tasks, steps=steps, eval_size=eval_size, batch_size=batch_size, cards=cards)
        return dict(references)

    monkeypatch.setattr(search.objective, "full_ft_references", found)
    request = SimpleNamespace(results=tmp_path, model="tiny", train=TrainSettings(steps=10, batch_size=4, eval_size=16),
                              tasks_dirs=())
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(DEFINITION_ATTR, {"tasks": ["a"], "cards": {"a": {"version": 1, "card": "x/a.yaml"}}})
    study.add_trial(optuna.trial.create_trial(value=0.72))
    references = {}
    assert against_full_ft(study, request, one_task_reference(study, request)) == (
        f"no full fine-tuning record of tiny on a under {tmp_path} to measure the winner against (`spbench run "
        f"--task a --model tiny --method full_ft --steps 10 --batch-size 4 --eval-size 16 --results {tmp_path}` "
        "makes one)")
    assert seen == {"tasks": ["a"], "steps": 10, "eval_size": 16, "batch_size": 4,
                    "cards": {"a": {"version": 1, "card": "x/a.yaml"}}}  # chosen as the study's budget and card
    references["a"] = Reference(0.8, 40)
    assert one_task_reference(study, request) == TaskReference("a", score=0.8, steps=40)
    assert against_full_ft(study, request, one_task_reference(study, request)) == (
        f"the winner's validation score 0.7200 is 0.900× full fine-tuning's 0.8000 (its best run under {tmp_path} by "
        "validation, mean over seeds, 40 steps; the trials trained 10)")
    references["a"] = Reference(0.5, 40, "is not told apart from answering every example with the commonest class")
    assert against_full_ft(study, request, one_task_reference(study, request)).endswith(
        "the trials trained 10); full fine-tuning is not told apart from answering every example with the commonest "
        "class: it may not have learned at its budget, and the comparison says little")
    study.set_user_attr(DEFINITION_ATTR, {"tasks": ["a", "b"]})  # several tasks: trials are scored relative already
    assert one_task_reference(study, request) is None


def _write_full_ft(folder: Path, task: str, score: float, *, steps: int = 10, eval_size: int = 16, seed: int = 0,
                   lr: float = 0.001, version: int = 1, card: str | None = None,
                   on: tuple = ("cpu", "float32"), commonest_class: float | None = None, **train) -> None:
    """A full fine-tuning run record holding what `spbench results` reads."""
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "run_id": folder.name, "seed": seed,
        "task": {"name": task, "version": version, "primary_metric": "accuracy", **({"card": card} if card else {})},
        "model": {"name": "m", "device": on[0], "dtype": on[1]}, "method": {"name": "full_ft", "settings": {}},
        "train": {"steps": steps, "eval_size": eval_size, "lr": lr, "seed": seed, **train},
        "scores": {"validation": {"accuracy": score}}, "cost": {},
        **({"commonest_class": {"validation": commonest_class}} if commonest_class is not None else {})}))


def test_full_fine_tuning_references_prefer_runs_like_the_searchs_trials(tmp_path):
    _write_full_ft(tmp_path / "a-10", "a", 0.6)
    _write_full_ft(tmp_path / "a-40", "a", 0.9, steps=40)  # scores higher, at another budget
    _write_full_ft(tmp_path / "a-smoke", "a", 0.95, eval_size=4)  # the same budget scored on a few examples: noise
    _write_full_ft(tmp_path / "b-40", "b", 0.7, steps=40)  # no run of b at 10 steps: the best of any budget
    _write_full_ft(tmp_path / "a-gpu", "a", 0.99, on=("cuda", "bfloat16"))  # not computed as this CPU's trials
    assert _found(full_ft_references(tmp_path, ["a", "b"], "m", steps=10, eval_size=16)) \
        == {"a": (0.6, 10), "b": (0.7, 40)}
    # without a run scored on the trials' examples: of the search's budget, the runs scored on the
    # most examples (the smoke run's 0.95 on 4 examples is no reference)
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=400)) == {"a": (0.6, 10)}


def test_full_fine_tuning_references_train_on_the_trials_data_and_prefer_their_batch_size(tmp_path):
    _write_full_ft(tmp_path / "a-b8", "a", 0.6, batch_size=8)
    _write_full_ft(tmp_path / "a-b32", "a", 0.7, batch_size=32)
    _write_full_ft(tmp_path / "a-few", "a", 0.95, batch_size=8, train_size=32)  # a few-shot setting: not the trials'
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16, batch_size=8)) == {"a": (0.6, 10)}
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16, batch_size=32)) == {"a": (0.7, 10)}
    # no run at the trials' batch size: the best of their steps
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16, batch_size=4)) == {"a": (0.7, 10)}


def test_full_fine_tuning_references_are_chosen_as_the_results_table_chooses(tmp_path):
    # seeds of one config count by their mean, and the config with the best mean is the reference
    _write_full_ft(tmp_path / "lr1-s0", "a", 0.9, lr=0.001)
    _write_full_ft(tmp_path / "lr1-s1", "a", 0.5, lr=0.001, seed=1)
    _write_full_ft(tmp_path / "lr2-s0", "a", 0.8, lr=0.002)
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16)) == {"a": (0.8, 10)}


def test_a_full_fine_tuning_reference_no_better_than_the_commonest_class_says_so(tmp_path):
    _write_full_ft(tmp_path / "a", "a", 0.5, commonest_class=0.5)
    _write_full_ft(tmp_path / "b", "b", 0.9, commonest_class=0.5)
    found = full_ft_references(tmp_path, ["a", "b"], "m", steps=10, eval_size=16)
    assert found["a"].learned_nothing == ("scores no better than answering every example with the commonest class "
                                          "of those scored (0.500)")
    assert found["b"].learned_nothing is None


def test_full_fine_tuning_references_leave_the_shipped_results_out(tmp_path):
    # results/reference holds full fine-tuning runs of the quick suite: not the user's references
    _write_full_ft(tmp_path / "reference" / "run", "a", 0.9)
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16)) == {}


def test_full_fine_tuning_references_of_another_card_or_card_version_do_not_count(tmp_path):
    for version, card, score in ((1, "/x/cards/a.yaml", 0.9), (2, "/x/cards/a.yaml", 0.7), (2, "/y/mine/a.yaml", 0.8),
                                 (2, None, 0.75)):  # a record from before records named their card
        _write_full_ft(tmp_path / f"v{version}{score}", "a", score, version=version, card=card)
    shipped_v2 = {"a": {"version": 2, "card": "cards/a.yaml"}}
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16, cards=shipped_v2)) \
        == {"a": (0.75, 10)}
    mine = {"a": {"version": 2, "card": "mine/a.yaml"}}
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16, cards=mine)) == {"a": (0.8, 10)}
    assert _found(full_ft_references(tmp_path, ["a"], "m", steps=10, eval_size=16)) == {"a": (0.9, 10)}


def test_a_trial_trained_to_the_end_is_never_pruned(recorded_runs, tmp_path):
    # task c falls below the pruner's threshold only at its final evaluation: the run is finished,
    # and stopping it there would throw its score away
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    run = objective(tmp_path, references={})
    run.tasks = ["c"]
    study.enqueue_trial({"prompt_tuning.lr": 0.01})
    study.optimize(run, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.3


def test_a_config_an_earlier_trial_completed_takes_its_result_without_training(monkeypatch, tmp_path):
    from search.repeats import REPEAT_OF_ATTR
    from search.summary import summary
    from search.winner import best_trial, statistical_ties

    trained = []

    def execute_run(spec, *, on_eval, pool):
        trained.append(spec.train.lr)
        folder = spec.record_path().parent  # where a real run writes its record
        folder.mkdir(parents=True, exist_ok=True)
        record = {"task": {"primary_metric": "accuracy"},
                  "scores": {"validation": {"accuracy": 0.9 if spec.train.lr == 0.02 else 0.8, "n": 400}},
                  "cost": {}, "artifact_path": str(folder / "adapter")}
        (folder / "record.json").write_text(json.dumps(record))
        return record

    monkeypatch.setattr(search.objective, "execute_run", execute_run)
    study = optuna.create_study(direction="maximize")
    run = objective(tmp_path, references={})
    run.tasks = ["a"]
    for lr in (0.02, 0.01, 0.02, 0.01):
        study.enqueue_trial({"prompt_tuning.lr": lr})
    study.optimize(run, n_trials=4)
    assert trained == [0.02, 0.01]  # the seeded run of a config is trained once
    assert [t.value for t in study.trials] == [0.9, 0.8, 0.9, 0.8]
    assert [t.user_attrs.get(REPEAT_OF_ATTR) for t in study.trials] == [None, None, 0, 1]
    assert study.trials[2].user_attrs["records"] == study.trials[0].user_attrs["records"]
    # the repeat adds no record for `spbench results --storage`, and no curve for the pruner
    assert "run_records" not in study.trials[2].user_attrs and not study.trials[2].intermediate_values
    # the winner is the trial that ran it, and its repeat is no rival within the standard error
    assert best_trial(study).number == 0
    assert [t.number for t in statistical_ties(study)[2]] == []
    assert summary(study).splitlines()[0].endswith("4 finished trials (complete 4), of which 2 (2, 3) sampled a "
                                                   "config an earlier trial had completed and took its result "
                                                   "without training")


def test_two_sampled_points_that_train_one_run_are_one_config(monkeypatch, tmp_path):
    """A prefix's encoder size does nothing without its projection: the run ids agree, and so must the search."""
    trained = []

    def execute_run(spec, *, on_eval, pool):
        trained.append(spec.method_settings)
        record = {"task": {"primary_metric": "accuracy"}, "scores": {"validation": {"accuracy": 0.7, "n": 400}},
                  "cost": {}, "artifact_path": str(tmp_path / "adapter")}
        return record

    monkeypatch.setattr(search.objective, "execute_run", execute_run)
    space_file = tmp_path / "space.yaml"
    space_file.write_text("methods: [prefix_tuning]\nshared: {num_virtual_tokens: {value: 4}}\nper_method:\n"
                          "  prefix_tuning:\n    prefix_projection: {value: false}\n"
                          "    encoder_hidden_size: {choices: [64, 256]}\n    lr: {value: 0.01}\n")
    run = Objective(space=load_space(space_file), tasks=["a"], model="tiny", results_dir=tmp_path,
                    train=TrainSettings(steps=STEPS, eval_every=2))
    study = optuna.create_study(direction="maximize")
    for size in (64, 256):
        study.enqueue_trial({"prefix_tuning.encoder_hidden_size": size})
    study.optimize(run, n_trials=2)
    assert len(trained) == 1 and study.trials[1].user_attrs.get("repeat_of") == 0


def test_a_trial_of_a_study_from_before_run_configurations_were_kept_is_still_found_as_a_twin(monkeypatch, tmp_path):
    from search.repeats import CONFIG_ATTR

    trained = []

    def execute_run(spec, *, on_eval, pool):
        trained.append(spec.train.lr)
        return {"task": {"primary_metric": "accuracy"}, "scores": {"validation": {"accuracy": 0.6, "n": 400}},
                "cost": {}, "artifact_path": str(tmp_path / "adapter")}

    monkeypatch.setattr(search.objective, "execute_run", execute_run)
    run = objective(tmp_path, references={})
    run.tasks = ["a"]
    now = optuna.create_study(direction="maximize")
    now.enqueue_trial({"prompt_tuning.lr": 0.02})
    now.optimize(run, n_trials=1)
    before = optuna.create_study(direction="maximize")  # its trial kept the sampled config only
    before.add_trial(optuna.trial.create_trial(value=0.6, params=now.trials[0].params,
                                               distributions=now.trials[0].distributions,
                                               user_attrs={CONFIG_ATTR: now.trials[0].user_attrs[CONFIG_ATTR],
                                                           "records": []}))
    before.enqueue_trial({"prompt_tuning.lr": 0.02})
    before.optimize(run, n_trials=1)
    assert trained == [0.02] and before.trials[1].user_attrs.get("repeat_of") == 0


def test_a_pruned_config_is_trained_again(monkeypatch, tmp_path):
    # the pruner stopped it against the trials of its time; it may let the same config go on now
    calls = []

    def execute_run(spec, *, on_eval, pool):
        calls.append(spec.train.lr)
        on_eval(2, 0.1, 100)
        return {"task": {"primary_metric": "accuracy"}, "scores": {"validation": {"accuracy": 0.5}},
                "cost": {}, "artifact_path": str(tmp_path / "adapter")}

    monkeypatch.setattr(search.objective, "execute_run", execute_run)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.3))
    run = objective(tmp_path, references={})
    run.tasks = ["a"]
    study.enqueue_trial({"prompt_tuning.lr": 0.01})
    study.optimize(run, n_trials=1)
    study.pruner = optuna.pruners.NopPruner()
    study.enqueue_trial({"prompt_tuning.lr": 0.01})
    study.optimize(run, n_trials=1)
    assert calls == [0.01, 0.01]
    assert [t.state.name for t in study.trials] == ["PRUNED", "COMPLETE"]


def test_a_trial_stopped_before_it_saved_anything_leaves_no_folder(monkeypatch, tmp_path):
    def execute_run(spec, *, on_eval, pool):
        Path(spec.results_dir).mkdir(parents=True)  # as the run path makes it before the model loads
        on_eval(2, 0.1, 100)

    monkeypatch.setattr(search.objective, "execute_run", execute_run)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.3))
    run = objective(tmp_path, references={})
    run.tasks = ["a"]
    study.optimize(run, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert not (tmp_path / "trials" / "trial_0000").exists() and (tmp_path / "trials").is_dir()
