"""The suite's answer to "should I prompt-tune?": for each task and model, the best prompt config
against full fine-tuning, in score and in each cost. The config is chosen on validation scores, as
a search chooses, and reported on the table's split."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

from bench.results import REFERENCE_METHODS, ResultRow, best_full_ft, comparable_key, model_names, task_names
from bench.results_table import figure

NOISE_SE = 2  # a gap under this many standard errors of the difference may be the examples drawn alone
COST_RATIOS = {"train_seconds": "training time", "train_flops": "training FLOPs", "peak_memory_bytes": "peak memory"}


class Verdict(NamedTuple):
    task: str  # as the tables name it (with its version, where several are shown)
    model: str
    prompt: ResultRow  # the prompt method's config of best validation score
    full_ft: ResultRow  # the reference it is measured against (best validation score too)
    lora: ResultRow | None

    @property
    def gap_in_se(self) -> float | None:
        """The score gap over its standard error from the examples scored, where both scores have one.
        Both runs scored the same examples, so this unpaired error overstates the gap's: a gap called
        noise here may not be, one called real is."""
        errors = (self.prompt.score_se, self.full_ft.score_se)
        if any(e is None or not math.isfinite(e) for e in errors) or not any(errors):
            return None
        return (self.prompt.score - self.full_ft.score) / math.hypot(*errors)

    def cost_ratio(self, cost: str) -> float | None:
        """The prompt config's cost over full fine-tuning's, where both records measured it."""
        mine, reference = getattr(self.prompt, cost), getattr(self.full_ft, cost)
        if not (math.isfinite(mine) and math.isfinite(reference)) or reference <= 0:
            return None
        return mine / reference


def verdicts(rows: list[ResultRow]) -> list[Verdict]:
    """One verdict for each group of comparable runs (see comparable_key) holding full fine-tuning
    and a prompt method."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    names: dict[tuple, tuple[str, str]] = {}  # a group's task and model, as the tables name them
    for row, task, model in zip(rows, task_names(rows), model_names(rows)):
        groups[comparable_key(row)].append(row)
        names[comparable_key(row)] = task, model
    found = []
    for key, group in groups.items():
        reference = best_full_ft(group)
        prompt = _best_on_validation(row for row in group if row.method not in REFERENCE_METHODS)
        if reference is None or prompt is None:
            continue
        task, model = names[key]
        if prompt.train_size:
            task += f" ({prompt.train_size} training examples)"
        lora = _best_on_validation(row for row in group if row.method == "lora")
        found.append(Verdict(task, model, prompt, reference, lora))
    return sorted(found, key=lambda v: (v.task, v.model))


def _best_on_validation(rows) -> ResultRow | None:
    return max(rows, key=lambda row: row.validation, default=None)


def _gap(verdict: Verdict) -> str:
    gap = verdict.gap_in_se
    if gap is None:
        return ""
    if abs(gap) < NOISE_SE:
        return f"; {abs(gap):.1f} SE apart, a gap the examples drawn could make alone"
    return f"; {abs(gap):.1f} SE {'below' if gap < 0 else 'above'} it"


def verdict_text(verdict: Verdict, *, split: str, code: str = "`") -> str:
    """One paragraph: the config, its score against full fine-tuning's, and what it costs beside it."""
    prompt, reference = verdict.prompt, verdict.full_ft
    relative = prompt.relative_to_full_ft  # none where full fine-tuning scores 0 or below (a correlation)
    ratio = f" ({relative:.3f}×)" if relative is not None else ""
    lines = [f"{verdict.task}, {verdict.model}: the best prompt config on validation, {code}{prompt.label}{code}, "
             f"scores {prompt.score:.3f} on {split} against full fine-tuning's {reference.score:.3f}{ratio}"
             f"{_gap(verdict)}."]
    costs = [f"{figure(prompt.trainable_params, ',.0f')} trainable parameters ({prompt.trainable_pct:.3f}% of "
             "the model)"] if math.isfinite(prompt.trainable_params) and math.isfinite(prompt.trainable_pct) else []
    against = [f"{ratio:.2f}× the {name}" for cost, name in COST_RATIOS.items()
               if (ratio := verdict.cost_ratio(cost)) is not None]
    if math.isfinite(prompt.artifact_bytes) and math.isfinite(reference.artifact_bytes):
        against.append(f"a {figure(prompt.artifact_bytes, ',.0f', scale=2**10)} KiB artifact against "
                       f"{figure(reference.artifact_bytes, ',.0f', scale=2**10)} KiB")
    costs += ["against full fine-tuning, " + ", ".join(against)] if against else []
    if math.isfinite(prompt.latency_overhead):
        costs.append(f"{prompt.latency_overhead:.2f}× the base model's inference latency")
    if costs:
        lines.append("It costs " + "; ".join(costs) + ".")
    if verdict.lora is not None:
        lines.append(f"LoRA's best scores {verdict.lora.score:.3f} "
                     f"({figure(verdict.lora.relative_to_full_ft, '.3f')}×).")
    return " ".join(lines)
