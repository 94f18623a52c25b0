"""A compact training loop: AdamW, linear warm-up and decay, clipping, periodic evaluation.

Mixed precision where the base model computes in bf16/fp16: trainable parameters are made fp32
(master weights) and forwards run under autocast (in TunedModel); fp16 adds loss scaling, as its
gradients underflow otherwise.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bench.device import device_clock, upcast_trainable
from bench.flops import Work
from bench.modeling import TunedModel
from bench.train.checkpointing import recomputed_activations
from bench.train.config import TrainSettings
from tasks import Example

# called every `eval_every` steps with the step number; returns the scores it measured (kept in
# the result). It may raise to stop the run, as an Optuna pruner does with TrialPruned.
EvalCallback = Callable[[int], dict[str, float]]


class DivergedError(FloatingPointError):
    """The loss became NaN or infinite (a FloatingPointError, so the command line reports it in a
    line without importing the training code)."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"training diverged at step {step}: loss is {loss} (a lower learning rate, or a lower "
                         "max_grad_norm, usually keeps it finite)")
        self.step, self.loss = step, loss


@dataclass
class TrainResult:
    steps: int
    train_seconds: float  # optimizer steps only, evaluation time excluded
    work: Work = field(default_factory=Work)  # what the steps ran, for the FLOP estimate
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)  # {"step": n, **scores}

    @property
    def seconds_per_step(self) -> float:
        return self.train_seconds / max(self.steps, 1)


def batches(examples: Sequence[Example], batch_size: int, seed: int) -> Iterator[list[Example]]:
    """Endless shuffled epochs, the same order for the same seed."""
    order, rng = list(range(len(examples))), random.Random(seed)
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [examples[i] for i in order[start:start + batch_size]]
        if len(order) < batch_size:  # fewer examples than one batch: use them all
            yield [examples[i] for i in order]


def _progress_line(result: TrainResult, total: int) -> str:
    evaluation = result.evaluations[-1]
    scores = "  ".join(f"{k}={v:.4f}" for k, v in evaluation.items() if k not in ("step", "n"))
    examples = f" (n={evaluation['n']})" if "n" in evaluation else ""
    return f"step {result.steps}/{total}: loss {result.losses[-1]:.4f}  validation {scores}{examples}"


def train(tuned: TunedModel, examples: Sequence[Example], settings: TrainSettings, *, lr: float,
          on_eval: EvalCallback | None = None, progress: bool = True) -> TrainResult:
    torch.manual_seed(settings.seed)
    trainable = upcast_trainable(tuned.model)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler(tuned.device.type, enabled=tuned.base.dtype == torch.float16)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * settings.steps), settings.steps)
    result = TrainResult(steps=0, train_seconds=0.0)
    stream = batches(examples, settings.batch_size, settings.seed)
    # a bar redrawn with carriage returns is for a terminal; a log file gets a line per evaluation
    terminal = progress and sys.stderr.isatty()
    with (tqdm(total=settings.steps, desc="train", disable=not terminal, leave=False) as bar,
          recomputed_activations(tuned.model, settings.gradient_checkpointing)):
        for step in range(1, settings.steps + 1):
            tuned.model.train()
            started = device_clock(tuned.device)
            step_loss = tuned.loss(next(stream))
            loss = step_loss.loss.item()
            if not math.isfinite(loss):
                raise DivergedError(step, loss)
            scaler.scale(step_loss.loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            scale = scaler.get_scale()
            scaler.step(optimizer)  # skipped while fp16 gradients overflow; the scale then comes down
            scaler.update()
            if scaler.get_scale() >= scale:  # the schedule advances with the optimizer's real steps
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.train_seconds += device_clock(tuned.device) - started
            result.steps = step
            result.work += step_loss.work
            result.losses.append(loss)
            bar.update()
            bar.set_postfix(loss=f"{loss:.4f}")
            if on_eval is not None and (step % settings.eval_every == 0 or step == settings.steps):
                result.evaluations.append({"step": step, **on_eval(step)})
                if progress and not terminal:
                    print(_progress_line(result, settings.steps), file=sys.stderr, flush=True)
            elif step == 1 and progress and not terminal:  # a log's first sign of training, and its pace
                print(f"step 1/{settings.steps}: loss {loss:.4f}  ({result.train_seconds:.1f} s a step; "
                      f"{settings.steps - 1} step{'' if settings.steps == 2 else 's'} to go)", file=sys.stderr,
                      flush=True)
    return result
