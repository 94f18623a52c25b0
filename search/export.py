"""What a finished search hands over: best config, best prompt, trial table, plots, test score."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas  # noqa: E402
import yaml  # noqa: E402

from bench.plots.draw import METHOD_COLOURS, save_atomic, spans_decades  # noqa: E402
from bench.record import ADAPTER_RECORD, copy_tree_atomic, read_record, write_text_atomic  # noqa: E402
from bench.reload import load_trained, task_of  # noqa: E402
from bench.results import method_label, settings_without_effect_in, shown_settings  # noqa: E402
from bench.run import evaluate  # noqa: E402
from bench.shared_suite import SEARCH_RECORDS_ATTR  # noqa: E402

from search.objective import COSTS  # noqa: E402
from search.repeats import CONFIG_ATTR, REPEAT_OF_ATTR, RUN_CONFIG_ATTR, original  # noqa: E402
from search.study import (DEFINITION_ATTR, DONE, FAIL_REASON_ATTR, HOST_ATTR, NOT_RUN_ATTR, RECORDS_ATTR,  # noqa: E402
                          REFERENCES_ATTR, TASKS_ATTR)
from search.workers import listed_by_reason  # noqa: E402
from tasks.metrics import PROPORTION_METRICS, standard_error  # noqa: E402


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """Best validation score; for two objectives, the best-scoring trial of the Pareto front. The
    trial that ran it, where a later one took its result."""
    best = study.best_trial if len(study.directions) == 1 else max(study.best_trials, key=lambda t: t.values[0])
    return original(study.get_trials(deepcopy=False), best)


def statistical_ties(study: optuna.Study) -> tuple[float, int, list[optuna.trial.FrozenTrial]] | None:
    """(standard error, validation size, other trials within one standard error of the best): trials
    the validation set cannot tell from the winner, best first. None where the score is not a
    proportion (F1, ROUGE, a mean over tasks), for two objectives, or without the winner's record.
    The study needs a completed trial."""
    if len(study.directions) > 1:
        return None
    best = best_trial(study)
    records = best.user_attrs.get(RECORDS_ATTR, [])
    if len(records) != 1:
        return None
    try:
        record = read_record(records[0])
    except OSError:  # run on another machine of a shared study
        return None
    n = record["scores"]["validation"].get("n")
    if record["task"]["primary_metric"] not in PROPORTION_METRICS or not n:
        return None
    error = standard_error(best.value, n, adjusted=True)  # as the results table gives it
    ties = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.number != best.number and REPEAT_OF_ATTR not in t.user_attrs and t.value >= best.value - error]
    return error, n, sorted(ties, key=lambda t: -t.value)


def score_test_once(record_path: Path, *, tasks_dirs: tuple[str, ...] = ()) -> dict[str, float]:
    """Score a trial's saved adapter on the test split: done once, for the winner, never to choose."""
    record = read_record(record_path)
    task = task_of(record, tasks_dirs)
    tuned = load_trained(record, task)
    examples = task.examples("test", limit=record["train"]["eval_size"])
    return evaluate(tuned, task, examples, record["train"]["eval_batch_size"])


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
        "study": study.study_name, "trial": trial.number, "objectives": _objectives(study),
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
            for t in _front(study) if t.number != trial.number]
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


def _front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The Pareto front's trials that ran (a repeat took another's result), best score first."""
    return sorted((t for t in study.best_trials if REPEAT_OF_ATTR not in t.user_attrs), key=lambda t: -t.values[0])


def _export_winner(records: list[Path], folder: Path, tasks_dirs: tuple[str, ...]) -> dict[str, dict]:
    """Copy the winner's adapters under best_adapter/ and score each on its task's test split."""
    test = {}
    for path in records:
        record = read_record(path)
        task = record["task"]["name"]
        # the record goes with the adapter, so the copy answers `spbench predict` wherever it is moved
        copy_tree_atomic(Path(record["artifact_path"]), folder / "best_adapter" / task,
                         added={ADAPTER_RECORD: json.dumps(record, indent=2, default=str)})
        test[task] = score_test_once(path, tasks_dirs=tasks_dirs)
    return test


def write_trials_table(study: optuna.Study, folder: Path) -> Path:
    """trials.csv: a row per trial that ran (not a queued starting point, nor a trial that found the
    budget full or its point taken), its objectives by name, its config, and the costs of its runs
    (the mean over tasks), so trials the validation set cannot tell apart can be told apart by cost.
    A pruned trial's objective is its last reported score, where it was stopped."""
    frame = study.trials_dataframe(attrs=("number", "values", "params", "state", "duration", "user_attrs"))
    frame = frame.rename(columns={f"values_{i}": name for i, name in enumerate(_objectives(study))})
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


