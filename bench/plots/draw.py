"""Drawing the plot data with matplotlib, to PNG and SVG."""

from __future__ import annotations

import contextlib
import math
import os
import textwrap
import zlib
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

# the same data draw the same SVG: fixed element ids and no creation date (committed plots diff cleanly)
matplotlib.rcParams["svg.hashsalt"] = "softprompt-bench"
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text, which a paper's figure editor can restyle
SAVE_OPTIONS = {".png": {}, ".svg": {"metadata": {"Date": None}}}

from bench.names import file_part  # noqa: E402
from bench.plots.data import COST_AXES, InitComparison, LengthCurve, Point, RelativeScores, ScoreCost  # noqa: E402
from bench.results import natural_key  # noqa: E402
from tasks.metrics import METRICS, PER_EXAMPLE_MEANS  # noqa: E402

METHOD_COLOURS = {"prompt_tuning": "tab:blue", "p_tuning": "tab:orange", "prefix_tuning": "tab:green",
                  "lora": "tab:purple", "full_ft": "tab:red"}
SPARE_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


METHOD_MARKERS = {"prompt_tuning": "o", "p_tuning": "s", "prefix_tuning": "^", "lora": "D", "full_ft": "v"}
# as a paper names them, in legends; tables, tags and config labels keep the names `--method` takes
METHOD_NAMES = {"prompt_tuning": "prompt tuning", "p_tuning": "P-tuning", "prefix_tuning": "prefix tuning",
                "lora": "LoRA", "full_ft": "full fine-tuning"}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def method_marker(method: str) -> str:
    return METHOD_MARKERS.get(method, "P")


def method_colour(method: str) -> str:
    """A method's colour in every chart; a method without one (records of a newer version, say) gets
    a spare one by its name, never matplotlib's next colour, which is prompt tuning's blue."""
    return METHOD_COLOURS.get(method) or SPARE_COLOURS[zlib.crc32(method.encode()) % len(SPARE_COLOURS)]


# file names (without extension) of the suite-level charts; per-task ones start with score_cost_stem(axis)
RELATIVE_CHART, LENGTH_CHART, INIT_CHART = SUITE_CHARTS = ("relative_to_full_ft", "prompt_length", "prompt_init")
EXTENSIONS = (".png", ".svg")


def score_cost_stem(axis: str) -> str:
    return f"score_vs_{axis}__"


def _save(figure, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}{extension}" for extension in EXTENSIONS]
    figure.tight_layout()
    for path in paths:  # "tight": the saved image takes in the legends drawn beside the axes
        save_atomic(figure, path, dpi=130, bbox_inches="tight", **SAVE_OPTIONS[path.suffix])
    plt.close(figure)
    return paths


def save_atomic(figure, path: Path, **options) -> Path:
    """`figure.savefig` drawn beside `path`, then renamed over it: a killed command leaves no half image."""
    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        figure.savefig(partial, **options)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the error that stopped the drawing is the one to see
            partial.unlink(missing_ok=True)
        raise
    return path


SCORE_RANGES = {"mcc": (-1.0, 1.0)}  # every other metric of ours scores in [0, 1]

# why a task has no bar in the relative chart
NO_REFERENCE = ("no full fine-tuning score to relate to (no full fine-tuning run on the same task version, training "
                "data, evaluation examples and precision, or one scoring 0 or below)")


def _error_bars(errors, scores=None, metric: str | None = None):
    """Error bar lengths: a standard error, none (nan) where it is unknown. Given the `scores` and their
    `metric`, each side is cut at the metric's range: a perfect accuracy's bar does not reach 1.04."""
    lengths = [float("nan") if error is None else error for error in errors]
    if scores is None or metric not in METRICS:  # an `evaluate:` metric's range is not known here
        return lengths
    low, high = SCORE_RANGES.get(metric, (0.0, 1.0))
    scores = list(scores)
    return [[min(e, max(y - low, 0.0)) for e, y in zip(lengths, scores)],
            [min(e, max(high - y, 0.0)) for e, y in zip(lengths, scores)]]


