"""How a study picks and stops trials: the sampler and pruner, rebuilt by every worker process."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import optuna

from search.pruning import NoiseAwarePruner
from search.worker_id import worker_id


def make_sampler(name: str, *, multi_objective: bool, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2" or (name == "auto" and multi_objective):
        return optuna.samplers.NSGAIISampler(seed=seed)
    # group=True keeps method-specific parameters in their own subspaces; constant_liar keeps
    # parallel workers from proposing the configs of each other's running trials
    return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed, n_startup_trials=8,
                                      constant_liar=True)


def make_pruner(name: str, *, min_steps: int, max_steps: int, margin: float) -> optuna.pruners.BasePruner:
    """The named pruner; with `margin` > 0 it stops a trial only when its score is that many standard
    errors below the score it needed to go on (see search/pruning.py)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        pruner, keep = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_steps), 1 / 2
    elif name == "successive_halving":  # one bracket of Hyperband: rungs at min_steps x 3^k, the top third goes on
        pruner, keep = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_steps, reduction_factor=3), 1 / 3
    else:
        pruner, keep = optuna.pruners.HyperbandPruner(min_resource=min_steps, max_resource=max_steps,
                                                      reduction_factor=3), 1 / 3
    return NoiseAwarePruner(pruner, keep=keep, margin=margin) if margin else pruner


@dataclass(frozen=True)
class Strategy:
    """How a study picks and stops trials. Optuna does not store a study's sampler or pruner, so
    every worker process rebuilds them from this (a process loading the study without them would
    run Optuna's defaults); each worker gets its own seed, or all would propose the same configs."""
    sampler: str
    pruner: str
    multi_objective: bool
    seed: int | None
    min_steps: int
    max_steps: int
    margin: float
    shared_storage: bool = False  # other machines may run the same command on the same study
    # trials the study held when this command started: a resumed study draws anew, not the random
    # start-up draws of the invocation before (the sampler's state is not stored with the study)
    resumed_at: int = 0

    def make_sampler(self, worker: int = 0) -> optuna.samplers.BaseSampler:
        seed = self.seed
        if seed is not None and self.resumed_at:
            seed = zlib.crc32(f"{seed}:resumed at {self.resumed_at}".encode())
        if seed is not None and self.shared_storage:
            # the same command on each machine, or twice on one: seeds differ by process
            seed = zlib.crc32(f"{seed}:{worker_id()}".encode())
        return make_sampler(self.sampler, multi_objective=self.multi_objective,
                            seed=None if seed is None else seed + worker)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner, min_steps=self.min_steps, max_steps=self.max_steps, margin=self.margin)
