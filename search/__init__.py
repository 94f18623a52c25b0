"""The Optuna searcher: search space as data, one objective over the shared run path, studies."""