def _error_note(errors, metrics, *, of: str = "", seeds=None) -> str:
    """What the error bars are, where there are any, for scores of `metrics` (see data.score_error);
    `of`: what the error is of, where not the score itself; `seeds`: the runs behind each score, where
    known (one seed each: the examples' error alone)."""
    if not any(error is not None for error in errors):
        return "no error bars: no standard error known"
    counts = set(seeds) if seeds is not None else set()
    per_example = {metric in PER_EXAMPLE_MEANS for metric in metrics}
    if per_example == {True}:
        if counts == {1}:
            spread = ""
        elif counts and min(counts) > 1:
            spread = " and the seeds"
        else:  # some scores are one seed's, or the counts are not known
            spread = " and, where several, the seeds"
        return f"error bars: ±1 standard error{of}, of the scored examples{spread}"
    if per_example == {False}:  # macro-F1, a correlation: no error from the examples is known
        return f"error bars: ±1 standard error{of or ' of the mean'} over seeds"
    return (f"error bars: ±1 standard error{of}, of the scored examples where the metric is a mean over them, and "
            "the seeds")


def _seed_counts(charts) -> list[int] | None:
    """The seeds behind each point of length curves or init comparisons; None where one of them does not
    say (made by hand, without them): their note then cannot say whether seeds are in the bars."""
    return [n for chart in charts for n in chart.seeds] if all(chart.seeds for chart in charts) else None


# the relative chart's error is of a ratio, from both scores' errors as if independent (data._ratio_error):
# wider than the paired error the report's answer gives for the same two configs
RATIO_ERROR = " of the ratio (from both scores' errors, unpaired)"


def spans_decades(values) -> bool:
    """Whether positive `values` spread over enough orders of magnitude (50x) to need a log axis."""
    positive = [v for v in values if v is not None and v > 0]
    return bool(positive) and max(positive) / min(positive) > 50


