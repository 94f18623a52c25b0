"""The suite's answer to "should I prompt-tune?": for each group of comparable runs (a task and model
trained on the same data, scored on the same examples), the best prompt config against full
fine-tuning, in score and in each cost, or the command that trains the missing reference. The config
is chosen on validation scores, as a search chooses, and reported on the table's split."""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from bench.config_labels import card_file, init_text, shortened
from bench.models.registry import kind_beyond_name
from bench.results import (REFERENCE_METHODS, ResultRow, best_full_ft, best_on_validation, comparable_key, model_names,
                           task_names, tied_on_validation)
from bench.results_table import figure
from tasks.registry import SHIPPED_CARDS

NOISE_SE = 2  # a gap within this many standard errors of the difference is not told apart (about 95%)
COST_WORDS = {"train_seconds": "training time", "train_flops": "training FLOPs", "peak_memory_bytes": "peak memory"}
# what tells apart the verdicts of one task and model (a smoke run's group beside a real one), as headings say it
QUALIFIERS = (
    lambda row: f"{row.train_size or 'all'} training examples",
    lambda row: f"scored on {row.examples or row.eval_size or 'all'} examples",
    lambda row: row.precision or "device unrecorded",
    lambda row: row.card,
)


class Verdict(NamedTuple):
    task: str  # as the tables name it (with its version, where several are shown)
    model: str
    prompt: ResultRow  # the prompt method's config of best validation score
    full_ft: ResultRow | None  # the reference it is measured against (best validation score too)
    lora: ResultRow | None
    tied: int = 0  # other prompt configs of the same validation score (`prompt` is the cheapest of them)

    @property
    def paired(self) -> bool:
        """Whether both runs kept each example's score, on the same examples (records from before kept
        none): the gap's error then comes from the per-example differences."""
        return (self.full_ft is not None and None not in (self.prompt.per_example, self.full_ft.per_example)
                and self.prompt.examples_digest == self.full_ft.examples_digest)

    @property
    def gap_in_se(self) -> float | None:
        """The score gap over its standard error. Paired where both runs kept each example's score: the
        error of the mean per-example difference (examples both get right or both get wrong say nothing
        of the gap), with Agresti and Min's (2005) half an example added to each of right/wrong x
        right/wrong, which keeps a handful of differing examples from passing for a sure gap (4 of 200
        one way: 1.8, not 2.0); else from each score's own error, which overstates the gap's. Either
        way with the spread of each mean over seeds where there are several; a single seed's training
        spread is not in it (a gap beyond noise may be one seed's luck). None where no error is known."""
        if self.full_ft is None:
            return None
        seeds = sum(row.score_std ** 2 / row.seeds for row in (self.prompt, self.full_ft) if row.score_std is not None)
        if self.paired:
            error = math.sqrt(_paired_variance(self.prompt.per_example, self.full_ft.per_example) + seeds)
        else:
            errors = [row.score_error for row in (self.prompt, self.full_ft)]
            if None in errors:
                return None
            error = math.hypot(*errors)
        return (self.prompt.score - self.full_ft.score) / error if error > 0 else None

    def cost_ratio(self, cost: str) -> float | None:
        """The prompt config's cost over full fine-tuning's, where both records measured it."""
        mine, reference = getattr(self.prompt, cost), getattr(self.full_ft, cost)
        if not (math.isfinite(mine) and math.isfinite(reference)) or reference <= 0:
            return None
        return mine / reference


def _paired_variance(mine: tuple[float, ...], theirs: tuple[float, ...]) -> float:
    """The variance of the mean per-example difference, each example's scores in [0, 1], after Agresti
    and Min: a pseudo-example of half weight in each cell of the 2x2 table (differences +1, -1, 0 and
    0). For 0/1 scores this is their adjusted Wald interval for matched proportions; scores in between
    (F1, ROUGE, a mean over seeds) are weighted alike."""
    differences = [a - b for a, b in zip(mine, theirs)] + [1.0, -1.0, 0.0, 0.0]
    weights = [1.0] * len(mine) + [0.5] * 4
    total = sum(weights)  # n + 2
    mean = sum(w * d for w, d in zip(weights, differences)) / total
    return sum(w * (d - mean) ** 2 for w, d in zip(weights, differences)) / total ** 2


