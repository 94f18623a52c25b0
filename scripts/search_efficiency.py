"""Search efficiency on a tabular benchmark of real runs: TPE + pruning against random search.

Random search runs `--random-trials` full trials; the score it ends with is the target. Each
guided variant then searches until a completed trial reaches that target: `spbench search` as it
runs by default (TPE, Hyperband pruning, its known-good starting points tried first, snapped to
the grid), the same sampler started cold with each pruner `spbench search` offers, and random
search with Hyperband. Pruners stop a trial only when its score is `spbench search`'s margin of
standard errors below the score it needed to go on; the default and cold TPE + Hyperband are also
run stopping on any gap (`--prune-margin 0`). All are charged the training steps their trials ran
(a pruned trial: the steps before it was stopped). Repeated over seeds; prints the ratio guided
steps / random steps with its spread and the median's 95% confidence interval (target: <= 1/3).
The searchers draw from seeds of their own: seeded as the random search that set the target, TPE's
random start-up trials and a random searcher would replay its draws, the target among them.
For scale, the first row is random search itself: the steps it took to reach its own best, which
by the target's definition it always reaches within its budget.

The table is a grid suite's records (real runs with their learning curves), from one folder or
several read as one grid. Four ship with the project: SST-2 on MiniLM at 50 steps (84 runs; 147
with a second suite's three more learning rates per method) and at 120 steps (36 runs), and AG News
on MiniLM at 40 steps (42 runs). Rebuild one, or build another, with a grid suite:

    python scripts/search_efficiency.py results/search_tables/sst2__minilm-l6 --repetitions 50
    python scripts/search_efficiency.py results/search_tables/sst2__minilm-l6 \
        results/search_tables/sst2_more_lrs__minilm-l6 --repetitions 50
    python scripts/search_efficiency.py results/search_tables/sst2_long__minilm-l6 --repetitions 50
    python scripts/search_efficiency.py results/search_tables/ag_news__minilm-l6 --repetitions 50
    spbench bench --suite bench/suites/search_table_sst2.yaml --results results/my_table
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings

import optuna
from scipy.stats import quantile_test

from search.pruning import MARGIN
from search.strategy import make_sampler
from search.tabular import SearchTrace, Table, load_table, simulate

SEARCHER_SEEDS = 10_000  # far from the targets' random searches (seeds 0, 1, ...): no draw in common
MISSED = 1e9  # a repetition that never reached the target, ranked above any ratio


def search_until(table: Table, target: float, *, seed: int, sampler: str, pruner: str, margin: float,
                 known_good: bool, max_trials: int, first_rung: int | None, grid_as_choices: bool) -> SearchTrace:
    """`sampler` + `pruner` searching until a completed trial scores `target` (or `max_trials`)."""
    return simulate(table, sampler=make_sampler(sampler, multi_objective=False, seed=seed), pruner_name=pruner,
                    n_trials=max_trials, stop_at=target, known_good=known_good, study_name=f"repetition-{seed}",
                    first_rung=first_rung, margin=margin, grid_as_choices=grid_as_choices)


def _spread(ratios: list[float]) -> str:
    """Median with its 95% confidence interval (distribution-free, from order statistics: how far
    another set of repetitions could move it), quartiles, misses (never reached the target) counted
    as infinitely slow."""
    ordered = sorted(ratios)
    # a miss is above every ratio, and no interpolation between it and one gives nan (inf x 0)
    ranked = [r if math.isfinite(r) else MISSED for r in ordered]
    q1, median, q3 = statistics.quantiles(ranked, n=4, method="inclusive")
    ci = quantile_test(ranked, q=median, p=0.5).confidence_interval(0.95)
    misses = sum(not math.isfinite(r) for r in ordered)

    reached = max((r for r in ordered if math.isfinite(r)), default=-math.inf)

    def shown(value: float) -> str:  # past every finite ratio: a miss, or interpolated towards one
        return "inf" if value > reached else f"{value:.3f}"

    return (f"median {shown(median)} (95% CI [{shown(ci.low)}, {shown(ci.high)}])  IQR [{shown(q1)}, {shown(q3)}]  "
            f"min {shown(ranked[0])}  max {shown(ranked[-1])}  "
            f"(<= 1/3 in {sum(r <= 1 / 3 for r in ordered)}/{len(ordered)}"
            + (f"; {misses} never reached it)" if misses else ")"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="+", help="folder(s) of the grid suite's run records, read as one table")
    parser.add_argument("--random-trials", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--max-trials", type=int, default=200, help="cap on the guided search's trials")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="count the target reached within this much of random search's best (e.g. the "
                             "standard error of the validation score: differences below it are noise)")
    parser.add_argument("--first-rung", type=int, default=None,
                        help="earliest step a pruner may stop a trial (default: the table's first evaluation)")
    parser.add_argument("--searcher-seeds", type=int, default=SEARCHER_SEEDS,
                        help="the first of the searchers' seeds, one a repetition (the random searches that set "
                             "the targets are seeded 0, 1, ...)")
    parser.add_argument("--grid-as-choices", action="store_true",
                        help="search the grid's values as choices (a space of choices, as a space file may give "
                             "one) instead of ranges whose samples are snapped to the nearest grid value")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    table = load_table(*args.table)
    finals = sorted((e.final for e in table.entries.values()), reverse=True)
    noise = table.standard_error()
    print(f"table: {len(table.entries)} real runs of {table.steps} steps; best final validation score "
          f"{finals[0]:.4f}, median {statistics.median(finals):.4f}; {sum(f >= finals[0] - noise for f in finals)} "
          f"configs within one standard error ({noise:.3f}, n={table.validation_size}) of the best")
    print("rank correlation with the final score, by evaluation step (what a pruner can know there): "
          + ", ".join(f"{step}: {rho:.2f}" for step, rho in table.rank_correlations()))
    print("space: " + ("the grid's values as choices" if args.grid_as_choices else
                       "ranges between the grid's values, samples snapped to the nearest grid value"))
    print(f"random search: {args.random_trials} trials, up to {args.random_trials * table.steps} steps; "
          f"{args.repetitions} repetitions; target: random's best"
          + (f" - {args.tolerance}" if args.tolerance else "") + "\n")
    # per repetition: random search's best with its full budget (the target), and its steps
    baselines = [simulate(table, sampler=optuna.samplers.RandomSampler(seed=seed), pruner_name="none",
                          n_trials=args.random_trials, grid_as_choices=args.grid_as_choices)
                 for seed in range(args.repetitions)]
    targets = [random.best[-1] for random in baselines]
    to_reach = [target - args.tolerance for target in targets]
    # random search's own way to its best, on the same scale: what "as fast as random search" reads as
    own = [random.steps_to_reach(goal) / random.steps[-1] for random, goal in zip(baselines, to_reach)]
    print(f"{'random search itself':<26} steps / random's steps: {_spread(own)}")
    variants = [  # (name, sampler, pruner, prune margin in standard errors, starting points enqueued)
        ("spbench search default", "tpe", "hyperband", MARGIN, True),
        ("  the same, any gap", "tpe", "hyperband", 0.0, True),
        ("TPE + hyperband, cold", "tpe", "hyperband", MARGIN, False),
        ("  the same, any gap", "tpe", "hyperband", 0.0, False),
        ("TPE + succ. halving, cold", "tpe", "successive_halving", MARGIN, False),
        ("TPE + median, cold", "tpe", "median", MARGIN, False),
        ("TPE, no pruning, cold", "tpe", "none", 0.0, False),
        ("random + hyperband", "random", "hyperband", MARGIN, False),
    ]
    for name, sampler, pruner, margin, known_good in variants:
        searches = [search_until(table, goal, seed=seed, sampler=sampler, pruner=pruner, margin=margin,
                                 known_good=known_good, max_trials=args.max_trials, first_rung=args.first_rung,
                                 grid_as_choices=args.grid_as_choices)
                    for seed, goal in enumerate(to_reach, start=args.searcher_seeds)]
        ratios = [search.steps_to_reach(goal) / random.steps[-1]
                  for search, goal, random in zip(searches, to_reach, baselines)]
        trials, trained = sum(len(s.steps) for s in searches), sum(len(s.runs) for s in searches)
        print(f"{name:<26} steps / random's steps: {_spread(ratios)}\n{'':<26} trials: median "
              f"{statistics.median(len(search.steps) for search in searches):g}, {trials} in all; "
              f"{trials - trained} took an earlier trial's result; of those trained, "
              f"{sum(search.repeats() for search in searches) / trained:.0%} ran a grid point run before")
    print(f"\ntargets (random search's best): mean {statistics.fmean(targets):.4f}, "
          f"reaching the table's best in {sum(t >= finals[0] for t in targets)}/{len(targets)} repetitions")


if __name__ == "__main__":
    main()