def draw_score_cost(chart: ScoreCost, folder: Path, *, split: str = "test", name: str | None = None) -> list[Path]:
    """Score against one cost, a colour and a shape per method, the Pareto front (its points filled)
    and the reference lines; saved as `name`, by default the cost's and the task's."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    log = spans_decades([p.cost for p in chart.points])
    dodges = _dodges(chart.points, log=log)
    front = chart.pareto if len(chart.pareto) > 1 else []  # a lone point is no front: nothing filled
    for method in sorted({p.method for p in chart.points}):
        style = {"fmt": method_marker(method), "color": method_colour(method), "capsize": 3, "alpha": 0.75,
                 "markeredgewidth": 1.5}
        axes.errorbar([], [], yerr=[], label=method_name(method), markerfacecolor="none", **style)  # its legend entry
        for i, point in enumerate(chart.points):  # one at a time: each its own offset
            if point.method != method:
                continue
            drawn = axes.errorbar([point.cost], [point.score],
                                  yerr=_error_bars([point.error], [point.score], chart.metric),
                                  markerfacecolor=style["color"] if point in front else "none", **style)
            if i in dodges:  # moved once drawn: the axes' limits take in the point where its cost is
                shift = offset_copy(axes.transData, figure, x=dodges[i].offset, units="points")
                for artist in drawn.get_children():
                    artist.set_transform(shift)
    if front:  # the best score reachable at each cost: flat until the next point of the front
        (front_line,) = axes.plot([p.cost for p in front], [p.score for p in front], "k--", lw=1,
                                  drawstyle="steps-post", label="Pareto front (of the mean scores; its points filled)")
    if log:
        axes.set_xscale("log")
    else:  # 1.5G, not 1.5 beside a "1e9" that the axis label runs into
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    for method, point in chart.references.items():  # named in the legend: a label on the line would cover points
        axes.axhline(point.score, color=method_colour(method), ls=":", lw=1,
                     label=f"{method_name(method)}'s score ({point.score:.3f})")
    cost = COST_AXES.get(chart.axis, chart.axis)  # a search's study from before it named its cost: "cost"
    axes.set_xlabel(cost + ("\n(points at nearly one cost are set side by side)" if dodges else ""))
    axes.set_ylabel(f"{chart.metric} ({split})")
    note = _error_note([p.error for p in chart.points], [chart.metric], seeds=[p.seeds for p in chart.points])
    axes.set_title(f"{chart.task} / {chart.model}: {chart.metric} vs {cost.split(' (')[0]}\n({note})", fontsize=10)
    legend_beside(axes, fontsize=7)
    # the axes at their final size and limits (the layout settles autoscaled ones): tags and the
    # front's corners are placed where the points will be drawn
    figure.tight_layout()
    if dodges:
        _widen_for(axes, [chart.points[i] for i in dodges], [dodge.offset for dodge in dodges.values()])
    if front and dodges:
        offsets = [dodges[i].offset if (i := chart.points.index(p)) in dodges else 0.0 for p in front]
        front_line.set_xdata(_costs_where_drawn(axes, front, offsets))
    _tag_points(axes, chart, dodges)
    name = name or f"{score_cost_stem(chart.axis)}{file_part(chart.task)}__{file_part(chart.model)}"
    return _save(figure, folder, name)


DODGE = 7.0  # points between the centres of points set side by side: markers and error bars clear of each other
WIDEST = 6 * DODGE  # a group's span at most: many trials at one cost are set closer, not across the chart
NEAR = 0.02  # of the cost axis's span: closer than this, two points' error bars would draw over each other


class Dodge(NamedTuple):
    offset: float  # points right (negative: left) of where its cost puts it
    reach: float  # half its group's width, in points: its tag goes past the group's outermost marker


def _dodges(points: list[Point], *, log: bool) -> dict[int, Dodge]:
    """Horizontal offsets, by index in `points`, for points at nearly one cost (LoRA and prefix tuning
    at one FLOP count, two inits at one parameter count): otherwise one marker hides another and
    their error bars merge into one. A group keeps its order along the axis (by cost, then legend
    order) and spreads about its points' places; points alone are not moved."""
    position = (lambda p: math.log10(p.cost)) if log else (lambda p: p.cost)
    placed = sorted((i for i, p in enumerate(points) if p.cost > 0 or not log),
                    key=lambda i: (position(points[i]), points[i].method, natural_key(points[i].label)))
    if len(placed) < 2:
        return {}
    near = NEAR * (position(points[placed[-1]]) - position(points[placed[0]]))
    groups: list[list[int]] = [[placed[0]]]
    for i in placed[1:]:
        if position(points[i]) - position(points[groups[-1][-1]]) <= near:
            groups[-1].append(i)
        else:
            groups.append([i])
    dodges = {}
    for group in (g for g in groups if len(g) > 1):
        step = min(DODGE, WIDEST / (len(group) - 1))
        reach = (len(group) - 1) / 2 * step
        for k, i in enumerate(group):
            dodges[i] = Dodge(k * step - reach, reach)
    return dodges


MARKER_ROOM = 10.0  # points from a marker's centre to the axes' edge at least: its marker and caps clear it


def _widen_for(axes, points: list[Point], offsets: list[float]) -> None:
    """Widen the cost axis where a point set aside would cross its edge: matplotlib's margin makes room
    for the costs, not for the offsets. Then fix the limits, so nothing drawn later moves them."""
    edges = _costs_where_drawn(axes, points * 2, [o - MARKER_ROOM for o in offsets] +
                               [o + MARKER_ROOM for o in offsets])
    low, high = axes.get_xlim()
    axes.set_xlim(min(low, *edges), max(high, *edges))


def _costs_where_drawn(axes, points: list[Point], offsets: list[float]) -> list[float]:
    """The costs at which points drawn `offsets` points right of their own sit, so that a line through
    them meets their markers. Valid once the layout has settled the axes' size and limits."""
    pixels = axes.figure.dpi / 72  # a point's pixels at the figure's dpi; the costs do not depend on it
    to_pixels, to_data = axes.transData, axes.transData.inverted()
    return [to_data.transform(to_pixels.transform((p.cost, p.score)) + (offset * pixels, 0))[0]
            for p, offset in zip(points, offsets)]


# beyond this many tagged points, only those on the Pareto front are tagged: the rest would cover each other
MOST_TAGS = 12


TAG_SIZE = 6.5  # points
LINE = TAG_SIZE + 2.5  # a tag's height with room between lines, in points


