"""Image synthesis for minority classes: style transfer (Style-KD) and class-conditional diffusion (IOIS).

Both kinds of generator share one store and one training lifecycle (`generators.py`).
"""

from . import diffusion, style_models  # noqa: F401 - registers the generator kinds