def _score_label(study: optuna.Study) -> str:
    """What a trial's score is: a task's validation score, or the mean over several tasks (relative
    to each one's full fine-tuning score where the study has them)."""
    tasks = study.user_attrs.get(DEFINITION_ATTR, {}).get("tasks", [])
    if len(tasks) < 2:
        return "validation score"
    return "mean validation score / full FT's" if study.user_attrs.get(REFERENCES_ATTR) else "mean validation score"


def _scatter(study: optuna.Study, param: str, xlabel: str, folder: Path, name: str, log: bool) -> Path | None:
    """Each completed trial's score against its value of `param` (whichever method's), a colour per method."""
    by_method: dict[str, list[tuple]] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if REPEAT_OF_ATTR in trial.user_attrs:  # the same point again
            continue
        method = trial.user_attrs.get(CONFIG_ATTR, {}).get("method", "?")
        by_method.setdefault(method, []).extend((value, trial.values[0]) for key, value in trial.params.items()
                                                if key.rpartition(".")[2] == param)
    if not any(by_method.values()):
        return None
    figure, axes = plt.subplots(figsize=(6, 4))
    for method, points in sorted(by_method.items()):
        if points:
            axes.scatter([p[0] for p in points], [p[1] for p in points], label=method, color=METHOD_COLOURS.get(method),
                         alpha=0.6)  # trials at one value stay visible behind each other
    if log:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(_score_label(study))
    drawn = sum(len(points) for points in by_method.values())
    # pruned trials have no final score to place: a search that prunes many shows few points
    axes.set_title(f"score vs {xlabel}: {drawn} completed {_trials(drawn)} (pruned ones have no score)", fontsize=10)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path = save_atomic(figure, folder / f"{name}.png", dpi=120)
    plt.close(figure)
    return path


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    multi = len(study.directions) > 1
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # names the axes: what the score is, and the cost chosen
    objectives = [_score_label(study) if name == "score" else name for name in _objectives(study)]
    drawings = [("pareto_front", lambda: optuna_plots.plot_pareto_front(study, target_names=objectives))] if multi \
        else [("optimization_history", lambda: optuna_plots.plot_optimization_history(study))]
    if len(complete) >= 2 and not multi:
        drawings.append(("param_importances", lambda: optuna_plots.plot_param_importances(study)))
    for name, draw in drawings:
        # Optuna switches the whole process to its own style as it draws: kept to its own charts
        with matplotlib.rc_context():
            try:
                with warnings.catch_warnings(record=True) as notes:
                    axes = draw()
            except (ValueError, RuntimeError) as err:  # e.g. importances need >1 varying parameter
                print(f"plot {name} skipped: {err}")
                continue
            _print_plot_notes(name, notes)
            if name == "pareto_front" and spans_decades(t.values[1] for t in complete):
                axes.set_yscale("log")  # the cost: trainable parameters span 1e3 to 1e6, say
            if name == "optimization_history":
                axes.set_ylabel(_score_label(study))
            if name == "param_importances":  # a handful of trials gives importances that mean little
                axes.set_title(f"Hyperparameter importances, from {len(complete)} completed trials")
            axes.figure.tight_layout()
            path = save_atomic(axes.figure, folder / f"{name}.png", dpi=120)
            plt.close(axes.figure)
        paths.append(path)
    for param, label, name, log in (("num_virtual_tokens", "prompt length", "score_vs_prompt_length", True),
                                    ("lr", "learning rate", "score_vs_lr", True)):
        path = _scatter(study, param, label, folder, name, log)
        if path:
            paths.append(path)
    return paths


def _print_plot_notes(plot: str, notes: list[warnings.WarningMessage]) -> None:
    """What Optuna warned while drawing, one line each; its warning per parameter whose values have
    fewer than 2 trials becomes one line naming them all."""
    sparse = []
    for note in notes:
        match = re.search(r"parameter `([^`]+)` have less than 2 trials", str(note.message))
        if match:
            sparse.append(match.group(1))
        else:
            print(f"plot {plot}: {note.message}")
    if sparse:
        print(f"plot {plot}: some values of {', '.join(sparse)} have fewer than 2 trials: their importances are rough")


def _objectives(study: optuna.Study) -> list[str]:
    """The study's objective names as its command gave them (`score`, `trainable_params`...)."""
    return study.user_attrs.get(DEFINITION_ATTR, {}).get("objective", ["score", "cost"][:len(study.directions)])