def _tag_points(axes, chart: ScoreCost, dodges: dict[int, Dodge]) -> None:
    """Each point's tag (what tells it from its method's other points) right of it (of its group, where
    points are set side by side), or left where it would cross the axes' edge, in its method's colour;
    a tag that would land on one placed before it moves down a line, so points at one cost and close
    scores stay readable."""
    tagged = [(i, p) for i, p in enumerate(chart.points) if p.tag]
    if len(tagged) > MOST_TAGS:
        tagged = [(i, p) for i, p in tagged if p in chart.pareto]
    points_per_pixel = 72 / axes.figure.dpi
    edge = axes.get_window_extent().x1 * points_per_pixel
    renderer, font = axes.figure.canvas.get_renderer(), FontProperties(size=TAG_SIZE)
    placed: list[tuple[float, float, float]] = []  # each tag's left, right and baseline, in points
    for i, point in sorted(tagged, key=lambda ip: -ip[1].score):
        reach = dodges[i].reach if i in dodges else 0.0
        x, y = (value * points_per_pixel for value in axes.transData.transform((point.cost, point.score)))
        width = renderer.get_text_width_height_descent(point.tag, font, ismath=False)[0] * points_per_pixel
        gap = reach + 5 if x + reach + 5 + width <= edge else -reach - 5  # negative: the tag ends left of it
        left, right, baseline = (x + gap, x + gap + width, y + 3) if gap > 0 else (x + gap - width, x + gap, y + 3)
        while any(left < end and start < right and abs(baseline - line) < LINE for start, end, line in placed):
            baseline -= LINE
        placed.append((left, right, baseline))
        axes.annotate(point.tag, (point.cost, point.score), xytext=(gap, baseline - y), textcoords="offset points",
                      fontsize=TAG_SIZE, color=method_colour(point.method), ha="left" if gap > 0 else "right")


