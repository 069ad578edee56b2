"""AdaIN style models (for Style-KD): the trainer behind `train_generator(StyleTrainConfig(...))`.

Training has two phases, both on the training split only:
1. autoencoder: encoder + decoder learn to reconstruct images (we have no pretrained VGG, so the
   encoder's features are learnt from the data itself);
2. AdaIN: the encoder is frozen and defines the losses; the decoder learns to turn
   AdaIN(content features, style features) into an image whose deepest features match that
   target (content loss) and whose channel statistics at every encoder stage match the style's
   (style loss). A reconstruction term keeps strength 0 close to the content image.

Files, listing and the training lifecycle are shared with diffusion models (`generators.py`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import RunError, require_all
from .generators import (
    GENERATOR_KINDS,
    GeneratorConfig,
    GeneratorTrainer,
    ProgressFn,
    TrainingSplit,
    read_generator,
    read_metadata,
    resolve_generator,
)
from .style import AdaINModel, adain, channel_stats


@dataclass
class StyleTrainConfig(GeneratorConfig):
    """Everything that defines an AdaIN model; stored in the model file's metadata."""

    kind = "adain"
    width: int = 16
    autoencoder_epochs: int = 4  # of `epochs`; the rest train the decoder for AdaIN
    style_weight: float = 5.0
    reconstruction_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (
                isinstance(self.autoencoder_epochs, int) and 0 <= self.autoencoder_epochs < self.epochs,
                "autoencoder_epochs",
                f"an integer in [0, epochs - 1 = {self.epochs - 1}]",
                self.autoencoder_epochs,
            ),
            (isinstance(self.width, int) and 4 <= self.width <= 128, "width", "an integer in [4, 128]", self.width),
            (
                self.style_weight >= 0 and self.reconstruction_weight >= 0,
                "loss weights",
                "weights >= 0",
                (self.style_weight, self.reconstruction_weight),
            ),
        ]
        require_all(checks)


# ---- Losses -----------------------------------------------------------------------------------


def style_loss(generated: list[torch.Tensor], style: list[torch.Tensor]) -> torch.Tensor:
    """Sum over encoder stages of the squared distance of channel means and of stds."""
    total = generated[0].new_zeros(())
    for g, s in zip(generated, style):
        mean_g, std_g = channel_stats(g)
        mean_s, std_s = channel_stats(s)
        total = total + F.mse_loss(mean_g, mean_s) + F.mse_loss(std_g, std_s)
    return total


def adain_losses(
    model: AdaINModel, content: torch.Tensor, style: torch.Tensor, config: StyleTrainConfig
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        content_features = model.encoder(content)
        style_features = model.encoder(style)
        target = adain(content_features[-1], style_features[-1])
    size = content.shape[-2:]
    generated = model.decoder(target, size)
    generated_features = model.encoder(generated)
    losses = {
        "content": F.mse_loss(generated_features[-1], target),
        "style": style_loss(generated_features, style_features),
        "reconstruction": F.mse_loss(model.decoder(content_features[-1], size), content),
    }
    losses["total"] = (
        losses["content"]
        + config.style_weight * losses["style"]
        + config.reconstruction_weight * losses["reconstruction"]
    )
    return losses


# ---- Training ---------------------------------------------------------------------------------


@GENERATOR_KINDS.register("adain")
class AdaINTrainer(GeneratorTrainer):
    config_class = StyleTrainConfig

    def __init__(self, config: StyleTrainConfig, split: TrainingSplit, device: torch.device) -> None:
        self.config, self.images, self.device = config, split.images, device
        self.model = AdaINModel(split.images.shape[1], config.width).to(device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_epoch = -1
        self.steps = max(1, len(split.images) // config.batch_size)

    def _start_phase(self, autoencoder_phase: bool) -> None:
        self.model.encoder.requires_grad_(autoencoder_phase)
        trained = self.model.parameters() if autoencoder_phase else self.model.decoder.parameters()
        self.optimizer = torch.optim.Adam([p for p in trained if p.requires_grad], lr=self.config.lr)

    def _optimizer(self) -> torch.optim.Optimizer:
        """The current phase's optimiser (train_epoch and load start a phase)."""
        if self.optimizer is None:
            raise RuntimeError("no training phase started yet: call train_epoch (or load) first")
        return self.optimizer

    def train_epoch(self, epoch: int, stop_event: threading.Event, progress: ProgressFn) -> dict[str, Any] | None:
        config, model = self.config, self.model
        generator = torch.Generator(device=self.device).manual_seed(config.seed * 100_003 + epoch)
        autoencoder_phase = epoch < config.autoencoder_epochs
        phase = "autoencoder" if autoencoder_phase else "adain"
        if self.optimizer is None or epoch == config.autoencoder_epochs:
            self._start_phase(autoencoder_phase)
        model.train()
        sums: dict[str, float] = {}
        for step in range(self.steps):
            if stop_event.is_set():
                return None
            content = _batch(self.images, config.batch_size, generator)
            if autoencoder_phase:
                features = model.encoder(content)[-1]
                losses = {"reconstruction": F.mse_loss(model.decoder(features, content.shape[-2:]), content)}
                losses["total"] = losses["reconstruction"]
            else:
                losses = adain_losses(model, content, _batch(self.images, config.batch_size, generator), config)
            optimizer = self._optimizer()
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            if step % 10 == 0 or step == self.steps - 1:
                progress(
                    {
                        "event": "step",
                        "epoch": epoch,
                        "epochs": config.epochs,
                        "step": step + 1,
                        "steps": self.steps,
                        "phase": phase,
                        "loss": losses["total"].item(),
                    }
                )
        self.last_epoch = epoch
        return {"phase": phase, **{key: value / self.steps for key, value in sums.items()}}

    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def training_state(self) -> dict[str, Any]:
        return {"optimizer": self._optimizer().state_dict(), "epoch": self.last_epoch}

    def load(self, weights: dict[str, torch.Tensor], training_state: dict[str, Any]) -> None:
        self.model.load_state_dict(weights)
        next_epoch = training_state["epoch"] + 1
        if next_epoch != self.config.autoencoder_epochs:  # same phase: the optimiser's moments carry on
            self._start_phase(next_epoch < self.config.autoencoder_epochs)
            self._optimizer().load_state_dict(training_state["optimizer"])

    def metadata(self) -> dict[str, str]:
        return {"in_chans": str(self.model.in_chans), "width": str(self.model.width)}


def _batch(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(len(images), (size,), generator=generator, device=images.device)
    return images[index].float() / 255


# ---- Loading ----------------------------------------------------------------------------------


def load_style_model(reference: str, device: torch.device | str = "cpu") -> AdaINModel:
    """An AdaIN model by name (yours first, then pretrained/) or .safetensors path, in eval mode."""
    path = resolve_generator(reference, "adain")
    metadata = read_metadata(path, "adain")
    model = AdaINModel(int(metadata["in_chans"]), int(metadata["width"]))
    try:
        model.load_state_dict(read_generator(path)[0])
    except RuntimeError as err:
        raise RunError(f"style model {path} does not fit the AdaIN architecture ({err})") from None
    return model.to(device).eval()
