"""What a finished search hands over as files: best.yaml, the best prompt as a PEFT adapter with its
test score (scored once, never to choose), and trials.csv."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import optuna
import pandas
import yaml

from bench.record import ADAPTER_RECORD, adapter_beside, copy_tree_atomic, read_record, write_text_atomic
from bench.reload import load_trained, task_of
from bench.run import evaluate
from bench.shared_suite import SEARCH_RECORDS_ATTR
from search.costs import COSTS
from search.repeats import CONFIG_ATTR, REPEAT_OF_ATTR, RUN_CONFIG_ATTR, original
from search.study import HOST_ATTR, NOT_RUN_ATTR, RECORDS_ATTR, REFERENCES_ATTR, TASKS_ATTR
from search.winner import best_trial, objective_names, pareto_front, statistical_ties


def score_test_once(record_path: Path, *, tasks_dirs: tuple[str, ...] = ()) -> dict[str, float]:
    """Score a trial's saved adapter on the test split: done once, for the winner, never to choose."""
    record = read_record(record_path)
    task = task_of(record, tasks_dirs)
    tuned = load_trained(record, task, adapter_beside(record_path))
    examples = task.examples("test", limit=record["train"]["eval_size"])
    return evaluate(tuned, task, examples, record["train"]["eval_batch_size"]).scores


def write_best(study: optuna.Study, folder: Path, *, model: str, train_defaults,
               tasks_dirs: tuple[str, ...] = ()) -> Path:
    """best.yaml, the best prompt as a PEFT adapter per task, and its test score: computed once per
    winner (a rerun that finds the same winner keeps the score it has), and only on the machine
    that holds the winner's adapter (in a shared study, another one may have run it)."""
    trial = best_trial(study)
    config = trial.user_attrs[CONFIG_ATTR]
    records = [Path(p) for p in trial.user_attrs[RECORDS_ATTR]]
    local = all(path.exists() for path in records)
    out = folder / "best.yaml"
    best = {
        "study": study.study_name, "trial": trial.number, "objectives": objective_names(study),
        "validation_values": trial.values, **_per_task(study, trial), "model": model,
        "method": config["method"], "settings": config["settings"],
        "train": {**dataclasses.asdict(train_defaults), **config["train"]},
    }
    if tasks_dirs:  # where its cards were found: `run --config` finds the same ones (a user's sst2, say)
        best["tasks_dirs"] = [str(Path(cards).resolve()) for cards in tasks_dirs]
    if len(study.directions) > 1:  # this is the front's best score; the cheaper trade-offs, each runnable too
        best["pareto_front"] = [
            {"trial": t.number, "validation_values": t.values, "method": t.user_attrs[CONFIG_ATTR]["method"],
             "settings": t.user_attrs[CONFIG_ATTR]["settings"],
             "train": {**dataclasses.asdict(train_defaults), **t.user_attrs[CONFIG_ATTR]["train"]}}
            for t in pareto_front(study) if t.number != trial.number]
    ties = statistical_ties(study)
    if ties:
        best["validation_standard_error"] = round(ties[0], 4)
        best["tied_trials"] = [t.number for t in ties[2]]  # within one standard error: as good, as far as n shows
    if not local:
        host = trial.user_attrs.get(HOST_ATTR, "another machine")
        best["test"] = f"not scored here: trial {trial.number} ran on {host}, which holds its adapter"
        best["tasks"] = trial.user_attrs.get(TASKS_ATTR)
        print(f"the best trial ran on {host}: its adapter and test score are there (run this command there)")
    else:
        best["records"] = [str(path) for path in records]
        earlier = yaml.safe_load(out.read_text(encoding="utf-8")) if out.exists() else None
        # the same trial of the same study, run as the same records (a study made anew under the same
        # name numbers its trials from 0 again)
        same_winner = bool(earlier) and all(earlier.get(key) == best[key] for key in ("study", "trial", "records"))
        best["test"] = earlier["test"] if same_winner and isinstance(earlier.get("test"), dict) else \
            _export_winner(records, folder, tasks_dirs)
        best["tasks"] = list(best["test"])  # the test scores are keyed by task
    write_text_atomic("# spbench run --config this-file  (add --task to pick one of `tasks`)\n"
                      + yaml.safe_dump(best, sort_keys=False), out)
    return out


