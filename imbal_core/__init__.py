"""Imbalance Lab engine: data sources, imbalance profiles, methods, training, metrics, run store."""

__version__ = "0.1.0"
