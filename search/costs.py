"""The costs a two-objective search (`--objective score,COST`) can minimise, and `--objective` read."""

from __future__ import annotations

import difflib

from bench.results import COST_KEYS

COSTS = tuple(key for key in COST_KEYS if key != "trainable_pct")  # a share of the model is no cost of its own
RECOMPUTATION_COSTS = ("train_seconds", "train_flops", "peak_memory_bytes")  # gradient checkpointing changes them


def objectives_named(text: str) -> list[str]:
    """`--objective` as its one or two names: `score`, or `score,COST`."""
    objectives = [o.strip() for o in text.split(",")]
    if objectives[0] != "score" or len(objectives) > 2 or (len(objectives) == 2 and objectives[1] not in COSTS):
        wrong = next((o for o in objectives[1:2] if o not in COSTS), None) if objectives[0] == "score" else None
        near = ([c for c in COSTS if wrong in c] or difflib.get_close_matches(wrong, COSTS, n=1)) if wrong else []
        raise ValueError(f"--objective must be `score` or `score,COST` with COST in {', '.join(COSTS)}"
                         + (f"; {wrong!r} is no cost" + (f": did you mean {' or '.join(map(repr, near))}?" if near
                                                         else "") if wrong else f", got {text!r}"))
    return objectives
