"""The benchmark harness: models, methods, training, evaluation, run records and the CLI."""