def legend_beside(axes, **options) -> None:
    """The legend right of the axes, where it covers no data however many entries it has."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **options)


def draw_relative(data: RelativeScores, folder: Path, *, split: str = "test") -> list[Path]:
    # which config each bar is: a method's best on validation need not be its best in the table
    chosen = [f"{task}: {data.configs[method][task]}" for task in data.tasks for method in data.methods
              if task in data.configs.get(method, {})]
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(data.tasks) + 4), 4 + 0.12 * len(chosen)))
    methods = [m for m in data.methods if m != "full_ft"]  # 1 by definition: the dashed line
    width = 0.8 / max(len(methods), 1)
    ends = [1.0]  # of the bars and their error bars, which the axis must show
    errors_drawn, seeds_drawn = [], []  # the standard errors behind the bars and their seeds, for the title's note
    for i, method in enumerate(methods):
        xs = [t + i * width for t in range(len(data.tasks))]
        ys = [data.values[method].get(task, float("nan")) for task in data.tasks]  # no bar where unknown
        known = [data.errors.get(method, {}).get(task) for task in data.tasks]
        errors_drawn += known
        seeds_drawn += [n for task in data.tasks for n in data.seeds.get(method, {}).get(task, ())]
        errors = _error_bars(known)
        # bars grow up or down from full fine-tuning's 1: the ratios sit near it, and bars from 0 would
        # draw 0.89 and 0.99 nearly alike (a cut axis would draw their lengths out of proportion)
        axes.bar(xs, [y - 1 for y in ys], width, bottom=1.0, label=method_name(method),
                 color=method_colour(method), yerr=errors, error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "0.3"})
        # along the axes' foot, clear of the bars' ends and error bars; three places: 0.987 and 0.994 are
        # not both 0.99
        for x, y, error in zip(xs, ys, errors):
            if math.isfinite(y):
                axes.text(x, 0.02, f"{y:.3f}", transform=axes.get_xaxis_transform(), fontsize=6, rotation=90,
                          ha="center", va="bottom")
                ends += [y - error, y + error] if math.isfinite(error) else [y]
    axes.axhline(1.0, color="k", lw=0.8, ls="--", label=f"{method_name('full_ft')} (= 1)")
    low, high = min(ends), max(ends)
    margin = 0.25 * max(high - low, 0.05)
    axes.set_ylim(low - margin, high + margin)  # room below the lowest bar's end for the values
    axes.set_xticks([t + 0.4 - width / 2 for t in range(len(data.tasks))], data.tasks, rotation=15, fontsize=8)
    axes.set_ylabel(f"{split} score / full fine-tuning's")
    note = _error_note(errors_drawn, data.metrics.values(), of=RATIO_ERROR, seeds=seeds_drawn if data.seeds else None)
    axes.set_title("Each method's best configuration (on validation), relative to full fine-tuning\n"
                   + textwrap.fill(f"({note})", 90), fontsize=10)
    legend_beside(axes, fontsize=7)
    notes = chosen and ["configurations:", *chosen]
    if data.without_reference:  # a task left out silently would read as one never run
        notes += [f"{NO_REFERENCE}: " + ", ".join(data.without_reference)]
    if notes:
        axes.text(0, -0.25, "\n".join(notes), transform=axes.transAxes, fontsize=6, va="top", family="monospace")
    return _save(figure, folder, RELATIVE_CHART)


PANEL_WIDTH, LEGEND_WIDTH, PANEL_HEIGHT = 5.0, 3.5, 3.6  # inches: a panel, and the room for a legend beside it


def _panels(keys: list[tuple[str, str]]):
    """A figure with one panel per (task, model), in a grid of up to three columns, each with room on
    its right for its legend (see _panel_legends)."""
    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=((PANEL_WIDTH + LEGEND_WIDTH) * columns, PANEL_HEIGHT * rows),
                                squeeze=False)
    for extra in grid.flat[len(keys):]:
        extra.set_visible(False)
    return figure, dict(zip(keys, grid.flat))


def _panel_legends(figure, panels: dict, *, fontsize: float) -> None:
    """One legend under the figure where every panel shows the same entries (the figure narrows to
    its panels, readable at a paper's column width); else a legend beside each panel."""
    entries = [axes.get_legend_handles_labels() for axes in panels.values()]
    if len({tuple(labels) for _, labels in entries}) == 1:
        handles, labels = entries[0]
        columns = next(iter(panels.values())).get_subplotspec().get_gridspec().ncols  # as _panels laid them out
        figure.set_size_inches(PANEL_WIDTH * columns, figure.get_size_inches()[1])
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), fontsize=fontsize,
                      ncol=1 if max(map(len, labels)) > 40 else min(len(labels), 2 * columns), frameon=False)
    else:
        for axes in panels.values():
            legend_beside(axes, fontsize=fontsize)


# line style and marker of a method's k-th config: 4 x 5 pairs before one repeats (4 and 5 share no factor)
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")
LR_NOTE = "each point at its best learning rate on validation"
LRS_DIFFER_NOTE = "points trained at different learning rates"


def _lr_note(charts) -> str:
    """What the learning rates behind a figure's points were, where its labels do not name one: the
    best of several on validation, or (in other panels, say) simply not one rate."""
    notes = [LR_NOTE] if any(chart.lrs_chosen for chart in charts) else []
    if any(chart.lrs_differ and not chart.lrs_chosen for chart in charts):
        notes.append(LRS_DIFFER_NOTE)
    return "".join(f"; {note}" for note in notes)


INIT_HATCHES = ("", "//", "..", "xx", "\\\\")
COMMONEST_CLASS = "every example answered with the commonest class"  # the init chart's line for scale


def _score_limits(comparisons: list[InitComparison]) -> tuple[float, float]:
    """A bar chart's score axis: from 0 (or below, for a correlation), with room above the bars for
    their values, and not far past 1 for a built-in metric (every one is at most 1)."""
    scores = [score for c in comparisons for score in c.scores]
    chance = [c.commonest_class for c in comparisons if c.commonest_class is not None]  # its line too
    top, bottom = max(scores + chance), min(0.0, *scores)
    upper = top * 1.2 if top > 0 else 1
    if all(c.metric in METRICS for c in comparisons):
        upper = min(upper, max(1.0, top + 0.1))
    return bottom * 1.2, upper


