"""The training loop and its settings."""

from bench.train.config import TrainSettings
from bench.train.loop import DivergedError, TrainResult, train

__all__ = ["DivergedError", "TrainResult", "TrainSettings", "train"]
