"""The results table as a person reads it (the terminal's text) and as programs read it (CSV), and the
names of a results folder's files per split."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from pathlib import Path

from bench.record import write_text_atomic
from bench.results import ResultRow


def split_name(stem: str, split: str, extension: str = "") -> str:
    """A results folder's file (or folder) for a split: the test split's is `stem` itself
    (`results.csv`, `plots`, `report.md`); another split's has its own (`results_validation.csv`)
    rather than overwriting the test one, whose numbers it does not say are another split's."""
    return f"{stem}{extension}" if split == "test" else f"{stem}_{split}{extension}"


def csv_name(split: str) -> str:
    return split_name("results", split, ".csv")


def write_csv(rows: list[ResultRow], path: Path) -> Path:
    """Written whole or not at all: a killed command leaves the previous table, not half of a new one."""
    table = io.StringIO(newline="")
    unwritten = ("settings", "train", "card", "card_path", "model_kind", "per_example", "examples_digest")
    fields = [f for f in asdict(rows[0]) if f not in unwritten] if rows else []
    writer = csv.DictWriter(table, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: _csv_value(k, v) for k, v in asdict(r).items()} for r in rows)
    return write_text_atomic(table.getvalue(), path)


COUNTS = ("trainable_params", "train_flops", "peak_memory_bytes", "artifact_bytes")
# how to read the SE column, in the terminal and the report alike: 3 SE is 2 standard errors of the
# difference of two scores with that error each (√2 · 2 ≈ 2.8)
SE_RULE = ("two scores less than about 3 SE apart, that is within 2 standard errors of their difference, may differ "
           "by the examples drawn alone")


def _csv_value(field: str, value):
    """A count (parameters, bytes, FLOPs: means over seeds, of equal counts mostly) as the whole number
    it is; a figure the records lack (nan) as an empty cell, as other missing figures are."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if field in COUNTS and value.is_integer():
            return int(value)
    return value


def spread(row: ResultRow, *, gap: str = "") -> str:
    """"±std" to write after a row's score; nothing for a single seed (no spread, not a spread of 0)."""
    return "" if row.score_std is None else f"{gap}±{gap}{row.score_std:.3f}"


def figure(value: float | None, form: str, *, scale: float = 1, missing: str = "–") -> str:
    """`value / scale` formatted, or `missing` where there is none (None, or nan: a cost an older
    record lacks)."""
    return missing if value is None or not math.isfinite(value) else format(value / scale, form)


def _si(value: float) -> str:
    if not math.isfinite(value):  # a cost the records lack
        return "-"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def format_table(rows: list[ResultRow]) -> str:
    # names can differ only at their end (a long label, hub ids of one family): columns fit the longest, never cut
    tasks, models = (max([len(title)] + [len(getattr(r, key)) for r in rows]) for title, key in
                     (("task", "task"), ("model", "model")))
    width = max([len("config")] + [len(r.label) for r in rows])
    header = (f"{'task':<{tasks}} {'model':<{models}} {'config':<{width}} {'seeds':>5} {'score':>14} {'SE':>5} "
              f"{'vs FT':>6} {'vs 0-shot':>9} {'params':>7} {'train s':>8} {'FLOPs':>7} {'latency':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        relative = figure(r.relative_to_full_ft, ".2f", missing="-")
        improvement = f"{r.improvement_pct:>+8.1f}%" if r.improvement_pct is not None else f"{'-':>9}"
        seconds = figure(r.train_seconds, ".1f", missing="-")
        latency = figure(r.latency_overhead, ".2f", missing="-") + ("x" if math.isfinite(r.latency_overhead) else "")
        lines.append(
            f"{r.task:<{tasks}} {r.model:<{models}} {r.label:<{width}} {r.seeds:>5} "
            f"{r.score:>7.3f}{spread(r):<7} {figure(r.score_se, '.3f', missing='-'):>5} {relative:>6} {improvement} "
            f"{_si(r.trainable_params):>7} {seconds:>8} {_si(r.train_flops):>7} {latency:>7}")
    return "\n".join(lines)
