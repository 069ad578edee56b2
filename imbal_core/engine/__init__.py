"""The training engine: config, loop, augmentation and checkpoints."""

from .config import TrainConfig
from .trainer import RunInterrupted, predict, train

__all__ = ["RunInterrupted", "TrainConfig", "predict", "train"]