def draw_length_curves(curves: list[LengthCurve], folder: Path, *, split: str = "test") -> list[Path]:
    """Score against prompt length, a panel per task and model, a colour per method (configs of
    one method told apart by line style and marker)."""
    figure, panels = _panels(list(dict.fromkeys((c.task, c.model) for c in curves)))
    for (task, model), axes in panels.items():
        shown = [c for c in curves if (c.task, c.model) == (task, model)]
        for curve in shown:
            method = curve.method.partition("[")[0]
            k = [c for c in shown if c.method.partition("[")[0] == method].index(curve)
            axes.errorbar(curve.lengths, curve.scores, yerr=_error_bars(curve.errors, curve.scores, curve.metric),
                          capsize=3,
                          ls=LINE_STYLES[k % len(LINE_STYLES)], marker=MARKERS[k % len(MARKERS)],
                          color=method_colour(method), label=curve.method)
        axes.set_xscale("log")
        lengths = sorted({n for c in shown for n in c.lengths})
        axes.set_xticks(lengths, [str(n) for n in lengths], fontsize=8)  # the lengths run, not powers of ten
        axes.minorticks_off()
        axes.set_title(f"{task} / {model}", fontsize=10)
        axes.set_xlabel("prompt length (virtual tokens)", fontsize=9)
        axes.set_ylabel(f"{shown[0].metric} ({split})", fontsize=9)
    _panel_legends(figure, panels, fontsize=8)
    note = _error_note([e for c in curves for e in c.errors], {c.metric for c in curves}, seeds=_seed_counts(curves))
    figure.suptitle(f"Score vs prompt length ({note}{_lr_note(curves)})",
                    fontsize=10)
    return _save(figure, folder, LENGTH_CHART)


def draw_inits(comparisons: list[InitComparison], folder: Path, *, split: str = "test") -> list[Path]:
    """Prompt tuning by initialisation, a panel per task and model, a bar per config and init: shades
    of prompt tuning's own colour (another method's would read as that method), told apart by hatching
    too. Panels of one metric share its axis, so bar heights compare across them."""
    figure, panels = _panels(list(dict.fromkeys((c.task, c.model) for c in comparisons)))
    one_metric = len({c.metric for c in comparisons}) == 1
    for (task, model), axes in panels.items():
        shown = [c for c in comparisons if (c.task, c.model) == (task, model)]
        inits = sorted({i for c in shown for i in c.inits})
        width = 0.8 / len(shown)
        for k, comparison in enumerate(shown):
            scores = dict(zip(comparison.inits, zip(comparison.scores, comparison.errors)))
            xs = [i + k * width for i, init in enumerate(inits) if init in scores]
            shade = plt.get_cmap("Blues")(0.85 - 0.5 * k / max(len(shown) - 1, 1))
            heights = [scores[i][0] for i in inits if i in scores]
            bars = axes.bar(xs, heights, width, capsize=3,
                            yerr=_error_bars((scores[i][1] for i in inits if i in scores), heights, comparison.metric),
                            label=comparison.config, color=shade, edgecolor="white",
                            hatch=INIT_HATCHES[k % len(INIT_HATCHES)])
            # close scores read as numbers, not bar heights; upright, they do not run into their neighbours'
            axes.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90 if len(shown) > 2 else 0, padding=2)
        if (chance := next((c.commonest_class for c in shown if c.commonest_class is not None), None)) is not None:
            axes.axhline(chance, color="0.35", ls=":", lw=1, label=COMMONEST_CLASS)
        axes.set_xticks([i + 0.4 - width / 2 for i in range(len(inits))], inits, fontsize=8)
        axes.set_ylim(*_score_limits(comparisons if one_metric else shown))
        axes.set_title(f"{task} / {model}", fontsize=10)
        axes.set_ylabel(f"{shown[0].metric} ({split})", fontsize=9)
    _panel_legends(figure, panels, fontsize=8)
    error_note = _error_note([e for c in comparisons for e in c.errors], {c.metric for c in comparisons},
                             seeds=_seed_counts(comparisons))
    figure.suptitle(f"Prompt tuning: initialisation ({error_note}{_lr_note(comparisons)})", fontsize=10)
    return _save(figure, folder, INIT_CHART)
