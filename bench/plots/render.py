"""All plots of a results folder: data from the records, then drawn."""

from __future__ import annotations

from pathlib import Path

from bench.plots import data, draw
from bench.results import ResultRow


def render_all(rows: list[ResultRow], folder: Path, *,
               axes: tuple[str, ...] = ("trainable_params", "train_flops")) -> list[Path]:
    paths: list[Path] = []
    for axis in axes:
        for chart in data.score_cost(rows, axis=axis):
            paths += draw.draw_score_cost(chart, folder)
    relative = data.relative_scores(rows)
    if relative.tasks:
        paths += draw.draw_relative(relative, folder)
    curves = data.length_curves(rows)
    if curves:
        paths += draw.draw_length_curves(curves, folder)
    inits = data.init_comparisons(rows)
    if inits:
        paths += draw.draw_inits(inits, folder)
    return paths