def verdicts(rows: list[ResultRow]) -> list[Verdict]:
    """One verdict for each group of comparable runs (see comparable_key) holding a prompt method;
    one without full fine-tuning has no reference (`full_ft` None)."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    names: dict[tuple, tuple[str, str]] = {}  # a group's task and model, as the tables name them
    for row, task, model in zip(rows, task_names(rows), model_names(rows)):
        groups[comparable_key(row)].append(row)
        names[comparable_key(row)] = task, model
    found = []
    for key, group in groups.items():
        prompts = [row for row in group if row.method not in REFERENCE_METHODS]
        prompt = best_on_validation(prompts)
        if prompt is not None:
            lora = best_on_validation(row for row in group if row.method == "lora")
            found.append(Verdict(*names[key], prompt, best_full_ft(group), lora, tied_on_validation(prompt, prompts)))
    return sorted(_told_apart(found), key=lambda v: (v.task, v.model))


def _told_apart(found: list[Verdict]) -> list[Verdict]:
    """Verdicts of one task and model named with what their groups differ in."""
    alike: dict[tuple[str, str], list[Verdict]] = defaultdict(list)
    for verdict in found:
        alike[verdict.task, verdict.model].append(verdict)
    named = []
    for group in alike.values():
        varying = [say for say in QUALIFIERS if len({say(verdict.prompt) for verdict in group}) > 1]
        named += [verdict._replace(task=f"{verdict.task} ({', '.join(say(verdict.prompt) for say in varying)})")
                  if varying else verdict for verdict in group]
    return named


def _times(relative: float | None) -> str:
    return f" ({relative:.3f}×)" if relative is not None else ""  # none where full fine-tuning scores 0 or below


def _gap(verdict: Verdict, *, basis: bool = True) -> str:
    """The gap in standard errors and whether it is told apart; `basis`: with what the error counts."""
    gap = verdict.gap_in_se
    if gap is None:
        return ""
    said = ("not told apart on these examples" if abs(gap) < NOISE_SE
            else f"{'below' if gap < 0 else 'above'} it beyond the examples' noise")
    counted = f" ({error_basis(verdict)})" if basis else ""
    return f"; a gap of {abs(gap):.1f} standard errors of the difference, {said}{counted}"


def error_basis(verdict: Verdict) -> str | None:
    """What the gap's standard error counts, in words (None where there is no gap)."""
    if verdict.gap_in_se is None:
        return None
    named = (("the prompt config", verdict.prompt), ("full fine-tuning", verdict.full_ft))
    single = [name for name, row in named if row.seeds == 1]
    several = [name for name, row in named if row.seeds > 1]
    counted = ("; one seed each, so not training's own spread" if not several
               else f" and {several[0]}'s spread over seeds; one seed of {single[0]}" if single
               else " and the spread over seeds")
    kept = None not in (verdict.prompt.per_example, verdict.full_ft.per_example)
    examples = (f"the {len(verdict.prompt.per_example)} examples' paired differences" if verdict.paired
                else "each score's examples apart, " + ("the two runs having scored other examples" if kept
                                                        else "its records keeping no example's score"))
    return f"the error counts {examples}{counted}"


def shared_error_basis(answers: list[Verdict]) -> str | None:
    """The one error basis of several answers that all measure a gap, said once after them rather than
    in each (None: one answer, or answers whose errors count different things)."""
    bases = {error_basis(verdict) for verdict in answers}
    return bases.pop() if len(answers) > 1 and len(bases) == 1 and None not in bases else None


def verdict_text(verdict: Verdict, *, split: str, quote: str = "`", say_error_basis: bool = True) -> str:
    """One paragraph: the config, its score against full fine-tuning's, and what it costs beside it.
    Without a reference it ends by saying so; `reference_command` gives the run that makes one.
    `say_error_basis` False: the gap's error basis is said once for all answers instead (shared_error_basis)."""
    prompt, reference = verdict.prompt, verdict.full_ft
    chosen_on = " (the split it was chosen on: an optimistic score)" if split == "validation" else ""
    text = init_text(prompt.settings)  # a label leaves it out (too long) unless it tells configs apart
    said = text and "init_text=" not in prompt.label
    started = f" (its prompt started from the text {shortened(text, 60)})" if said else ""
    lines = [f"{verdict.task}, {verdict.model}: the best prompt config on validation, {quote}{prompt.label}{quote}"
             f"{started}{_ties(verdict)}, scores {prompt.score:.3f} on {split}{chosen_on}"]
    if reference is None:
        lines[0] += ", with no full fine-tuning run on the same data and examples to measure it against."
    else:
        lines[0] += (f" against full fine-tuning's {reference.score:.3f}{_times(prompt.relative_to_full_ft)}"
                     f"{_gap(verdict, basis=say_error_basis)}.")
        budgets = (prompt.steps, prompt.batch_size), (reference.steps, reference.batch_size)
        if budgets[0] != budgets[1] and None not in (*budgets[0], *budgets[1]):  # records before budgets were kept
            lines.append(f"The budgets differ: it trained {prompt.steps} steps of {prompt.batch_size} examples, "
                         f"full fine-tuning {reference.steps} of {reference.batch_size}.")
    for name, row in (("Full fine-tuning", reference), ("The prompt config", prompt)):
        if row is not None and (said := learned_nothing(row)):
            lines.append(f"{name} {said}" + (": it may not have learned at this budget, and the comparison says "
                                             "little." if row is reference else "."))
    if reference is not None:
        lines += _costs(verdict)
    if verdict.lora is not None:
        lines.append(f"LoRA's best scores {verdict.lora.score:.3f}{_times(verdict.lora.relative_to_full_ft)}.")
    return " ".join(lines)


