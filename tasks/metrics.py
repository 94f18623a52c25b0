"""Metrics by name. Classification metrics take class indices; generation metrics take strings."""

from __future__ import annotations

import collections
import functools
import math
import numbers
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path

from tasks.notices import first_line


# ---- SQuAD v1.1, with the official answer normalisation ---------------------------------------


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, articles and extra whitespace (official SQuAD v1.1 script)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_over_golds(score: Callable[[str, str], float]) -> Callable[[Sequence[str], Sequence[Sequence[str]]], list]:
    """Each example's best score against any of its gold answers."""
    def per_example(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        return [max(score(p, g) for g in golds) for p, golds in zip(predictions, references)]

    return per_example


def _mean_of(per_example: Callable[[Sequence, Sequence], list[float]]) -> Callable[[Sequence, Sequence], float]:
    def metric(predictions: Sequence, references: Sequence) -> float:
        values = per_example(predictions, references)
        return sum(values) / len(values)

    return metric


squad_exact_match_each = _best_over_golds(lambda p, g: float(normalize_answer(p) == normalize_answer(g)))
squad_f1_each = _best_over_golds(_token_f1)
squad_exact_match, squad_f1 = _mean_of(squad_exact_match_each), _mean_of(squad_f1_each)

# ---- ROUGE (rouge-score package, the reference implementation) --------------------------------


WORD = re.compile(r"[^\W_]+")  # letters and digits of any script


@functools.cache
def _rouge_tokenizer():
    """rouge-score's own tokenization for the letters of any script: on ASCII text it gives the same
    tokens as its default tokenizer with `use_stemmer=True` (lower-cased runs of a-z and 0-9,
    Porter-stemmed past 3 characters), which drops every other letter, so "café" became "caf" and Russian text scored 0.
    A language written without spaces (Chinese, Japanese) would still need its own word splitting:
    here a run of its characters is one token."""
    from rouge_score import tokenizers
    from rouge_score.tokenizers import porter

    class UnicodeWords(tokenizers.Tokenizer):
        def __init__(self):
            self._stemmer = porter.PorterStemmer()

        def tokenize(self, text: str) -> list[str]:
            return [self._stemmer.stem(word) if len(word) > 3 else word for word in WORD.findall(text.lower())]

    return UnicodeWords()


def _rouge_each(kind: str) -> Callable[[Sequence[str], Sequence[Sequence[str]]], list[float]]:
    """Each example's ROUGE F-measure, the best against any of its references."""
    def per_example(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([kind], tokenizer=_rouge_tokenizer())
        # rougeLsum splits summaries into sentences at newlines.
        fix = (lambda s: "\n".join(re.split(r"(?<=[.!?])\s+", s.strip()))) if kind == "rougeLsum" else str
        return [max(scorer.score(fix(g), fix(p))[kind].fmeasure for g in golds)
                for p, golds in zip(predictions, references)]

    return per_example


# ---- registry ---------------------------------------------------------------------------------

def _sklearn(name: str, **options) -> Callable[[Sequence[int], Sequence[int]], float]:
    """scikit-learn's metric of that name, imported when first scored: importing scikit-learn takes
    most of a second, which every command (`spbench --help` too) would otherwise wait for."""
    def metric(predictions: Sequence[int], golds: Sequence[int]) -> float:
        import sklearn.metrics

        return float(getattr(sklearn.metrics, name)(golds, predictions, **options))

    return metric


CLASSIFICATION_METRICS: dict[str, Callable[[Sequence[int], Sequence[int]], float]] = {
    "accuracy": _sklearn("accuracy_score"),
    "macro_f1": _sklearn("f1_score", average="macro"),
    "mcc": _sklearn("matthews_corrcoef"),
}
# metrics that are the mean of a score in [0, 1] each example gets: that score, per example
PER_EXAMPLE: dict[str, Callable[[Sequence, Sequence], list[float]]] = {
    "accuracy": lambda predictions, golds: [float(p == g) for p, g in zip(predictions, golds)],
    "exact_match": squad_exact_match_each,
    "f1": squad_f1_each,
    **{kind: _rouge_each(kind) for kind in ("rouge1", "rouge2", "rougeL", "rougeLsum")},
}
GENERATION_METRICS: dict[str, Callable[[Sequence[str], Sequence[Sequence[str]]], float]] = {
    "exact_match": squad_exact_match,
    "f1": squad_f1,
    **{kind: _mean_of(PER_EXAMPLE[kind]) for kind in ("rouge1", "rouge2", "rougeL", "rougeLsum")},
}
METRICS = {**CLASSIFICATION_METRICS, **GENERATION_METRICS}
# scores that are a mean of a per-example score in [0, 1], whose standard error follows from the
# number of examples; of a 0/1 outcome per example (PROPORTION_METRICS), exactly the binomial one
PER_EXAMPLE_MEANS = tuple(PER_EXAMPLE)
PROPORTION_METRICS = ("accuracy", "exact_match")
EVALUATE_PREFIX = "evaluate:"  # a metric of the `evaluate` library, loaded from the hub or a local folder


def standard_error(score: float, examples: int, *, adjusted: bool = False) -> float:
    """Standard error of a score averaged over `examples` per-example scores in [0, 1]: sqrt(p(1-p)/n)
    is exact for accuracy and an upper bound for any mean of [0, 1] scores such as SQuAD F1 or ROUGE,
    whose variance is at most p(1-p) (Bhatia-Davis). A score outside [0, 1] (a metric on another
    scale) is taken at its nearest bound. `adjusted`: Agresti-Coull, two successes and two failures
    added, so a perfect score on a few examples does not claim zero error (for hundreds of examples,
    about the plain error; no longer exact, nor a bound)."""
    p = min(max(score, 0.0), 1.0)
    if adjusted:
        p, examples = (p * examples + 2) / (examples + 4), examples + 4
    return math.sqrt(p * (1 - p) / examples)


# where `evaluate` keeps the modules a bare name stands for, in the order it tries them
HUB_MODULE_KINDS = ("metric", "comparison", "measurement")


@functools.cache
def load_library_metric(name: str, folder: Path | None = None):
    """A metric of the `evaluate` library: a local metric folder relative to `folder` (the card's)
    where it is there, for users without a hub; else a hub module. Loaded once per process, and by a
    run before it trains, so an unloadable one costs no training."""
    import evaluate

    from tasks.hub import hub_hint, offline_unless_reachable

    local = folder / name if folder is not None else None
    if local is not None and local.exists():
        try:
            return evaluate.load(str(local))
        except Exception as err:  # a broken metric script: evaluate raises many kinds
            raise ValueError(f"metric evaluate:{name} cannot be loaded from {local} "
                             f"({type(err).__name__}: {first_line(err)})") from None
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) or name.startswith("."):  # a path, not a hub id
        raise ValueError(f"metric evaluate:{name} cannot be loaded: no metric folder {local or name}")
    # `evaluate.load` reads a bare name as a folder of the working directory first: a card must score
    # the same wherever the command runs, so the hub's own module ids are named instead
    modules = [name] if "/" in name else [f"evaluate-{kind}/{name}" for kind in HUB_MODULE_KINDS]
    offline_unless_reachable()
    why = ""
    for module in modules:
        try:
            return evaluate.load(module)
        except FileNotFoundError:  # neither on the hub nor in the cache
            pass
        except Exception as err:
            why = why or f" ({type(err).__name__}: {first_line(err)})"
    shown = name if "/" in name else f"evaluate-{{{','.join(HUB_MODULE_KINDS)}}}/{name}"
    beside = f"no folder {local} beside the card, and " if local is not None else ""
    raise ValueError(f"metric evaluate:{name} cannot be loaded: {beside}no hub module {shown} in the hub or its "
                     f"cache{why}{hub_hint()}")


class MetricResultError(ValueError):
    """A metric's result holds no score to read (several values, none named as asked), or the
    metric refuses the shape of what a card of its kind gives it: a card that cannot score."""


def library_metric_parts(name: str, folder: Path | None = None) -> tuple[str, str | None]:
    """An `evaluate:` metric (prefix removed) as the metric to load and the value of its result that
    scores: `rouge:rougeL` is rouge's rougeL; without `:KEY`, None (see _evaluate_library_metric).
    A local metric folder (under `folder`, the card's) whose own name holds a colon is not split."""
    metric, separator, key = name.rpartition(":")
    local = folder is not None and (folder / name).is_dir()
    if separator and metric and key and not local and not any(c in key for c in "/\\"):  # nor a drive's colon
        return metric, key
    return name, None


def load_library_metrics(names: Sequence[str], *, folder: Path | None = None) -> None:
    """Load the `evaluate:` metrics among `names` now: one that cannot load is named before any
    training or scoring, not after it."""
    for name in names:
        if name.startswith(EVALUATE_PREFIX):
            load_library_metric(library_metric_parts(name.removeprefix(EVALUATE_PREFIX), folder)[0], folder)


def _evaluate_library_metric(name: str, predictions: Sequence, references: Sequence, folder: Path | None) -> float:
    """The metric's value named by its `:KEY`, else the one named like the metric (its folder's
    name), else its only one. A result of several values and none of them named so is refused, not
    read by its first value (which may be a count)."""
    metric_name, asked = library_metric_parts(name, folder)
    references = [r[0] if isinstance(r, (list, tuple)) and len(r) == 1 else r for r in references]
    try:
        result = load_library_metric(metric_name, folder).compute(predictions=list(predictions),
                                                                  references=list(references))
    except Exception as err:  # named: a library's own message does not say which metric of the card it is
        problem = f"metric {EVALUATE_PREFIX}{name} cannot score these answers ({type(err).__name__}: {first_line(err)})"
        if "expected format" in str(err):  # evaluate's refusal of its inputs' types: no sample size mends it
            raise MetricResultError(f"{problem}; a classification card's metric is given class indices, a "
                                    "generation card's texts") from None
        raise ValueError(problem) from None
    key = asked or metric_name.rstrip("/").split("/")[-1]
    if key not in result and asked is None and len(result) == 1:
        key = next(iter(result))
    value = result.get(key)
    if key not in result or not isinstance(value, numbers.Real) or isinstance(value, bool):  # numpy's too
        returned = ", ".join(f"{k}={v!r}"[:40] for k, v in result.items())
        problem = f"{key!r} is no number there" if key in result else f"none named {key!r}"
        raise MetricResultError(f"metric {EVALUATE_PREFIX}{name} returned {returned}: {problem}; name the value "
                                f"to score by, as {EVALUATE_PREFIX}{metric_name}:KEY")
    return float(value)


def compute_metrics(names: Sequence[str], predictions: Sequence, references: Sequence, *,
                    folder: Path | None = None) -> dict[str, float]:
    """Each named metric; `folder` is where a local `evaluate:` metric folder is looked for first."""
    scores = {}
    for name in names:
        if name.startswith(EVALUATE_PREFIX):
            scores[name] = _evaluate_library_metric(name.removeprefix(EVALUATE_PREFIX), predictions, references, folder)
        else:
            scores[name] = METRICS[name](predictions, references)
    return scores