def _per_task(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
    """For several tasks, what the mean score is made of: each task's validation score and the full
    fine-tuning score it was divided by (none: the tasks' raw scores were averaged)."""
    records = trial.user_attrs.get(SEARCH_RECORDS_ATTR, [])
    if len(records) < 2:
        return {}
    return {"validation_by_task": {r["task"]["name"]: r["scores"]["validation"][r["task"]["primary_metric"]]
                                   for r in records},
            "relative_to": study.user_attrs.get(REFERENCES_ATTR) or "none: the mean of the tasks' raw scores"}


def _export_winner(records: list[Path], folder: Path, tasks_dirs: tuple[str, ...]) -> dict[str, dict]:
    """Copy the winner's adapters under best_adapter/ and score each on its task's test split."""
    test = {}
    for path in records:
        record = read_record(path)
        task = record["task"]["name"]
        # the record goes with the adapter, so the copy answers `spbench predict` wherever it is moved
        copy_tree_atomic(adapter_beside(path), folder / "best_adapter" / task,
                         added={ADAPTER_RECORD: json.dumps(record, indent=2, default=str)})
        test[task] = score_test_once(path, tasks_dirs=tasks_dirs)
    return test


def write_trials_table(study: optuna.Study, folder: Path) -> Path:
    """trials.csv: a row per trial that ran (not a queued starting point, nor a trial that found the
    budget full or its point taken), its objectives by name, its config, and the costs of its runs
    (the mean over tasks), so trials the validation set cannot tell apart can be told apart by cost.
    A pruned trial's objective is its last reported score, where it was stopped."""
    frame = study.trials_dataframe(attrs=("number", "values", "params", "state", "duration", "user_attrs"))
    frame = frame.rename(columns={f"values_{i}": name for i, name in enumerate(objective_names(study))})
    ran = frame["state"] != "WAITING"
    if f"user_attrs_{NOT_RUN_ATTR}" in frame:
        ran &= frame[f"user_attrs_{NOT_RUN_ATTR}"].isna()
    trials = study.get_trials(deepcopy=False)
    integers = [f"params_{key}" for t in trials for key, d in t.distributions.items()
                if isinstance(d, optuna.distributions.IntDistribution) or (
                    isinstance(d, optuna.distributions.CategoricalDistribution)
                    and all(isinstance(c, int) and not isinstance(c, bool) for c in d.choices))]
    for column in {*integers, f"user_attrs_{REPEAT_OF_ATTR}"} & set(frame.columns):
        frame[column] = frame[column].astype("Int64")  # an integer some rows lack stays one (128, not 128.0)
    if "duration" in frame:  # wall seconds of the trial, not pandas' "0 days 00:00:04.8"
        frame = frame.rename(columns={"duration": "duration_s"})
        # as timedeltas whatever pandas made of them (all None while every trial still runs)
        frame["duration_s"] = pandas.to_timedelta(frame["duration_s"]).dt.total_seconds().round(1)
    for cost in COSTS:
        frame[f"cost_{cost}"] = [_mean_cost(original(trials, trials[number]), cost) for number in frame["number"]]
    # the whole run records are kept for other machines; here they are in each record.json
    # (and the run configuration, which repeats the config in the form run ids hash it)
    left_out = [f"user_attrs_{SEARCH_RECORDS_ATTR}", f"user_attrs_{NOT_RUN_ATTR}", f"user_attrs_{RUN_CONFIG_ATTR}"]
    frame = frame[ran].drop(columns=left_out, errors="ignore")
    return write_text_atomic(frame.to_csv(index=False), folder / "trials.csv")


def _mean_cost(trial: optuna.trial.FrozenTrial, cost: str) -> float | None:
    values = [record.get("cost", {}).get(cost) for record in trial.user_attrs.get(SEARCH_RECORDS_ATTR, [])]
    return statistics.fmean(values) if values and None not in values else None
