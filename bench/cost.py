"""Cost figures of a run beyond wall time and FLOPs (bench/flops.py): peak memory and inference latency."""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.device import device_clock
from bench.procfs import status_field


CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> bool:
    """Start a run's peak-memory window; False where only the process-lifetime peak can be read.
    What earlier runs left unreachable is collected first: a model caught in a reference cycle
    (PEFT's seq2seq `generate` leaves one) would otherwise count in this run's peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        CLEAR_REFS.write_text("5")  # Linux >= 4.0: resets VmHWM, the peak resident set, to the current size
    except OSError:
        return False
    return _vm_hwm() is not None


def _vm_hwm() -> int | None:
    value = status_field("VmHWM")  # "123456 kB"
    return int(value.split()[0]) * 1024 if value else None


def peak_memory(device: torch.device, *, reset: bool) -> tuple[int, str]:
    """(bytes, how measured) since `reset_peak_memory`, which returned `reset`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    peak = _vm_hwm() if reset else None
    if peak is not None:
        return peak, "cpu_run_peak_rss"
    # the process's peak since it started: in a suite it includes earlier runs
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "cpu_max_rss"


def _seconds(model, prompts: Sequence[str]) -> float:
    batch = model.prompt_batch(prompts)  # tokenized untimed: the same work for base and tuned, not the model's
    started = device_clock(model.device)
    model.prompt_forward(batch)
    return device_clock(model.device) - started


@torch.no_grad()
def latency_against_base(tuned, base_of, prompts: Sequence[str], *, min_rounds: int = 5, max_rounds: int = 25,
                         budget_s: float = 2.0) -> tuple[float, float, float]:
    """(base, tuned) seconds per example of one inference forward over `prompts`, and the overhead.

    `base_of()` is a context in which the base model is at hand (None: the tuned model is its own
    base). The two are timed in turn, base first and last (b t b t ... b), so each tuned time sits
    between two base times and a drift in machine load or clock cancels in its ratio to their mean.
    Rounds go on while under `budget_s` seconds, between `min_rounds` and `max_rounds`. Latencies are
    medians and the overhead is the median of the rounds' ratios, which one disturbed round cannot move.
    """
    if base_of is None:
        _seconds(tuned, prompts)  # warm-up
        seconds = statistics.median(_seconds(tuned, prompts) for _ in range(min_rounds)) / len(prompts)
        return seconds, seconds, 1.0

    def time_base() -> float:
        with base_of() as base:
            return _seconds(base, prompts)

    time_base()  # warm-ups
    _seconds(tuned, prompts)
    started = time.perf_counter()
    base_times, tuned_times = [time_base()], []
    while len(tuned_times) < max_rounds:
        tuned_times.append(_seconds(tuned, prompts))
        base_times.append(time_base())
        if len(tuned_times) >= min_rounds and time.perf_counter() - started > budget_s:
            break
    ratios = [t / ((before + after) / 2) for t, before, after in zip(tuned_times, base_times, base_times[1:])]
    return (statistics.median(base_times) / len(prompts), statistics.median(tuned_times) / len(prompts),
            statistics.median(ratios))
