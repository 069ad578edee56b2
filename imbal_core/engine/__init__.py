"""The training engine: config, loop, augmentation and checkpoints."""
from .config import TrainConfig
from .trainer import predict, train

__all__ = ["TrainConfig", "predict", "train"]
