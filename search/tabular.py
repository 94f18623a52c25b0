"""A tabular benchmark for the searcher: real runs on a grid, replayed so samplers and pruners can
be compared over many repetitions at no training cost.

Each table entry is one real run record (a grid suite's output): its intermediate validation
scores at the steps they were measured, and its final validation score. A simulated trial samples
a config through the same `SearchSpace` as a real search (numbers snapped to the nearest grid
value, or offered as the grid's values), reports the recorded curve to Optuna as a real trial
would, and is charged the training steps it ran before it completed or was pruned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from scipy.stats import spearmanr

from bench.record_folder import load_records
from search.pruning import MARGIN, report_with_error
from search.repeats import result_of_repeat
from search.space import Param, SearchSpace, nearest
from search.starting_points import enqueue_known_good
from search.strategy import make_pruner
from tasks.metrics import standard_error

CATEGORICAL = (str, bool)
SHARED = {"num_virtual_tokens"}  # one trial parameter for every method, as in the default space


@dataclass(frozen=True)
class Entry:
    method: str
    params: tuple[tuple[str, object], ...]  # sorted (name, value): method settings searched and lr
    curve: tuple[tuple[int, float], ...]  # (step, intermediate validation score)
    final: float  # validation score at the end of training
    steps: int


@dataclass
class Table:
    entries: dict[tuple, Entry]  # (method, params) -> entry
    grid: dict[str, dict[str, tuple]]  # method -> parameter -> sorted grid values
    steps: int
    classification: bool  # the task's kind: class-label starting points apply
    validation_size: int  # examples behind each final score

    def standard_error(self) -> float:
        """Binomial standard error of the best final score: differences below it are noise."""
        return standard_error(self.best(), self.validation_size)

    def space(self, *, grid_as_choices: bool = False) -> SearchSpace:
        """The search space the grid spans: numeric ranges (log) between grid values, choices as
        choices; or, `grid_as_choices`, every axis as the choice of its grid values (a space of
        choices, as a user's space file may give one: nothing is snapped, and a sampled config is
        exactly a table entry)."""
        params = {}
        for method, values in self.grid.items():
            params[method] = tuple(
                Param(name, "categorical", choices=grid, shared=name in SHARED)
                if grid_as_choices or isinstance(grid[0], CATEGORICAL)
                else Param(name, "int" if isinstance(grid[0], int) else "float", low=grid[0], high=grid[-1], log=True,
                           shared=name in SHARED)
                for name, grid in values.items() if len(grid) > 1)
        return SearchSpace(path=Path("<table>"), methods=tuple(sorted(self.grid)), params=params)

    def lookup(self, method: str, sampled: dict) -> Entry:
        """The entry nearest to a sampled config (log distance per numeric parameter)."""
        snapped = {}
        for name, grid in self.grid[method].items():
            value = sampled.get(name, grid[0])
            snapped[name] = value if isinstance(grid[0], CATEGORICAL) else nearest(grid, value)
        return self.entries[(method, tuple(sorted(snapped.items())))]

    def best(self) -> float:
        return max(entry.final for entry in self.entries.values())

    def rank_correlations(self) -> list[tuple[int, float]]:
        """Per evaluation step, the Spearman correlation between the configs' scores there and their
        final scores: how much a pruner stopping trials at that step can know."""
        curves = [dict(entry.curve) for entry in self.entries.values()]
        finals = [entry.final for entry in self.entries.values()]
        steps = sorted(set.intersection(*(set(curve) for curve in curves)))
        return [(step, float(spearmanr([curve[step] for curve in curves], finals).statistic)) for step in steps]


def load_table(*folders: Path) -> Table:
    """Table of every completed record under `folders` (one task and model, one training budget): a
    grid may be built in parts, such as more values of one axis run later by a second suite."""
    records = [record for folder in folders for record in load_records(folder)[0]]
    where = " + ".join(str(f) for f in folders)  # the folders, as errors name them
    if not records:
        raise ValueError(f"no run records under {where}: run the grid suite first")
    methods = {record["method"]["name"] for record in records}
    values: dict[tuple[str, str], set] = {}  # a parameter is searched where the grid has several values
    for record in records:
        method = record["method"]["name"]
        for name, value in _config(record).items():
            if value is not None and name != "init_text":
                values.setdefault((method, name), set()).add(value)
    grid = {method: {name: tuple(sorted(v)) for (m, name), v in values.items() if m == method and len(v) > 1}
            for method in methods}
    for method, axes in grid.items():
        _drop_derived_axes(axes, [_config(r) for r in records if r["method"]["name"] == method])
    entries, steps = {}, {record["train"]["steps"] for record in records}
    if len(steps) != 1:
        raise ValueError(f"records under {where} have different training budgets: {sorted(steps)} steps")
    validation_sizes, run_ids = [], {}
    for record in records:
        method = record["method"]["name"]
        config = _config(record)
        key = (method, tuple(sorted((name, config[name]) for name in grid[method])))
        run_id = record.get("run_id", "?")
        if key in run_ids:
            raise ValueError(f"runs {run_ids[key]} and {run_id} under {where} are the same config: a table holds "
                             "one run of each")
        run_ids[key] = run_id
        metric = record["task"]["primary_metric"]
        try:
            curve = tuple((point["step"], point[metric]) for point in record["curve"]["eval"])
            validation = record["scores"]["validation"]
            entries[key] = Entry(method, key[1], curve, validation[metric], record["train"]["steps"])
            validation_sizes.append(validation["n"])
        except KeyError as err:
            raise ValueError(f"run {run_id} under {where} has no {err} in its record: a table "
                             "needs validation scores with their size and the learning curve") from None
    table = Table(entries=entries, grid=grid, steps=steps.pop(),
                  classification=all(record["task"]["kind"] == "classification" for record in records),
                  validation_size=min(validation_sizes))
    missing = _grid_size(grid) - len(entries)
    if missing:
        raise ValueError(f"the grid under {where} is incomplete: {missing} of {_grid_size(grid)} runs missing")
    return table


def _config(record: dict) -> dict:
    """A record's method settings and learning rate: what a grid varies."""
    return {**record["method"]["settings"], "lr": record["train"]["lr"]}


