"""All plots of a results folder: data from the records, then drawn."""

from __future__ import annotations

import warnings
from pathlib import Path

from bench.plots import data, draw
from bench.results import ResultRow
from tasks.notices import SkippedInput


def render_all(rows: list[ResultRow], folder: Path, *, split: str = "test",
               axes: tuple[str, ...] = ("trainable_params", "train_flops")) -> list[Path]:
    """Every chart of `rows` (scored on `split`) in `folder`."""
    paths: list[Path] = []
    incomparable_said = set()
    for axis in axes:
        for chart in data.score_cost(rows, axis=axis):
            if chart.points:  # a chart of configs none of which has this cost is not drawn blank
                paths += draw.draw_score_cost(chart, folder, split=split)
            if chart.unmeasured:
                warnings.warn(f"{chart.task} / {chart.model}: {len(chart.unmeasured)} config(s) without {axis} in "
                              f"their records left out of that plot: {', '.join(chart.unmeasured)}", SkippedInput,
                              stacklevel=2)
            if chart.incomparable and (chart.task, chart.model) not in incomparable_said:
                incomparable_said.add((chart.task, chart.model))
                warnings.warn(f"{chart.task} / {chart.model}: {len(chart.incomparable)} config(s) trained on other "
                              "data or scored on other examples than the rest left out of its score-cost plots: "
                              f"{', '.join(chart.incomparable)}", SkippedInput, stacklevel=2)
    relative = data.relative_scores(rows)
    if relative.tasks:
        paths += draw.draw_relative(relative, folder, split=split)
        if relative.without_reference:
            warnings.warn(f"{', '.join(relative.without_reference)}: {draw.NO_REFERENCE}; left out of the "
                          f"{draw.RELATIVE_CHART} plot", SkippedInput, stacklevel=2)
    curves = data.length_curves(rows)
    if curves:
        paths += draw.draw_length_curves(curves, folder, split=split)
    inits = data.init_comparisons(rows)
    if inits:
        paths += draw.draw_inits(inits, folder, split=split)
    _remove_stale(folder, written=paths, axes=axes)
    return paths


def _remove_stale(folder: Path, *, written: list[Path], axes: tuple[str, ...]) -> None:
    """Delete the charts an earlier call drew that this one, drawing the same kinds, did not (a task
    whose runs are gone, a chart now without data), so the folder shows only the records' plots.
    Charts of other cost axes, and files this module does not name, are left alone."""
    stems = [f"{draw.score_cost_stem(axis)}*" for axis in axes] + list(draw.SUITE_CHARTS)
    for stem in stems:
        for extension in draw.EXTENSIONS:
            for path in folder.glob(stem + extension):
                if path not in written:
                    path.unlink()
