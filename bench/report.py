"""A Markdown report of a results folder: tables, plots and the environment they came from."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from bench.plots.render import render_all
from bench.record import RunRecord, write_text_atomic
from bench.record_folder import load_records
from bench.results import ResultRow, aggregate, reruns_left_out, task_names, unscored
from bench.results_table import SE_RULE, csv_name, figure, split_name, spread, write_csv
from bench.verdict import STUDY_VIEW_NOTE, reference_command, shared_error_basis, verdict_text, verdicts
from tasks.notices import counted, skipped_inputs_kept


def _table(rows: list[ResultRow]) -> list[str]:
    lines = ["| model | config | seeds | score | SE | vs full FT | vs zero-shot | trainable params | train s | "
             "FLOPs | peak mem (MiB) | artifact (KiB) | latency × |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r.model, -r.score)):
        improvement = figure(r.improvement_pct, "+.1f") + ("%" if r.improvement_pct is not None else "")
        params = figure(r.trainable_params, ",.0f") + (f" ({r.trainable_pct:.3f}%)" if math.isfinite(
            r.trainable_pct) else "")
        label = r.label.replace("|", "\\|")  # a `|` in an init text would end the cell
        lines.append(
            f"| {r.model} | `{label}` | {r.seeds} | {r.score:.3f}{spread(r, gap=' ')} | {figure(r.score_se, '.3f')} | "
            f"{figure(r.relative_to_full_ft, '.3f')} | {improvement} | {params} | "
            f"{_cost_with_spread(r.train_seconds, r.train_seconds_std, '.1f')} | {figure(r.train_flops, '.2e')} | "
            f"{_cost_with_spread(r.peak_memory_bytes, r.peak_memory_bytes_std, ',.0f', scale=2**20)} | "
            f"{figure(r.artifact_bytes, ',.0f', scale=2**10)} | "
            f"{_cost_with_spread(r.latency_overhead, r.latency_overhead_std, '.2f')} |")
    return lines


def _cost_with_spread(value: float, std: float | None, form: str, *, scale: float = 1) -> str:
    """A measured cost's mean, with its std over seeds where there are several."""
    spread = "" if std is None or not math.isfinite(std) else f" ± {figure(std, form, scale=scale)}"
    return figure(value, form, scale=scale) + spread


def _budget(rows: list[ResultRow], split: str) -> str:
    """What the task's configs were trained and scored on: one score step on n examples is 1/n."""
    def listed(values, none: str = "?") -> str:
        texts = {none if v is None else str(v) for v in values}
        return " or ".join(sorted(texts, key=lambda t: (not t.isdigit(), int(t) if t.isdigit() else 0, t)))
    return (f"Scored on {listed(r.examples for r in rows)} {split} examples; trained for "
            f"{listed(r.steps for r in rows)} steps of {listed(r.batch_size for r in rows)} examples"
            + (f", drawn from {listed((r.train_size for r in rows), 'all')} training examples"
               if any(r.train_size for r in rows) else "") + ".")


def _environment(record: RunRecord) -> list[str]:
    env = record.get("environment") or {}
    hardware, git = env.get("hardware") or {}, env.get("git") or {}
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    return [f"- hardware: {hardware.get('device')} ({hardware.get('gpu') or hardware.get('cpu')}, "
            f"{hardware.get('cpu_count')} CPUs, {hardware.get('torch_threads')} torch threads), "
            f"{hardware.get('platform')}",
            f"- packages: {packages}", f"- code the runs were made with: git {commit}"]


def _environments(records: list[RunRecord]) -> list[str]:
    """The section on where the records ran; where several environments did (a suite shared among
    machines, records of two commits), which records each ran."""
    ran: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in records:
        ran.setdefault(tuple(_environment(record)), []).append(record)
    if not ran:
        return []
    lines = ["## Environment", ""] + ([f"{len(ran)} environments ran these records:", ""] if len(ran) > 1 else [])
    for environment, its_records in ran.items():
        lines += [*environment]
        if len(ran) > 1:
            tasks = Counter(r["task"]["name"] for r in its_records)
            lines.append(f"- ran {counted(len(its_records), 'record')}: "
                         + ", ".join(f"{task} ({count})" for task, count in sorted(tasks.items())))
        lines.append("")
    return lines


def _full_ft_share_note(rows: list[ResultRow]) -> str:
    """Why full fine-tuning's trainable share reads below 100%, where it does: a paper reader's question."""
    if not any(row.method == "full_ft" and row.trainable_pct < 99.9995 for row in rows):
        return ""
    return ("the % in *trainable params* is the share of the model's weights training updates: full "
            "fine-tuning's is below 100% where the model holds weights whose output goes unused (a BERT-style "
            "pooler, where the head reads mean-pooled token states instead), which no method trains; ")


