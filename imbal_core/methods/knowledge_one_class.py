"""Knowledge-guided one-class learning with middle classes (after Gao et al., arXiv 2111.10620).

Only normal images (class 0 of a binary task) are used. A knowledge recipe turns them into K
"middle classes" — normal images moved k / (K + 1) of the way toward the abnormal appearance
(e.g. a naevus given asymmetry, an irregular border, a blue-white veil) — and the classifier
learns which level an image is. An abnormal test image should look like a high level, so the
abnormality score is 1 - p(normal) or the expected level. The `generic` recipe (blur, noise,
contrast, elastic) is the knowledge-free ablation, as in the predecessor paper (Gao et al. 2020).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import parse_task
from ..errors import ConfigError
from ..knowledge import RECIPES, Recipe, level_strengths, recipe_for_data
from ..models import Classifier
from .base import Batch, Method, MethodCard, Setting, TrainInfo, register_method

SCORES = ("one_minus_normal", "expected_level")
AUTO = "auto"


@register_method("knowledge_one_class")
class KnowledgeOneClass(Method):
    needs_binary_task = True
    card = MethodCard(
        title="Knowledge-guided one-class learning with middle classes",
        idea="Learn only from normal images. Written-down medical knowledge (a recipe per modality: the ABCD rule "
        "for skin, retinopathy lesions for the retina, ...) turns each normal image into K graded 'middle classes' "
        "between normal and abnormal; the network learns to tell the levels apart. An abnormal image then looks "
        "like a high level. No real abnormal image is needed for training.",
        formula="L = CE(f(T_k(x)), k),  x normal,  k ~ U{0..K},  T_k = recipe at strength k/(K+1);  "
        "score = 1 − p(normal) or Σ_k k·p_k / K",
        paper="Gao, Liu, Arefan, Panigrahy, Zuley, Wu, 'Deep one-class classification with medical knowledge-"
        "guided middle classes' (arXiv 2111.10620); predecessor Gao et al., Artif. Intell. Med. 108 (2020) 101935 "
        "(how middle classes are built per task and the losses are not public).",
        approximation=True,
        settings=(
            Setting("recipe", AUTO, "knowledge recipe: auto (from the data source), or one of the recipes "
                    "(`generic` = the knowledge-free ablation)", choices=(AUTO, *RECIPES.names())),
            Setting("levels", 3, "K: number of middle classes", low=1, high=10),
            Setting("operations", "all", "which of the recipe's operations to use: all, or comma-separated names"),
            Setting("score", "one_minus_normal", "abnormality score: one_minus_normal = 1 − p(normal); "
                    "expected_level = Σ k·p_k / (number of levels − 1)", choices=SCORES),
            Setting("use_abnormal", False, "also train on the real abnormal training images, as the top class "
                    "(no longer one-class)"),
        ),
        from_paper=(
            "One-class classification of imbalanced medical images: the model is trained on the normal (majority) "
            "class, and prior medical knowledge of the task generates additional middle classes between normal and "
            "abnormal.",
            "The predecessor's knowledge-free 'imaging complexity' perturbations as the comparison (our `generic` "
            "recipe).",
        ),
        our_choices=(
            "Middle classes are graded transformations of normal images: class k of K applies every operation of the "
            "recipe at strength k/(K+1); K = 3. Recipes are ours, written from the cited grading rules (see "
            "`imbal_core/knowledge/`): dermoscopy (diameter, asymmetry, border, colours, dots/globules, streaks on a "
            "lesion mask found by Otsu thresholding), fundus (microaneurysms, haemorrhages, hard exudates, cotton-"
            "wool spots), breast ultrasound (margin, shadowing, heterogeneous echo), chest X-ray (consolidation, "
            "ground glass), generic (blur, noise, contrast, elastic). On the built-in data the generator renders the "
            "middle classes from class factors interpolated between a normal and an abnormal class.",
            "Loss: multi-class cross-entropy over {normal, middle 1..K}; each normal image in a batch gets a level "
            "drawn uniformly and is transformed on the fly (fresh randomness every step, seeded).",
            "Score: 1 − p(normal) by default; expected level as an option. The epoch is picked by validation AUROC and "
            "the decision threshold by validation balanced accuracy — both use the labelled validation split, as for "
            "every method here.",
        ),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if self.settings["recipe"] != AUTO:
            self._weights(RECIPES.get(self.settings["recipe"]))  # a wrong operation name is an error now

    @property
    def num_outputs(self) -> int:
        return self.settings["levels"] + 1 + int(self.settings["use_abnormal"])

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        model.head = nn.Linear(model.embed_dim, self.num_outputs)
        recipe_name = self.settings["recipe"]
        if recipe_name == AUTO:
            data = info.data_recipe or {}
            recipe_name = recipe_for_data(data.get("data", ""), data.get("data_path"), data.get("data_options"))
        self.recipe: Recipe = RECIPES.get(recipe_name)
        self.weights = self._weights(self.recipe)
        task = (info.data_recipe or {}).get("task")
        self.task_classes = (parse_task(task).positive, parse_task(task).negative) if task else ()
        if info.train_images is not None and self.recipe.needs_task_classes:
            self.recipe.check_task(self.task_classes)

    def _weights(self, recipe: Recipe) -> dict[str, float]:
        """Operation weights from the `operations` setting: 1 for the chosen operations, 0 for the others."""
        chosen = self.settings["operations"]
        names = [op.name for op in recipe.operations]
        if chosen.strip() == "all":
            return dict.fromkeys(names, 1.0)
        picked = [name.strip() for name in chosen.split(",") if name.strip()]
        unknown = sorted(set(picked) - set(names))
        if unknown or not picked:
            raise ConfigError(f"operations must be 'all' or names from recipe {recipe.name!r}: {names}; got {chosen!r}")
        return {name: float(name in picked) for name in names}

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        normal = batch.y == 0
        raw = batch.raw[normal]
        levels = torch.randint(0, self.settings["levels"] + 1, (len(raw),), generator=batch.generator,
                               device=batch.generator.device).to(raw.device)
        seed = int(torch.randint(2**62, (1,), generator=batch.generator, device=batch.generator.device))
        raw = self._transform(raw, levels, seed)
        x, labels = batch.augment(raw), levels
        if self.settings["use_abnormal"]:
            x = torch.cat([x, batch.x[~normal]])
            labels = torch.cat([labels, torch.full_like(batch.y[~normal], self.num_outputs - 1)])
        if len(labels) == 0:  # a batch without a normal image: nothing to learn, keep the graph valid
            return model(batch.x[:1]).sum() * 0
        return F.cross_entropy(model(x), labels)

    def _transform(self, raw: torch.Tensor, levels: torch.Tensor, seed: int) -> torch.Tensor:
        """Replace each image with level k > 0 by its middle-class version (numpy, on the CPU)."""
        out = raw.clone()
        for k, strength in enumerate(level_strengths(self.settings["levels"]), start=1):
            chosen = torch.nonzero(levels == k).flatten()
            if len(chosen):
                images = raw[chosen].permute(0, 2, 3, 1).cpu().numpy()
                made = self.recipe.middle_class(images, strength, seed + k, self.weights, self.task_classes)
                out[chosen] = torch.from_numpy(made).permute(0, 3, 1, 2).to(raw.device)
        return out

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits.float(), dim=1)
        if self.settings["score"] == "one_minus_normal":
            score = 1 - p[:, 0]
        else:
            score = (p * torch.arange(p.shape[1], dtype=p.dtype)).sum(1) / (p.shape[1] - 1)
        return torch.stack([1 - score, score], dim=1)

    def finalize(self, model: Classifier, val_features) -> dict:
        return {"recipe": self.recipe.name, "levels": self.settings["levels"],
                "operations": [name for name, w in self.weights.items() if w > 0]}
