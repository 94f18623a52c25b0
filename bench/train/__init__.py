"""The training loop and its settings."""

from bench.train.config import TrainSettings

__all__ = ["DivergedError", "TrainResult", "TrainSettings", "train"]


def __getattr__(name: str):
    # the loop imports torch and transformers (seconds): settings alone, as a search space or a
    # suite's plan reads them, do not pay for it
    if name in {"DivergedError", "TrainResult", "train"}:
        from bench.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
