"""A search's plots, saved under the study's folder: Optuna's optimization history and parameter
importances; for two objectives, the suite's score-cost chart of the trials with their Pareto front;
and the score against prompt length and learning rate."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from bench.plots.data import COST_UNITS, Point, ScoreCost  # noqa: E402
from bench.plots.data import pareto_front as front_of_points  # noqa: E402  (search.winner's takes a study)
from bench.plots.draw import draw_score_cost, legend_beside, method_colour, method_name, save_atomic  # noqa: E402
from bench.shared_suite import SEARCH_RECORDS_ATTR  # noqa: E402
from search.repeats import CONFIG_ATTR, trained_trials  # noqa: E402
from search.study import DEFINITION_ATTR, REFERENCES_ATTR, score_label  # noqa: E402
from search.winner import objective_names  # noqa: E402
from tasks.metrics import PER_EXAMPLE_MEANS, standard_error  # noqa: E402


EQUAL_IMPORTANCES = "Parameter importances will be equal"  # Optuna's warning where every trial ties the best


def write_plots(study: optuna.Study, folder: Path, *, full_ft: float | None = None) -> list[Path]:
    """Every chart of the study in `folder`; `full_ft`, a one-task search's full fine-tuning validation
    score (from the bench records), is drawn as a reference line on a two-objective front."""
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    multi = len(study.directions) > 1
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if multi:
        paths += _pareto_chart(study, folder, full_ft)
    drawings = [] if multi else [("optimization_history", lambda: optuna_plots.plot_optimization_history(study))]
    if len(complete) >= 2 and not multi:
        drawings.append(("param_importances", lambda: optuna_plots.plot_param_importances(study)))
    for name, draw in drawings:
        # Optuna switches the whole process to its own style as it draws: kept to its own charts
        with matplotlib.rc_context():
            try:
                with warnings.catch_warnings(record=True) as notes:
                    axes = draw()
                if any(EQUAL_IMPORTANCES in str(note.message) for note in notes):
                    plt.close(axes.figure)
                    raise ValueError("every completed trial scored the same, so no parameter explains a difference "
                                     "(Optuna would draw each one equally important)")
            except (ValueError, RuntimeError) as err:  # e.g. importances need >1 varying parameter
                print(f"plot {name} skipped: {err}")
                (folder / f"{name}.png").unlink(missing_ok=True)  # an earlier search's chart would pass for this one's
                continue
            _print_plot_notes(name, notes)
            if name == "optimization_history":
                axes.set_ylabel(score_label(study))
                _end_at_last_ended(axes, study)
            if name == "param_importances":  # a handful of trials gives importances that mean little
                axes.set_title("", loc="left")  # Optuna's own, which ours replaces
                # two lines: centred over axes that long parameter names push right, one would run off the image
                axes.set_title(f"Hyperparameter importances\nfrom {len(complete)} completed trials", fontsize=11)
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


def _end_at_last_ended(axes, study: optuna.Study) -> None:
    """Optuna's history runs its best-value line, and so the x-axis, to every trial number, a
    queued starting point that never ran or a trial still running too: the axis ends at the last
    trial that ended, with matplotlib's own margin."""
    ended = [trial.number for trial in study.get_trials(deepcopy=False) if trial.state.is_finished()]
    if ended:
        first, last = min(ended), max(ended)
        margin = max(last - first, 1) * plt.rcParams["axes.xmargin"]
        axes.set_xlim(first - margin, last + margin)