def write_report(folder: Path, *, records: list[RunRecord] | None = None, failures: list[dict] | None = None,
                 split: str = "test", rows: list[ResultRow] | None = None, left_out: list[str] = (),
                 from_study: bool = False) -> Path:
    """`rows`: the records' table on `split`, where the caller has made it already; `left_out`: a line
    for each record the reading left out (unreadable, partial) and for runs that did not finish;
    `from_study`: the records were read from a study, not from `folder`."""
    if records is None:
        records, failures = load_records(folder)
    failures = failures or []
    folder.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records, split=split) if rows is None else rows
    write_csv(rows, folder / csv_name(split))
    plots_folder = split_name("plots", split)
    with skipped_inputs_kept() as left_out_of_plots:  # said as before, and written down too
        plots = render_all(rows, folder / plots_folder, split=split)
    unscored_runs = unscored(records, split)
    not_scored = (f"; {unscored_runs} not scored on {split} (search trials, say), not in the tables"
                  if unscored_runs else "")
    lines = [f"# softprompt-bench report: {Path(folder).resolve().name}", "",
             f"{counted(len(records), 'run')} finished, {len(failures)} failed{reruns_left_out(records, rows, split)}"
             f"{not_scored}{'; some records left out (listed below)' if left_out else ''}; "
             f"scores on the {split} split "
             f"(mean ± sample standard deviation over seeds; a single seed shows no ±); "
             f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    if answers := verdicts(rows):
        lines += ["## In short", ""]
        shared = shared_error_basis(answers)
        for verdict in answers:
            command = reference_command(verdict, folder)
            made_by = "" if not command else f" {STUDY_VIEW_NOTE}" if from_study else f" Make one with `{command}`."
            lines.append(f"- {verdict_text(verdict, split=split, say_error_basis=not shared)}{made_by}")
        lines += ["", f"In each answer, {shared}.", ""] if shared else [""]
    by_task: dict[str, list[ResultRow]] = defaultdict(list)
    for row, task in zip(rows, task_names(rows)):
        by_task[task].append(row)
    for task, task_rows in sorted(by_task.items()):
        lines += [f"## {task} ({task_rows[0].metric})", "", _budget(task_rows, split), "", *_table(task_rows), ""]
    pngs = [p for p in plots if p.suffix == ".png"]
    if pngs:
        lines += ["## Plots", ""] + [f"![{p.stem}]({plots_folder}/{p.name})" for p in pngs] + [""]
    if left_out_of_plots:
        lines += ["Left out of the plots:", ""] + [f"- {note}" for note in left_out_of_plots] + [""]
    if failures:
        lines += ["## Failed runs", ""] + [f"- {f['run']}: {f['reason']}" for f in failures] + [""]
    if left_out:
        lines += ["## Records left out", ""] + [f"- {note}" for note in left_out] + [""]
    lines += _environments(records)
    lines += ["Columns: *SE* is the score's standard error from the examples scored alone (binomial, with "
              "Agresti–Coull's two successes and two failures added, so a perfect score on a few examples claims "
              "some; for F1 and ROUGE, about an upper bound; – for a metric that is no mean over examples): as a "
              f"rough guide, {SE_RULE}, and "
              "seeds add a spread of their own (±); "
              "time, memory and latency, measured anew by each seed, show their ± over seeds too; "
              "*vs full FT* is the score over that of the full fine-tuning run of the same task, model, "
              "training data and evaluation examples (of best validation score, where there are several), "
              "whatever steps each was trained for (a method may have a budget of its own: the line above each "
              "table names them); "
              f"{_full_ft_share_note(rows)}"
              "*vs zero-shot* the mean relative change (in %, not points) from the base model's zero-shot score "
              "(– for an encoder, whose base model has no head to score with, and where a seed's is 0 or "
              "below); FLOPs are the analytic training estimate (virtual tokens lengthen every input while the frozen "
              "weights need no gradients: on short inputs a prompt method can cost more FLOPs than full "
              "fine-tuning); "
              "*peak mem* is training's: on a GPU the allocator's peak, on a CPU the process's peak resident "
              "memory, which counts the loaded models and libraries too; *artifact* the saved adapter (full "
              "fine-tuning saves nothing: the size its weights would take); "
              "*latency ×* the inference latency over the base model's (median of "
              "paired rounds; 1 for full fine-tuning by definition; a reading below 1 is noise); "
              "– a figure the records lack.", ""]
    return write_text_atomic("\n".join(lines), folder / split_name("report", split, ".md"))
