"""Image synthesis for minority classes: style transfer (Style-KD)."""
from .style import (POLICIES, STYLE_TOOLS, AdaINModel, AuxiliaryPairs, StyleTool, adain, auxiliary_pairs,
                    create_style_tool, fourier_amplitude_swap, histogram_match, reference_pool, style_grid, stylise_uint8)
from .style_models import (StyleModelInfo, StyleTrainConfig, list_style_models, load_style_model, models_for,
                           resolve_style_model, train_style_model)

__all__ = ["POLICIES", "STYLE_TOOLS", "AdaINModel", "AuxiliaryPairs", "StyleTool", "adain", "auxiliary_pairs",
           "create_style_tool", "fourier_amplitude_swap", "histogram_match", "reference_pool", "style_grid", "stylise_uint8", "StyleModelInfo",
           "StyleTrainConfig", "list_style_models", "load_style_model", "models_for", "resolve_style_model",
           "train_style_model"]
