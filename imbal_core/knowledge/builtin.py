"""The built-in data set: its generator already *is* the knowledge, so middle classes are exact.

Each built-in class is a distribution over ABCD-style factors (`data.synthetic.CLASSES`). A middle
class at strength t is rendered from factors interpolated t of the way from a normal class to an
abnormal one, per factor group (diameter, asymmetry, border, colours, structures). The normal
images themselves are not edited: new lesions are drawn, as many as there were normal images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..data.synthetic import CLASS_NAMES, CLASSES, FACTOR_GROUPS, interpolate_spec, render_specs
from ..data.tasks import REST
from ..errors import ConfigError
from .base import Operation, Recipe, register_recipe

GROUP_TEXT = {
    "diameter": "lesion radius range",
    "asymmetry": "asymmetry (low border harmonics)",
    "border": "border irregularity and edge blur",
    "colours": "colour palette and number of colours",
    "structures": "dermoscopic structures (network, dots, globules, streaks, vessels, ...)",
}


@register_recipe
class Builtin(Recipe):
    name = "builtin"
    title = "Built-in data (the generator's own factors, interpolated)"
    source = "the built-in generator's class definitions (imbal_core/data/synthetic.py), modelled on the ABCD rule"
    operations = tuple(Operation(group, GROUP_TEXT[group]) for group in FACTOR_GROUPS)
    needs_task_classes = True

    def render(
        self,
        images: np.ndarray,
        strength: float,
        seed: int,
        weights: Mapping[str, float],
        task_classes: Sequence[Sequence[str]],
    ) -> np.ndarray:
        positive, negative = self._sides(task_classes)
        amounts = {group: strength * w for group, w in weights.items()}
        rng = np.random.default_rng(seed)
        specs = [
            interpolate_spec(CLASSES[self._draw(negative, rng)], CLASSES[self._draw(positive, rng)], amounts)
            for _ in range(len(images))
        ]
        return render_specs(specs, images.shape[1], seed=int(rng.integers(2**62)))

    def check_task(self, task_classes: Sequence[Sequence[str]]) -> None:
        self._sides(task_classes)

    @staticmethod
    def _sides(task_classes: Sequence[Sequence[str]]) -> tuple[list[int], list[int]]:
        """Built-in class indices of the (positive, negative) sides; "rest" = every class not positive."""
        if len(task_classes) != 2:
            raise ConfigError("the built-in recipe needs the task's (positive, negative) class names")
        positive, negative = (list(side) for side in task_classes)
        if negative == [REST]:
            negative = [name for name in CLASS_NAMES if name not in positive]
        unknown = [name for name in positive + negative if name not in CLASS_NAMES]
        if unknown:
            raise ConfigError(
                f"the built-in recipe only knows the built-in classes {CLASS_NAMES}; got {unknown}. "
                "Use a recipe for your modality, or 'generic'"
            )
        return [CLASS_NAMES.index(name) for name in positive], [CLASS_NAMES.index(name) for name in negative]

    @staticmethod
    def _draw(classes: list[int], rng: np.random.Generator) -> int:
        """A class of one side of the task, drawn in proportion to its natural share."""
        shares = np.array([CLASSES[c].share for c in classes], dtype=float)
        return classes[int(rng.choice(len(classes), p=shares / shares.sum()))]
