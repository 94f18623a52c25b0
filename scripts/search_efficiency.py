"""Search efficiency on a tabular benchmark of real runs: TPE + pruning against random search.

Random search runs `--random-trials` full trials; the score it ends with is the target. TPE with
the default pruner then searches until a completed trial reaches that target. Both are charged
the training steps their trials ran (a pruned trial: the steps before it was stopped). Repeated
over seeds; prints the ratio TPE steps / random steps with its spread (target: <= 1/3).

The table is a grid suite's records (real runs with their learning curves):

    spbench bench --suite bench/suites/search_table.yaml
    python scripts/search_efficiency.py results/search_table [--random-trials 20] [--repetitions 30]
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings

import optuna

from search.study import make_sampler
from search.tabular import Table, load_table, simulate


def steps_to_reach(table: Table, target: float, *, seed: int, sampler: str, pruner: str, max_trials: int) -> float:
    """Training steps `sampler` + `pruner` spend until a completed trial scores `target` (inf: never)."""
    guided = simulate(table, sampler=make_sampler(sampler, multi_objective=False, seed=seed), pruner_name=pruner,
                      n_trials=max_trials, stop_at=target)
    return guided.steps_to_reach(target)


def _spread(ratios: list[float]) -> str:
    finite = sorted(r for r in ratios if math.isfinite(r))
    if len(finite) < len(ratios):
        return f"{len(ratios) - len(finite)} of {len(ratios)} repetitions never reached the target"
    q1, median, q3 = statistics.quantiles(finite, n=4)
    return (f"median {median:.3f}  IQR [{q1:.3f}, {q3:.3f}]  mean {statistics.fmean(finite):.3f}  "
            f"min {finite[0]:.3f}  max {finite[-1]:.3f}  (<= 1/3 in {sum(r <= 1 / 3 for r in finite)}/{len(finite)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="folder of the grid suite's run records")
    parser.add_argument("--random-trials", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--max-trials", type=int, default=200, help="cap on the guided search's trials")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    table = load_table(args.table)
    finals = sorted((e.final for e in table.entries.values()), reverse=True)
    print(f"table: {len(table.entries)} real runs of {table.steps} steps; best final validation score "
          f"{finals[0]:.4f}, median {statistics.median(finals):.4f}")
    print(f"random search: {args.random_trials} full trials = {args.random_trials * table.steps} steps; "
          f"{args.repetitions} repetitions\n")
    # per repetition: random search's best with its full budget (the target), and its steps
    baselines = [simulate(table, sampler=optuna.samplers.RandomSampler(seed=seed), pruner_name="none",
                          n_trials=args.random_trials) for seed in range(args.repetitions)]
    targets = [random.best[-1] for random in baselines]
    variants = [("TPE + hyperband pruning", "tpe", "hyperband"), ("TPE, no pruning", "tpe", "none"),
                ("random + hyperband pruning", "random", "hyperband")]
    for name, sampler, pruner in variants:
        ratios = [steps_to_reach(table, random.best[-1], seed=seed, sampler=sampler, pruner=pruner,
                                 max_trials=args.max_trials) / random.steps[-1]
                  for seed, random in enumerate(baselines)]
        print(f"{name:<28} steps / random's steps: {_spread(ratios)}")
    print(f"\ntargets (random search's best): mean {statistics.fmean(targets):.4f}, "
          f"reaching the table's best in {sum(t >= finals[0] for t in targets)}/{len(targets)} repetitions")


if __name__ == "__main__":
    main()
