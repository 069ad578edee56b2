"""Imbalance methods behind one registry: `create_method(name, **settings)`."""

from .base import METHODS, Batch, Method, MethodCard, Setting, Stage, TrainInfo, create_method, register_method

# Importing the modules registers the methods.
from . import reweighting, resampling, decoupled, crckd, metric_two_stage, style_kd, iois  # noqa: E402,F401
from . import knowledge_one_class, deep_svdd  # noqa: E402,F401

__all__ = [
    "METHODS",
    "Batch",
    "Method",
    "MethodCard",
    "Setting",
    "Stage",
    "TrainInfo",
    "create_method",
    "register_method",
]
