"""A loaded task: a checked card plus its rows, rendered into model-ready examples."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bench.yaml_values import did_you_mean
from tasks.card import SPLITS, TaskCard, TaskCardError
from tasks.data import Row, load_rows, row_location
from tasks.metrics import (EVALUATE_PREFIX, PER_EXAMPLE, MetricResultError, compute_metrics,
                           load_library_metrics)
from tasks.notices import UserNotice, first_line
from tasks.template import NullFieldError, fill_template, template_fields


@dataclass(frozen=True)
class Example:
    """One rendered example. `target` is what the model is trained to produce."""

    prompt: str
    target: str
    references: tuple[str, ...]  # all gold answers (generation tasks); (target,) otherwise
    label: int | None = None  # class index (classification tasks)


class Scored(NamedTuple):
    scores: dict[str, float]  # metric -> value
    # each example's score of the primary metric, whose mean is the score, where that metric is a mean
    # over examples (accuracy, F1, ROUGE...); None for a metric of the whole set (macro-F1, a
    # correlation, a library's)
    each: list[float] | None


def _type_hint(label: Any, classes: dict) -> str:
    """Where a label is a class written with another type ("0" in the data, 0 in the card): which to quote."""
    if any(str(label) == str(cls) for cls in classes):
        if isinstance(label, str):
            return "; the data's labels are text: quote the card's label_words keys ('0': [...])"
        return "; the data's labels are numbers: leave the card's label_words keys unquoted"
    return ""


def _describe_shape(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else "a list of mappings or lists"


def _field(row: Row, dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value[part]
    return value


@dataclass
class Task:
    card: TaskCard
    _rows: dict[str, list[Row]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.card.name

    def rows(self, split: str) -> list[Row]:
        if split not in self._rows:
            self._rows[split] = load_rows(self.card, split)
        return self._rows[split]

    def render(self, row: Row, *, split: str, index: int) -> Example:
        card = self.card

        def where() -> str:  # found again from the data only for a message
            return f"split {split!r} row {index} ({row_location(card, split, index)})"

        try:
            prompt = fill_template(card.template, row)
        except NullFieldError as err:
            raise TaskCardError(card.path, "template", f"field {err.args[0]!r} is null in {where()}") from None
        except KeyError as err:
            raise TaskCardError(card.path, "template", f"field {err} is absent from the data in {where()}") from None
        except (IndexError, TypeError, ValueError) as err:  # {f[9]}, {f:d} on this row
            raise TaskCardError(card.path, "template", f"cannot fill it from {where()} ({err})") from None
        if card.is_classification:
            if card.label_field not in row:
                raise TaskCardError(card.path, "label_field", f"field {card.label_field!r} is absent from {where()}")
            value = row[card.label_field]
            if isinstance(value, (list, dict)) or value not in card.label_words:
                raise TaskCardError(card.path, "label_words", f"label {value!r} of {where()} is not one of "
                                    f"{list(card.label_words)}{_type_hint(value, card.label_words)}")
            label = card.classes.index(value)
            word = card.label_words[value][0]
            return Example(prompt=prompt, target=word, references=(word,), label=label)
        try:
            gold = _field(row, card.target_field)
        except (KeyError, TypeError):
            raise TaskCardError(card.path, "target_field", f"{card.target_field!r} is absent from {where()}") from None
        answers = gold if isinstance(gold, list) else [gold]
        if any(isinstance(answer, (dict, list)) for answer in answers):  # str() would make it a Python repr
            inside = f"; name a field inside it, such as {card.target_field}.{next(iter(gold))}" \
                if isinstance(gold, dict) and gold else ""
            raise TaskCardError(card.path, "target_field", f"{card.target_field!r} holds {_describe_shape(gold)}, "
                                f"not answer text, in {where()}{inside}")
        # a null or blank answer is no answer (a blank one would match an empty prediction exactly)
        golds = tuple(str(g) for g in answers if g is not None and str(g).strip())
        if not golds:
            raise TaskCardError(card.path, "target_field", f"no gold answer in {where()}")
        return Example(prompt=prompt, target=golds[0], references=golds)

    def examples(self, split: str, *, limit: int | None = None, seed: int = 0) -> list[Example]:
        """Rendered examples of a split; `limit` keeps a seeded random subset (in file order)."""
        rows = self.rows(split)
        indices = list(range(len(rows)))
        if limit is not None and limit < len(rows):
            indices = sorted(random.Random(seed).sample(indices, limit))
        return self._rendered(split, rows, indices)

    def _rendered(self, split: str, rows: list[Row], indices) -> list[Example]:
        try:
            return [self.render(rows[i], split=split, index=i) for i in indices]
        except TaskCardError:
            # a field no row holds is the card's mistake (a misspelt name), not that of the row met first
            if absent := self._fields_absent_from_every_row(split, rows):
                raise absent[0] from None
            raise

    def check_metrics(self) -> None:
        """Load the card's `evaluate:` metrics and score validation examples' own answers with them: a
        metric that cannot load, or whose result holds no score to read, is refused before any
        training, not at the first scoring. A metric that fails otherwise on two examples (one class
        only, say) is tried on twenty; one failing there too is named in a notice, as it may fail the
        scoring."""
        if not any(name.startswith(EVALUATE_PREFIX) for name in self.card.metrics):
            return
        try:
            load_library_metrics(self.card.metrics, folder=self.card.metrics_folder)
        except ValueError as err:
            raise TaskCardError(self.card.path, "metrics", str(err)) from None
        rows = self.rows("validation")
        for size in (2, 20):
            examples = self._rendered("validation", rows, range(min(size, len(rows))))
            answers = [ex.label if self.card.is_classification else ex.target for ex in examples]
            try:
                self.score(answers, examples)
                return
            except MetricResultError as err:
                raise TaskCardError(self.card.path, "metrics", str(err)) from None
            except Exception as err:  # the metric's own complaint, perhaps about too few examples
                failure = f"{type(err).__name__}: {first_line(err)}"
        warnings.warn(f"{self.card.path} [metrics]: scoring {len(examples)} validation examples' own answers failed "
                      f"({failure}): the run's scoring may fail the same way", UserNotice, stacklevel=2)

    def row_problems(self, split: str, rows: list[Row] | None = None) -> tuple[int, list[TaskCardError]]:
        """The split's number of rows (or of `rows`, read otherwise) and the problem of each row that
        cannot be rendered: every one, where a run stops at the first."""
        rows = self.rows(split) if rows is None else rows
        if absent := self._fields_absent_from_every_row(split, rows):
            return len(rows), absent  # one line a field, not one a row
        problems = []
        for index, row in enumerate(rows):
            try:
                self.render(row, split=split, index=index)
            except TaskCardError as err:
                problems.append(err)
        return len(rows), problems

    def _fields_absent_from_every_row(self, split: str, rows: list[Row]) -> list[TaskCardError]:
        """A field the card reads that no row of the split holds, as one problem naming the fields
        the rows do hold: a misspelt name, or data of another shape."""
        card = self.card
        read = {"template": list(template_fields(card.template))}
        for key in ("label_field", "target_field"):
            if getattr(card, key):
                read[key] = [getattr(card, key).split(".")[0]]
        held = sorted({field for row in rows for field in row})
        return [TaskCardError(card.path, key, f"field {field!r} is in none of the {len(rows)} rows of split {split!r}"
                              f"{did_you_mean(field, held)} (their fields: {', '.join(held)})")
                for key, fields in read.items() for field in fields if rows and not any(field in row for row in rows)]

    def checked_splits(self) -> dict[str, int]:
        """Split -> rows, every row of every split rendered: fields, labels and targets are checked,
        and a bad row or data file is named now rather than by the run that reads it."""
        return {split: len(self.examples(split)) for split in SPLITS}

    def training_size(self, size: int | None) -> int | None:
        """The training-data budget a run asking for `size` trains on: the card's own where none is
        asked (a few-shot variant), None for every row."""
        return size if size is not None else self.card.train_size

    def training_examples(self, size: int | None, *, seed: int) -> list[Example]:
        """`size` training examples (None: the card's train_size, else all), deterministic per seed.

        Classification draws the same number from every class where the data allows, so a
        few-shot budget is not left to chance class balance.
        """
        size = self.training_size(size)
        rows = self.rows("train")
        if size is None or size >= len(rows):
            return self._rendered("train", rows, range(len(rows)))
        if not self.card.is_classification:
            return self.examples("train", limit=size, seed=seed)
        examples = self._rendered("train", rows, range(len(rows)))
        rng = random.Random(seed)
        by_class = [[ex for ex in examples if ex.label == c] for c in range(len(self.card.classes))]
        for pool in by_class:
            rng.shuffle(pool)
        # which classes get one more when the budget does not divide evenly: seeded too, by its own
        # generator so that the examples of an even budget stay those drawn before it was asked
        extra = random.Random(f"train-size-remainder-{seed}")
        chosen: list[Example] = []
        while len(chosen) < size:  # round-robin over classes; exhausted classes drop out
            live = [pool for pool in by_class if pool]
            if len(live) > size - len(chosen):
                kept = set(extra.sample(range(len(live)), size - len(chosen)))
                live = [pool for i, pool in enumerate(live) if i in kept]
            chosen += [pool.pop() for pool in live]
        rng.shuffle(chosen)
        return chosen

    def _references(self, examples: list[Example]) -> list:
        return [ex.label if self.card.is_classification else ex.references for ex in examples]

    def scored(self, predictions: list, examples: list[Example]) -> Scored:
        """The card's metrics of `predictions`, with each example's score of the primary metric where
        it has them: two runs scored on the same examples compare example by example."""
        references, primary = self._references(examples), self.card.primary_metric
        per_example = PER_EXAMPLE.get(primary)
        each = per_example(predictions, references) if per_example and examples else None
        others = [metric for metric in self.card.metrics if each is None or metric != primary]
        scores = compute_metrics(others, predictions, references, folder=self.card.metrics_folder)
        if each is not None:
            scores[primary] = sum(each) / len(each)
        return Scored({metric: scores[metric] for metric in self.card.metrics}, each)  # in the card's order

    def score(self, predictions: list, examples: list[Example]) -> dict[str, float]:
        """The card's metrics of `predictions` (see `scored`)."""
        return self.scored(predictions, examples).scores


def load_task(name_or_path: str, *, tasks_dirs: tuple[str, ...] = ()) -> Task:
    from tasks.registry import find_task

    return Task(find_task(name_or_path, tasks_dirs=tasks_dirs))
