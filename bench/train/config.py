"""Training settings shared by every method; checked on creation."""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import SettingsError


@dataclass
class TrainSettings:
    steps: int = 200  # optimizer steps (the training budget)
    batch_size: int = 16
    lr: float | None = None  # None: the method's default (prompt methods want far larger rates)
    warmup_ratio: float = 0.06  # share of steps with linear warm-up, then linear decay to 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50  # steps between validation evaluations reported to the callback
    monitor_size: int = 200  # validation examples scored at each intermediate evaluation
    eval_size: int | None = None  # examples per split in the final evaluation (None: all)
    train_size: int | None = None  # training examples drawn from the train split (None: all)
    eval_batch_size: int = 32
    seed: int = 0
    # score the method's initial state on the evaluation splits (the run's own zero-shot). An
    # encoder's fresh head scores chance there, so short suites may skip it.
    score_initial: bool = True
    # recompute each layer's activations in the backward pass instead of keeping them: the same
    # result for a fraction of the memory (long generation inputs), at the price of one more forward
    gradient_checkpointing: bool = False

    def __post_init__(self):
        checks = {  # key -> (within range, the range in words)
            "steps": (self.steps >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "warmup_ratio": (0 <= self.warmup_ratio < 1, "in [0, 1)"),
            "weight_decay": (0 <= self.weight_decay < float("inf"), ">= 0, finite"),
            "max_grad_norm": (self.max_grad_norm > 0, "> 0"), "eval_every": (self.eval_every >= 1, ">= 1"),
            "monitor_size": (self.monitor_size >= 1, ">= 1"), "eval_batch_size": (self.eval_batch_size >= 1, ">= 1"),
            "lr": (self.lr is None or 0 < self.lr <= 10, "in (0, 10]"),
            "eval_size": (self.eval_size is None or self.eval_size >= 1, ">= 1"),
            "train_size": (self.train_size is None or self.train_size >= 1, ">= 1"),
            "seed": (0 <= self.seed < 2 ** 63, "in [0, 2**63)"),  # within what every seeded generator here takes
        }
        for key, (ok, bounds) in checks.items():
            if not ok:
                raise SettingsError(f"training setting {key}={getattr(self, key)!r} is out of range (must be {bounds})")


def watching_no_more_than_scored(values: dict, *, as_told: bool | None = None) -> dict:
    """Training settings with `monitor_size` at most `eval_size`: a run watches no more validation
    examples than it scores in the end, unless told to (`as_told`; by default, when `monitor_size`
    is given)."""
    if as_told is None:
        as_told = "monitor_size" in values
    eval_size = values.get("eval_size")
    if as_told or eval_size is None or eval_size < 1:  # none given, or one its own check refuses by name
        return values
    return {**values, "monitor_size": min(values.get("monitor_size", TrainSettings.monitor_size), eval_size)}
