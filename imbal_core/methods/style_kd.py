"""Style-KD — style knowledge distillation (Biomedical Signal Processing and Control 91, 2024).

Minority classes are topped up with auxiliary images: a class-c image (content) re-styled like a
reference image, labelled c, n_max - n_c of them per class, so real + auxiliary is balanced. A
teacher trained on the real data tells the student what the *content* image is; the student must
say the same of the auxiliary image, so it learns that style is not class evidence.

Stages: "teacher" (CE on the real data; skipped with init_from, whose weights become the teacher),
then "student" (real + auxiliary batches, distillation from the frozen teacher).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models import Classifier
from ..synth.generators import resolve_generator
from ..synth.style import (
    CHUNK,
    POLICIES,
    STYLE_TOOLS,
    AuxiliaryPairs,
    StyleTool,
    auxiliary_pairs,
    create_style_tool,
    stylise_uint8,
)
from ..synth.style_models import load_style_model
from .base import SAMPLERS, Batch, Method, MethodCard, Reference, Setting, Stage, TrainInfo, register_method

PARK_2024 = Reference(
    key="park2024stylekd",
    entry="article",
    title="Style-KD: Class-imbalanced medical image classification via style knowledge distillation",
    authors=("Park, Inhyuk", "Kim, Won Hwa", "Ryu, Jongbin"),
    year=2024,
    venue="Biomedical Signal Processing and Control",
    volume="91",
    pages="105928",
    url="https://www.sciencedirect.com/science/article/pii/S1746809423013617",
    note="authors as listed on the authors' lab page; not checked against the publisher's page",
)

GENERATE = ("epoch", "batch")
STUDENT_INIT = ("teacher", "scratch")


@register_method("style_kd")
class StyleKD(Method):
    card = MethodCard(
        title="Style-KD (style-transfer auxiliary images + distillation)",
        idea="Each minority class is topped up to the majority count with auxiliary images: one of its images "
        "re-styled like a reference image (Fourier amplitude swap, histogram matching or AdaIN). A teacher trained "
        "on the real images labels the content image; the student learns CE on real and auxiliary images and "
        "matches the teacher's soft prediction on the auxiliary image, so style stops being class evidence.",
        formula="L = mean over real ∪ aux of CE (aux weighted w_aux) + λ T² KL(softmax(t(content)/T) || "
        "softmax(s(aux)/T)) + μ (1 - cos(f_s(aux), f_s(content)));  aux_c = n_max − n_c images per class",
        paper="Park, Kim, Ryu, 'Style-KD: Class-imbalanced medical image classification via style knowledge "
        "distillation', Biomedical Signal Processing and Control 91 (2024) 105928 (generator and loss not public).",
        references=(PARK_2024,),
        approximation=True,
        settings=(
            Setting(
                "tool",
                "fourier",
                "style transfer: fourier (amplitude swap), histogram (matching), adain (model)",
                choices=tuple(STYLE_TOOLS.names()),
            ),
            Setting("strength", 1.0, "alpha: 0 keeps the content image, 1 is the full transfer", low=0.0, high=1.0),
            Setting(
                "beta", 0.1, "fourier only: low-frequency band swapped, as a share of the image side", low=0.0, high=0.5
            ),
            Setting("style_model", "", "adain only: a model name (see `generators`) or a .safetensors path"),
            Setting(
                "keep_detail",
                True,
                "adain only: add the style's change to the content image instead of using "
                "the decoded image (the small decoder blurs)",
            ),
            Setting(
                "policy",
                "same",
                "reference image: another image of the same class, any class, or the majority class",
                choices=POLICIES,
            ),
            Setting(
                "generate",
                "epoch",
                "epoch: make the epoch's auxiliary images at its start (fast, memory); "
                "batch: make each step's share on the fly (for large images)",
                choices=GENERATE,
            ),
            Setting(
                "aux_fraction", 1.0, "share of the n_max − n_c auxiliary images made per epoch", low=0.01, high=1.0
            ),
            Setting(
                "aux_weight",
                1.0,
                "w_aux: weight of each auxiliary image in the CE mean (1: every image counts "
                "the same, so the loss is class-balanced)",
                low=0.0,
                high=10.0,
            ),
            Setting("kd_weight", 1.0, "λ: weight of the distillation term", low=0.0, high=100.0),
            Setting("temperature", 4.0, "T: distillation temperature", low=0.1, high=20.0),
            Setting(
                "feature_weight",
                0.0,
                "μ: optional pull of the auxiliary image's embedding to its content's",
                low=0.0,
                high=10.0,
            ),
            Setting(
                "teacher_share",
                0.5,
                "share of the run's epochs that train the teacher (at least 1 each); "
                "0 with init_from: the finished run is the teacher and the student gets every epoch",
                low=0.0,
                high=0.9,
            ),
            Setting(
                "teacher_sampler",
                "class_balanced",
                "teacher stage sampling: class_balanced (a teacher biased "
                "towards the head would pull the student back to it through the distillation term) or instance",
                choices=SAMPLERS,
            ),
            Setting(
                "student_init",
                "teacher",
                "student starts from the teacher's weights, or from scratch",
                choices=STUDENT_INIT,
            ),
        ),
        from_paper=(
            "Auxiliary images are made by transferring the style of training images onto others, to balance the "
            "classes (the paper's figure balances APTOS with source and reference retinal images).",
            "Training uses the class-balanced set (real + auxiliary) and distils from a teacher so that the student "
            "learns from the auxiliary images' styles; the aim is higher minority accuracy without hurting large "
            "classes.",
        ),
        our_choices=(
            "The paper's generator is not public: three style tools, all without downloaded weights; AdaIN uses an "
            "encoder/decoder trained on the training split (autoencoder, then AdaIN content + style losses).",
            "The distillation loss is ours: Hinton KD from the teacher on the content image to the student on the "
            "auxiliary image, with T² scaling.",
            "Teacher and student share the architecture; the teacher is trained in the same run for teacher_share of "
            "the epochs (CE with class-balanced sampling by default: a head-biased teacher would undo the balancing "
            "through the distillation term, as a first HAM10000 trial showed), or taken from a finished run with "
            "init_from (its teacher stage is then skipped; teacher_share=0 gives the student every epoch).",
            "Each step adds ceil(N_aux / steps) auxiliary images to the real batch, so an epoch sees every real and "
            "every auxiliary image once: real + auxiliary is class-balanced, and CE is one mean over both (a separate "
            "mean per part would weigh the head-heavy real batch as much as all auxiliary images).",
            "Reference policy 'same' by default: in a HAM10000 trial (seed 0, 4 epochs, 28 px) the student's best "
            "validation balanced accuracy was 0.509 with 'same', 0.400 with 'any' (Fourier) and 0.457 with 'any' "
            "(histogram); the 3-seed comparison in results/ham10000_style_kd.md repeats 'same' against 'any'.",
            "keep_detail (adain): the decoded image is blurred, and all-blurred minority images teach 'blurred = "
            "minority'. On the built-in data (seed 0, 2 epochs: `train --method style_kd --set tool=adain --set "
            "style_model=adain_synthetic_28 --epochs 2`) the student's validation balanced accuracy was 0.625 with "
            "keep_detail and 0.295 without (teacher 0.527).",
            "Auxiliary and content images get the same random augmentation, so teacher and student see the same "
            "geometry and differ only in style.",
            "student_init=scratch re-initialises layers with PyTorch's default initialisers, not timm's.",
            "Evaluation uses the student.",
        ),
    )

    def check_ready(self) -> None:
        if self.settings["tool"] == "adain":
            resolve_generator(self.settings["style_model"], "adain")

    def stages(self, epochs: int) -> list[Stage]:
        share = self.settings["teacher_share"]
        teacher_epochs = max(1, round(share * epochs)) if share > 0 else 0
        self.student_epochs = max(1, epochs - teacher_epochs)
        student = Stage("student", self.student_epochs, representation=False)
        teacher = Stage("teacher", teacher_epochs, sampler=self.settings["teacher_sampler"])
        return [teacher, student] if teacher_epochs else [student]

    def setup(self, model: Classifier, info: TrainInfo) -> None:
        super().setup(model, info)
        training = info.train_images is not None  # (a finished run's model is also rebuilt through setup)
        if training and info.epochs == self.student_epochs and not info.init_from:
            raise ConfigError("style_kd needs a teacher: set teacher_share > 0, or init_from a finished run")
        self.add_frozen("teacher", copy.deepcopy(model))  # weights copied when the student stage starts
        self.tool: StyleTool | None = None  # made when the student stage starts: loading a run needs none
        self.pairs: AuxiliaryPairs | None = None
        self.pool: torch.Tensor | None = None

    def _make_tool(self, device: torch.device) -> StyleTool:
        name = self.settings["tool"]
        if name == "fourier":
            return create_style_tool(name, beta=self.settings["beta"])
        if name == "adain":
            return create_style_tool(
                name,
                model=load_style_model(self.settings["style_model"], device),
                keep_detail=self.settings["keep_detail"],
            )
        return create_style_tool(name)

    def on_epoch_start(self, model: Classifier, epoch: int, stage: Stage) -> None:
        teacher = self.aux["teacher"]
        teacher.eval()  # BatchNorm running statistics stay the teacher's own
        if stage.name != "student":
            return
        if self.tool is None:
            self.tool = self._make_tool(self.info.device)
        if epoch == self.info.epochs - self.student_epochs:  # the first student epoch
            teacher.load_state_dict(model.state_dict())
            if self.settings["student_init"] == "scratch":
                for module in model.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        # The global generator was seeded for this epoch by the engine, so pairs are reproducible.
        generator = torch.Generator(device=self.info.device).manual_seed(int(torch.randint(2**62, (1,))))
        pairs = auxiliary_pairs(
            self.info.train_labels,
            self.info.num_classes,
            self.settings["policy"],
            generator,
            self.settings["aux_fraction"],
        )
        self.pairs = pairs.subset(torch.randperm(len(pairs), generator=generator, device=self.info.device))
        self.per_step = math.ceil(len(self.pairs) / self.info.steps_per_epoch)
        self.pool = None
        if self.settings["generate"] == "epoch":
            self.pool = self._stylise(self.pairs)

    def _stylise(self, pairs: AuxiliaryPairs) -> torch.Tensor:
        """uint8 auxiliary images; gathered chunk by chunk so only the result is held in full."""
        images, tool, out = self.info.train_images, self.tool, []
        assert images is not None and tool is not None, "the student stage has started: training images and a tool"
        for start in range(0, len(pairs), CHUNK):
            part = pairs.subset(slice(start, start + CHUNK))
            out.append(stylise_uint8(tool, images[part.content], images[part.reference], self.settings["strength"]))
        return torch.cat(out) if out else images[:0]

    def loss(self, model: Classifier, batch: Batch) -> torch.Tensor:
        if batch.stage.name != "student":
            return F.cross_entropy(model(batch.x), batch.y)
        step = batch.step % self.info.steps_per_epoch
        part = slice(step * self.per_step, (step + 1) * self.per_step)
        assert self.pairs is not None and self.info.train_images is not None, "on_epoch_start made this epoch's pairs"
        pairs = self.pairs.subset(part)
        if not len(pairs):  # balanced data, or the epoch's auxiliary images are used up
            return F.cross_entropy(model(batch.x), batch.y)
        content_raw = self.info.train_images[pairs.content]
        aux_raw = self.pool[part] if self.pool is not None else self._stylise(pairs)
        # Same random augmentation for both: replay the generator's state.
        state = batch.generator.get_state()
        x_aux = batch.augment(aux_raw)
        batch.generator.set_state(state)
        x_content = batch.augment(content_raw)

        features = model.features(torch.cat([batch.x, x_aux]))
        logits = model.head(features)
        aux_logits = logits[len(batch.y) :]
        # One mean over real + auxiliary images (auxiliary ones weighted w_aux): at w_aux = 1 every image
        # counts the same, so the step's loss is class-balanced like the images are.
        per_image = F.cross_entropy(logits, torch.cat([batch.y, pairs.labels]), reduction="none")
        weights = torch.cat(
            [
                torch.ones_like(batch.y, dtype=per_image.dtype),
                torch.full_like(pairs.labels, self.settings["aux_weight"], dtype=per_image.dtype),
            ]
        )
        loss = (per_image * weights).sum() / weights.sum()
        with torch.no_grad():
            teacher_logits = self.aux["teacher"](x_content)
        t = self.settings["temperature"]
        kd = F.kl_div(
            F.log_softmax(aux_logits.float() / t, 1),
            F.log_softmax(teacher_logits.float() / t, 1),
            reduction="batchmean",
            log_target=True,
        )
        loss = loss + self.settings["kd_weight"] * t * t * kd
        if self.settings["feature_weight"] > 0:
            with torch.no_grad():
                content_features = model.features(x_content)
            similarity = F.cosine_similarity(features[len(batch.y) :].float(), content_features.float(), dim=1)
            loss = loss + self.settings["feature_weight"] * (1 - similarity).mean()
        return loss