def _drop_derived_axes(axes: dict[str, tuple], configs: list[dict]) -> None:
    """Remove a setting that follows from the others (prefix init follows from projection): the
    configs stay distinct without it. Settings declared later are tried first, as they are the
    ones resolved from earlier ones."""
    for name in reversed(list(axes)):
        rest = [n for n in axes if n != name]
        if len({tuple(c[n] for n in rest) for c in configs}) == len(configs):
            del axes[name]


def _grid_size(grid: dict[str, dict[str, tuple]]) -> int:
    return sum(math.prod(len(v) for v in values.values()) for values in grid.values())


@dataclass
class SearchTrace:
    """One simulated search: per finished trial, the steps spent so far and the best final score;
    per trial that trained (not one that took an earlier trial's result), the table entry it ran."""
    steps: list[int]
    best: list[float]
    runs: list[tuple] = field(default_factory=list)

    def repeats(self) -> int:
        """Trials that ran an entry the search had run before: sampled configs that snap to the same
        grid point are paid again, where a real search would have tried a new config."""
        return len(self.runs) - len(set(self.runs))

    def steps_to_reach(self, target: float) -> float:
        for spent, best in zip(self.steps, self.best):
            if best >= target:
                return spent
        return math.inf


def simulate(table: Table, *, sampler: optuna.samplers.BaseSampler, pruner_name: str, n_trials: int,
             stop_at: float | None = None, known_good: bool = False, study_name: str = "tabular",
             first_rung: int | None = None, margin: float = MARGIN, grid_as_choices: bool = False) -> SearchTrace:
    """Run an Optuna study over the table; stops after `n_trials` or once a trial completes at `stop_at`.
    `known_good` enqueues the starting points `spbench search` tries first (snapped to the grid).
    `first_rung`: the earliest step a pruner may stop a trial (default: the first evaluation).
    `margin`: standard errors a pruned trial must fall below the rung's threshold (0: any gap).
    `grid_as_choices`: search the grid's values as choices (see `Table.space`).
    A trial that samples a config an earlier trial completed takes its result at no cost, as in
    `spbench search` (`search.repeats`); a config snapped to a grid point another trial ran is
    charged again, since a real search would have trained the config it sampled.
    Hyperband assigns trials to brackets by a checksum of the study name, so the name is part of
    what makes a repetition reproducible."""
    space = table.space(grid_as_choices=grid_as_choices)
    first_rung = first_rung or min(step for entry in table.entries.values() for step, _ in entry.curve)
    study = optuna.create_study(study_name=study_name, direction="maximize", sampler=sampler,
                                pruner=make_pruner(pruner_name, min_steps=first_rung, max_steps=table.steps,
                                                   margin=margin))
    if known_good:
        enqueue_known_good(study, space, classification=table.classification)
    trace, spent = SearchTrace([], []), 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        method, settings, train = space.sample(trial)
        if (repeated := result_of_repeat(trial, method, settings, train)) is not None:
            return repeated  # as `spbench search` does: no training, no steps
        entry = table.lookup(method, {**settings, **train})
        trace.runs.append((entry.method, entry.params))
        for step, score in entry.curve:
            report_with_error(trial, score, step, examples=table.validation_size)
            if step < entry.steps and trial.should_prune():
                spent += step
                raise optuna.TrialPruned()
        spent += entry.steps
        return entry.final

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        completed = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        trace.steps.append(spent)
        trace.best.append(max(completed, default=-math.inf))
        if stop_at is not None and trace.best[-1] >= stop_at:
            study.stop()

    study.optimize(objective, n_trials=n_trials, callbacks=[record])
    return trace