def _pareto_chart(study: optuna.Study, folder: Path, full_ft: float | None) -> list[Path]:
    """The completed trials' score against their cost, a colour per method, with the Pareto front
    drawn as the suite's charts draw it (Optuna's own chart draws no front, and calls its points
    "Best Trial"), and full fine-tuning's score where known (1 where scores are relative to it)."""
    cost = objective_names(study)[1]
    trials = trained_trials(study)
    # tagged by trial number, the summary table's row for its config
    points = [Point(str(trial.number), _method_of(trial), trial.values[1] / COST_UNITS.get(cost, 1),
                    trial.values[0], _score_error(trial), f"#{trial.number}") for trial in trials]
    if not points:
        return []
    definition = study.user_attrs.get(DEFINITION_ATTR, {})
    tasks = definition.get("tasks", [])
    # the axis adds "(validation)"; one task's score is its primary metric, as its records name it
    metric = score_label(study, split="")
    if len(tasks) == 1:
        metric = next((records[0]["task"]["primary_metric"] for trial in trials
                       if (records := trial.user_attrs.get(SEARCH_RECORDS_ATTR))), metric)
    reference = 1.0 if len(tasks) > 1 and study.user_attrs.get(REFERENCES_ATTR) else full_ft
    references = {"full_ft": Point("full_ft", "full_ft", math.nan, reference, None)} if reference is not None else {}
    chart = ScoreCost("+".join(tasks) or study.study_name, definition.get("model", "?"), metric,
                      cost, points, front_of_points(points), references)
    return draw_score_cost(chart, folder, split="validation", name="pareto_front")


def _score_error(trial: optuna.trial.FrozenTrial) -> float | None:
    """A one-task trial's validation score's standard error, as the suite's charts draw it (from the
    examples scored); None for a mean over tasks, or a metric that is no mean over examples."""
    records = trial.user_attrs.get(SEARCH_RECORDS_ATTR) or []
    if len(records) != 1:
        return None
    examples = records[0].get("scores", {}).get("validation", {}).get("n")
    metric = records[0].get("task", {}).get("primary_metric")
    if metric not in PER_EXAMPLE_MEANS or not examples:
        return None
    return standard_error(trial.values[0], examples, adjusted=True)


def _method_of(trial: optuna.trial.FrozenTrial) -> str:
    """The method a trial trained ("?" for a trial of another program's study)."""
    return trial.user_attrs.get(CONFIG_ATTR, {}).get("method", "?")


LENGTH_TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _scatter(study: optuna.Study, param: str, xlabel: str, folder: Path, name: str, log: bool) -> Path | None:
    """Each completed trial's score against its value of `param` (whichever method's), a colour per method."""
    by_method: dict[str, list[tuple]] = {}
    for trial in trained_trials(study):
        by_method.setdefault(_method_of(trial), []).extend(
            (value, trial.values[0]) for key, value in trial.params.items() if key.rpartition(".")[2] == param)
    if not any(by_method.values()):
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for method, points in sorted(by_method.items()):
        if points:
            axes.scatter([p[0] for p in points], [p[1] for p in points], label=method_name(method),
                         color=method_colour(method), alpha=0.6)  # trials at one value stay visible behind each other
    # within a decade a log axis has one labelled tick at most, and its minor labels run together: linear
    log_axis = log and _decades(by_method) >= 1
    if log_axis:
        axes.set_xscale("log")
    if param == "num_virtual_tokens":  # lengths as numbers ("20", not "2x10^1"), at 1-2-5 steps within the range
        lengths = [value for points in by_method.values() for value, _ in points]
        shown = [n for n in LENGTH_TICKS if min(lengths) / 2 < n < max(lengths) * 2] or sorted(set(lengths))
        axes.set_xticks(shown, [str(n) for n in shown], fontsize=8)
        axes.minorticks_off()
    elif log_axis:  # powers of ten labelled; the minor ticks' labels run into each other
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(xlabel)
    axes.set_ylabel(score_label(study))
    drawn = sum(len(points) for points in by_method.values())
    # pruned trials have no final score to place: a search that prunes many shows few points
    trials = "trial" if drawn == 1 else "trials"
    axes.set_title(f"score vs {xlabel}: {drawn} completed {trials} (pruned ones have no score)", fontsize=10)
    legend_beside(axes, fontsize=7)
    figure.tight_layout()
    path = save_atomic(figure, folder / f"{name}.png", dpi=120, bbox_inches="tight")  # the legend beside
    plt.close(figure)
    return path


def _decades(by_method: dict[str, list[tuple]]) -> float:
    """How many decades the trials' values of a parameter span."""
    values = [value for points in by_method.values() for value, _ in points if value > 0]
    return math.log10(max(values) / min(values)) if values else 0.0


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