def _config_text(config: dict | None, params: dict) -> str:
    """A trial's config as tables spell it (`p_tuning[encoder=mlp,...,lr=0.01]`); its raw parameters
    where it never sampled one."""
    if not config or not {"method", "settings", "train"} <= set(config):
        return str(config or params)
    settings = shown_settings(config["settings"], settings_without_effect_in(config["method"], config["settings"]))
    return method_label(config["method"], settings + sorted(config["train"].items()))


def summary(study: optuna.Study) -> str:
    states = optuna.trial.TrialState
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in states}
    failed = study.get_trials(deepcopy=False, states=(states.FAIL,))
    counts["not run"] = sum(NOT_RUN_ATTR in t.user_attrs for t in failed)
    counts["fail"] -= counts["not run"]  # ended before running anything: not a failure of a config
    finished = sum(counts[s.name.lower()] for s in DONE)
    ended = ", ".join(f"{state} {counts[state]}" for state in ("complete", "pruned") if counts[state])
    line = f"study {study.study_name}: {finished} finished {_trials(finished)}" + (f" ({ended})" if ended else "")
    repeats = [t.number for t in study.get_trials(deepcopy=False, states=(states.COMPLETE,))
               if REPEAT_OF_ATTR in t.user_attrs]
    if repeats:
        shown = ", ".join(map(str, repeats[:10])) + (" ..." if len(repeats) > 10 else "")
        line += (f", of which {len(repeats)} ({shown}) sampled a config an earlier trial had completed and "
                 "took its result without training")
    for state, said in (("fail", "failed"), ("not run", "not run")):
        if counts[state]:
            line += f"; {counts[state]} {said} (not counted)"
    if counts["running"]:
        line += f"; {counts['running']} running"
    if counts["waiting"]:
        line += f"; {counts['waiting']} queued (starting points not run yet)"
    lines = [line]
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        if counts["pruned"]:  # nothing to hand over: say why, and what would let a trial finish
            lines.append(f"no trial completed, so there is no best config: {counts['pruned']} stopped early (each "
                         "trial's pruned_reason in trials.csv says where); a larger --prune-margin stops fewer, "
                         "--pruner none stops none")
        return "\n".join(lines + _failures(study))
    trial = best_trial(study)
    values = ", ".join(f"{name} {value:.4f}" if name == "score" else f"{name} {value:.4g}"
                       for name, value in zip(_objectives(study), trial.values))
    config = _config_text(trial.user_attrs.get(CONFIG_ATTR), trial.params)
    lines.append(f"best: trial {trial.number} ({values}): {config}")
    ties = statistical_ties(study)
    if ties:
        lines.append(_ties_line(*ties))
    if len(study.directions) > 1:  # best.yaml holds the front's best score; the cheaper trade-offs are these
        front = _front(study)
        lines.append(f"Pareto front ({', '.join(_objectives(study))}), {len(front)} {_trials(len(front))}: "
                     + ", ".join(f"{t.number} ({t.values[0]:.4f}, {t.values[1]:.4g})" for t in front))
    return "\n".join(lines + _failures(study))


def _trials(count: int) -> str:
    return "trial" if count == 1 else "trials"


KILLED = "its process stopped without a word (killed, or out of memory): no heartbeat"


def _failures(study: optuna.Study, shown: int = 5) -> list[str]:
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    # a trial failed with no reason stored is one whose process died (killed, out of memory): its
    # heartbeat went stale, and the storage failed it on the next start
    lines = [f"failed (not counted): trial {t.number} {_config_text(t.user_attrs.get(CONFIG_ATTR), t.params)}: "
             + t.user_attrs.get(FAIL_REASON_ATTR, KILLED)
             for t in failed if NOT_RUN_ATTR not in t.user_attrs][-shown:]
    # workers raced for the last slots or for a starting point: nothing of these trials ran
    not_run = [(t.number, t.user_attrs[NOT_RUN_ATTR]) for t in failed if NOT_RUN_ATTR in t.user_attrs]
    return lines + [f"not run (not counted): {line}" for line in listed_by_reason(not_run)]


def _ties_line(error: float, n: int, tied: list[optuna.trial.FrozenTrial]) -> str:
    within = f"within one standard error ({error:.3f}, n={n} validation examples) of the best"
    if not tied:
        return f"no other trial {within}"
    listed = ", ".join(f"{t.number} ({t.value:.4f})" for t in tied[:10]) + (" ..." if len(tied) > 10 else "")
    return (f"{len(tied)} other {_trials(len(tied))} {within}: {listed}; the validation set cannot tell them "
            "apart (compare their costs, the cost_* columns of trials.csv)")