def _ties(verdict: Verdict) -> str:
    """Where other prompt configs score the same on validation: the pick is the cheapest, not the first."""
    if not verdict.tied:
        return ""
    others = f"{verdict.tied} other config{'s' if verdict.tied > 1 else ''}"
    return (f" (tied with {others} at {verdict.prompt.validation:.3f} on validation: the cheapest, by trainable "
            "parameters, then training FLOPs)")


def learned_nothing(row: ResultRow) -> str | None:
    """What to say of a classifier at or below, or within noise above, the score of answering every
    example scored with their commonest class (None: it is clear of it, or the records do not say)."""
    if row.commonest_class is None:
        return None
    error = row.score_error
    if row.score <= row.commonest_class:  # at or below it, whether or not the gap is noise
        verb = "scores no better than"
    elif error is not None and row.score - row.commonest_class < NOISE_SE * error:
        verb = "is not told apart from"
    else:
        return None
    return f"{verb} answering every example with the commonest class of those scored ({row.commonest_class:.3f})"


def _encoder_not_saved(row: ResultRow) -> bool:
    """P-tuning's prompt encoder and prefix tuning's projection train the prompt and are not saved
    (PEFT saves the prompt they compute): its artifact is far smaller than its trainable parameters."""
    return row.method == "p_tuning" or (row.method == "prefix_tuning" and bool(row.settings.get("prefix_projection")))


def _costs(verdict: Verdict) -> list[str]:
    prompt, reference = verdict.prompt, verdict.full_ft
    costs = []
    if math.isfinite(prompt.trainable_params) and math.isfinite(prompt.trainable_pct):
        encoder = ", its prompt encoder among them, not saved" if _encoder_not_saved(prompt) else ""
        costs.append(f"{figure(prompt.trainable_params, ',.0f')} trainable parameters ({prompt.trainable_pct:.3f}% of "
                     f"the model{encoder})")
    against = [f"{ratio:.2f}× the {name}{_spread(verdict, cost)}" for cost, name in COST_WORDS.items()
               if (ratio := verdict.cost_ratio(cost)) is not None]
    if math.isfinite(prompt.artifact_bytes) and math.isfinite(reference.artifact_bytes):
        against.append(f"a {figure(prompt.artifact_bytes, ',.0f', scale=2**10)} KiB artifact against "
                       f"{figure(reference.artifact_bytes, ',.0f', scale=2**10)} KiB")
    costs += ["against full fine-tuning, " + ", ".join(against)] if against else []
    if math.isfinite(prompt.latency_overhead):
        costs.append(f"{prompt.latency_overhead:.2f}× the base model's inference latency")
    return ["It costs " + "; ".join(costs) + "."] if costs else []


WIDE_SPREAD = 0.25  # a measured cost whose seeds spread more than this share of their mean: its ratio says so


def _spread(verdict: Verdict, cost: str) -> str:
    """Where a measured cost (time, memory) varied widely over either side's seeds (a machine busy
    with something else, say), how widely: the ratio of the means hides it."""
    spreads = [std / mean for row in (verdict.prompt, verdict.full_ft)
               if (std := getattr(row, f"{cost}_std", None)) is not None and (mean := getattr(row, cost)) > 0]
    widest = max(spreads, default=0.0)
    return f" (the seeds' figures spread ±{widest:.0%} of their mean)" if widest > WIDE_SPREAD else ""


# said for a missing reference where the records were read from a study (`--storage`), in place of
# the `spbench run` that makes one: its record would go to a folder, which a view of the study does not read
STUDY_VIEW_NOTE = ("A view of a study reads that study alone: list `{method: full_ft}` in the shared suite and run it "
                   "again with `--storage` to share a reference through it.")


def reference_command(verdict: Verdict, results: Path | None) -> str | None:
    """The `spbench run` that trains full fine-tuning on the prompt config's data and budget, scored as it
    was, into `results` (None where the verdict has its reference)."""
    row = verdict.prompt
    if verdict.full_ft is not None:
        return None
    # a shipped card is known by its folder and file on any machine (see card_file), a user's by its path
    shipped = not row.card_path or row.card == card_file(SHIPPED_CARDS / Path(row.card_path).name)
    return full_ft_command(row.task if shipped else row.card_path, row.model,
                           model_kind=kind_beyond_name(row.model, row.model_kind or None),
                           steps=row.steps, batch_size=row.batch_size, eval_size=row.eval_size,
                           train_size=row.train_size, results=results)


def full_ft_command(task: str, model: str, *, model_kind: str | None = None, **flags) -> str:
    """`spbench run` of full fine-tuning, quoted for a shell: `steps=50` as `--steps 50`, a list as its
    flag once an item, None left out."""
    flags = {"task": task, "model": model, "model_kind": model_kind, "method": "full_ft", **flags}
    return "spbench run" + "".join(f" --{name.replace('_', '-')} {shlex.quote(str(value))}"
                                   for name, values in flags.items() if values is not None
                                   for value in (values if isinstance(values, list) else [values]))
