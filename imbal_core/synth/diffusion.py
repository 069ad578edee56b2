"""Class-conditional diffusion for small medical images (IOIS's generator), built on `diffusers`.

- Model: a `diffusers.UNet2DModel` built from a config (never downloaded), three resolution
  levels (two downsamplings: 28 px -> 14 -> 7) with self-attention at the lowest one, and a class
  embedding with one extra "null" label for classifier-free guidance.
- Training: DDPM noise schedule (cosine by default), v-prediction (the UNet predicts
  v = sqrt(a) eps - sqrt(1 - a) x0; epsilon prediction is a setting), labels replaced by the null
  label with probability `label_dropout`, random flips, EMA of the weights (sampling uses it).
- Latent space (`latent_channels` > 0, for 64 px and up): a small KL autoencoder (diffusers
  `AutoencoderKL` from a config) first learns to map images to latents 4x smaller a side
  (64 px -> 16x16x4) for `autoencoder_epochs`; the UNet then learns on those latents, scaled to
  unit variance. A denoising step on 16x16 latents costs about a thirtieth of one on 64 px pixels
  (benchmarks/generator_cost.py), which is what makes 64 px trainable on a CPU.
- Sampling: DDIM (`steps`, 25 by default, deterministic: eta = 0) with guidance
  out = out_null + s (out_class - out_null); or SDEdit: a real image of the class, noised to
  `strength` of the schedule, then denoised from there (cheaper and closer to the data).
- bf16 autocast on CUDA; float32 on CPU. Batched on the model's device.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import nn

from ..errors import ConfigError, RunError, require_all
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

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
# v-prediction by default: with epsilon prediction, x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) multiplies
# the network's error by up to 1 / sqrt(a) at the noisy end, and a small model's 25-step DDIM samples
# came out with saturated colour casts (benchmarks/diffusion_prediction.py measures both kinds).
PREDICTIONS = ("v_prediction", "epsilon")
SAMPLE_CHUNK = 256  # images denoised at once
LATENT_FACTOR = 4  # the autoencoder halves the image twice
ENCODE_CHUNK = 256
CODEC_PREFIX = "codec."  # the autoencoder's weights in a latent model's file


@dataclass
class DiffusionTrainConfig(GeneratorConfig):
    """Everything that defines a diffusion model; stored in the model file's metadata."""

    kind = "diffusion"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 16  # channels of the first level; the next two have 2x
    layers_per_block: int = 1
    timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    label_dropout: float = 0.1
    ema_decay: float = 0.995
    prediction: str = "v_prediction"
    latent_channels: int = 0  # 0: the UNet denoises pixels; > 0: the latents of an autoencoder trained first
    autoencoder_epochs: int = 0  # of `epochs` (latent space only); the rest train the UNet
    autoencoder_width: int = 16  # channels of the autoencoder's first level (x2, x4 below)
    autoencoder_batch_size: int = 32
    autoencoder_lr: float = 1e-3
    kl_weight: float = 1e-6  # small, as in latent diffusion: latents stay informative, their scale is fixed later

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        # Files made before `prediction` was a setting were all trained to predict the noise.
        return super().from_dict({"prediction": "epsilon", **values})

    def __post_init__(self) -> None:
        super().__post_init__()
        latent = isinstance(self.latent_channels, int) and self.latent_channels > 0
        checks = [
            (
                isinstance(self.latent_channels, int) and 0 <= self.latent_channels <= 16,
                "latent_channels",
                "an integer in [0, 16] (0: pixel space)",
                self.latent_channels,
            ),
            (
                self.image_size % 16 == 0 and self.image_size <= 256
                if latent
                else self.image_size % 4 == 0 and self.image_size <= 128,
                "image_size",
                "a multiple of 16 up to 256 in latent space (the autoencoder and the UNet each halve it twice), "
                "e.g. 64 or 128"
                if latent
                else "a multiple of 4 up to 128 (the UNet halves it twice), e.g. 28, 32 or 64",
                self.image_size,
            ),
            (
                isinstance(self.autoencoder_epochs, int)
                and (1 <= self.autoencoder_epochs < self.epochs if latent else self.autoencoder_epochs == 0),
                "autoencoder_epochs",
                f"an integer in [1, epochs - 1 = {self.epochs - 1}] in latent space, 0 in pixel space",
                self.autoencoder_epochs,
            ),
            (
                isinstance(self.autoencoder_width, int)
                and 8 <= self.autoencoder_width <= 128
                and self.autoencoder_width % 8 == 0,
                "autoencoder_width",
                "a multiple of 8 in [8, 128]",
                self.autoencoder_width,
            ),
            (
                isinstance(self.autoencoder_batch_size, int) and 2 <= self.autoencoder_batch_size <= 4096,
                "autoencoder_batch_size",
                "an integer in [2, 4096]",
                self.autoencoder_batch_size,
            ),
            (
                isinstance(self.autoencoder_lr, (int, float)) and 0 < self.autoencoder_lr < 1,
                "autoencoder_lr",
                "a number in (0, 1)",
                self.autoencoder_lr,
            ),
            (
                isinstance(self.kl_weight, (int, float)) and 0 <= self.kl_weight <= 1,
                "kl_weight",
                "a number in [0, 1]",
                self.kl_weight,
            ),
            (
                isinstance(self.width, int) and 8 <= self.width <= 256 and self.width % 8 == 0,
                "width",
                "a multiple of 8 in [8, 256]",
                self.width,
            ),
            (
                isinstance(self.layers_per_block, int) and 1 <= self.layers_per_block <= 4,
                "layers_per_block",
                "an integer in [1, 4]",
                self.layers_per_block,
            ),
            (
                isinstance(self.timesteps, int) and 10 <= self.timesteps <= 4000,
                "timesteps",
                "an integer in [10, 4000]",
                self.timesteps,
            ),
            (
                self.beta_schedule in BETA_SCHEDULES,
                "beta_schedule",
                f"one of {list(BETA_SCHEDULES)}",
                self.beta_schedule,
            ),
            (0.0 <= self.label_dropout < 1.0, "label_dropout", "in [0, 1)", self.label_dropout),
            (0.0 <= self.ema_decay < 1.0, "ema_decay", "in [0, 1)", self.ema_decay),
            (self.prediction in PREDICTIONS, "prediction", f"one of {list(PREDICTIONS)}", self.prediction),
        ]
        require_all(checks)


def build_unet(in_chans: int, num_classes: int, image_size: int, width: int, layers_per_block: int) -> UNet2DModel:
    """The class-conditional UNet; class index `num_classes` is the null (unconditional) label."""
    return UNet2DModel(
        sample_size=image_size,
        in_channels=in_chans,
        out_channels=in_chans,
        layers_per_block=layers_per_block,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_classes + 1,
        norm_num_groups=8,
    )


class LatentCodec(nn.Module):
    """Images <-> latents `LATENT_FACTOR` times smaller a side: a KL autoencoder built from a config (nothing
    downloaded). Latents are multiplied by `scale` (1 / their standard deviation on the training images, set when
    the UNet's training starts) so that the noise schedule meets unit-variance data, as in latent diffusion."""

    def __init__(self, in_chans: int, image_size: int, latent_channels: int, width: int) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.autoencoder = AutoencoderKL(
            in_channels=in_chans,
            out_channels=in_chans,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(width, 2 * width, 4 * width),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=8,
            sample_size=image_size,
            mid_block_add_attention=False,  # at 16x16 convolutions see enough; attention would cost CPU time
        )
        self.register_buffer("scale", torch.ones(()))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> scaled latents (the posterior's mean: deterministic)."""
        return self.autoencoder.encode(to_model_range(images)).latent_dist.mode() * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> uint8 images."""
        return to_uint8(self.autoencoder.decode(latents / self.scale).sample)

    def loss(self, x0: torch.Tensor, generator: torch.Generator, kl_weight: float) -> dict[str, torch.Tensor]:
        """L1 reconstruction of images in [-1, 1] through a sampled latent, plus the weighted KL to N(0, 1)."""
        posterior = self.autoencoder.encode(x0).latent_dist
        reconstruction = F.l1_loss(self.autoencoder.decode(posterior.sample(generator)).sample, x0)
        kl = posterior.kl().mean() / x0[0].numel()  # per pixel value, as the L1 term
        return {"loss": reconstruction + kl_weight * kl, "reconstruction": reconstruction, "kl": kl}


class DiffusionModel(nn.Module):
    """A trained UNet with its noise schedule (and, in latent space, its autoencoder): `sample(labels, ...)` returns
    uint8 images."""

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        image_size: int,
        width: int,
        layers_per_block: int,
        timesteps: int,
        beta_schedule: str,
        class_names: list[str] | None = None,
        label_dropout: float = 0.1,
        prediction: str = "v_prediction",
        latent_channels: int = 0,
        autoencoder_width: int = 16,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes, self.image_size = in_chans, num_classes, image_size
        self.label_dropout = label_dropout  # 0: the null label was never trained, so no guidance
        self.class_names = class_names or [str(c) for c in range(num_classes)]
        self.codec = LatentCodec(in_chans, image_size, latent_channels, autoencoder_width) if latent_channels else None
        # (channels, size) of what the UNet denoises: pixels, or latents
        self.space = (latent_channels, image_size // LATENT_FACTOR) if latent_channels else (in_chans, image_size)
        self.unet = build_unet(self.space[0], num_classes, self.space[1], width, layers_per_block)
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=timesteps, beta_schedule=beta_schedule, clip_sample=False, prediction_type=prediction
        )

    def ddim_scheduler(self, steps: int) -> DDIMScheduler:
        """DDIM over `steps` of the training schedule, x0 predictions clipped to the data range.

        "trailing" spacing: the first step is T - 1, where pure noise is the right start (the default
        "leading" starts at e.g. 960 of 1000, or 800 with 5 steps, where the image still carries signal).
        """
        scheduler = DDIMScheduler.from_config(
            # latents have no fixed range: only pixels are clipped
            self.train_scheduler.config,
            clip_sample=self.codec is None,
            timestep_spacing="trailing",
        )
        scheduler.set_timesteps(steps)
        return scheduler

    @property
    def null_label(self) -> int:
        return self.num_classes

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> what the UNet denoises (pixels in [-1, 1], or scaled latents)."""
        return to_model_range(images) if self.codec is None else self.codec.encode(images)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """What the UNet denoises -> uint8 images."""
        return to_uint8(x) if self.codec is None else self.codec.decode(x)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The UNet's output: v or the noise, as the schedule's `prediction_type` says."""
        with _autocast(noisy.device):
            return self.unet(noisy, timesteps, class_labels=labels).sample.float()

    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        steps: int = 25,
        guidance: float = 2.0,
        generator: torch.Generator | None = None,
        init_images: torch.Tensor | None = None,
        strength: float = 1.0,
        trajectory_at: tuple[int, ...] = (),
        progress: Callable[[float], None] | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Generate one image per label (uint8, (N, C, H, W), on the model's device).

        `init_images` (uint8, one per label) with `strength` < 1 is SDEdit: start from them noised
        to that share of the schedule. `trajectory_at` lists step numbers (0 = the starting noise)
        whose x_t are returned as uint8, for the denoising strip. Guidance 1 needs no null pass.
        `progress` is called with the share of the work done (0-1) after each denoising step.
        """
        _check_sampling(steps, guidance, strength, init_images is not None)
        if steps > self.train_scheduler.config.num_train_timesteps:
            raise ConfigError(
                f"DDIM steps ({steps}) cannot exceed the model's {self.train_scheduler.config.num_train_timesteps} "
                "training timesteps"
            )
        if guidance != 1.0 and self.label_dropout == 0:
            raise ConfigError(
                "this model was trained without label dropout, so it has no unconditional mode: use "
                "guidance 1 (none), or train one with --label-dropout > 0"
            )
        device = next(self.unet.parameters()).device
        images: list[torch.Tensor] = []
        trajectory: dict[int, list[torch.Tensor]] = {}
        for start in range(0, len(labels), SAMPLE_CHUNK):
            part = slice(start, start + SAMPLE_CHUNK)
            init = None if init_images is None else init_images[part].to(device)

            def chunk_progress(share: float, done: int = start, size: int = len(labels[part])) -> None:
                if progress is not None:
                    progress((done + share * size) / len(labels))

            made, strip = self._sample_chunk(
                labels[part].to(device), steps, guidance, generator, init, strength, trajectory_at, chunk_progress
            )
            images.append(made)
            for step, x in strip.items():
                trajectory.setdefault(step, []).append(x)
        out = (
            torch.cat(images)
            if images
            else torch.zeros(0, self.in_chans, self.image_size, self.image_size, dtype=torch.uint8, device=device)
        )
        return out, {step: torch.cat(xs) for step, xs in trajectory.items()}

    def _sample_chunk(
        self,
        labels: torch.Tensor,
        steps: int,
        guidance: float,
        generator: torch.Generator | None,
        init: torch.Tensor | None,
        strength: float,
        trajectory_at: tuple[int, ...],
        progress: Callable[[float], None],
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        scheduler = self.ddim_scheduler(steps)
        timesteps = scheduler.timesteps
        device = labels.device
        shape = (len(labels), self.space[0], self.space[1], self.space[1])
        noise = torch.randn(shape, generator=generator, device=device if generator is None else generator.device)
        noise = noise.to(device)
        if init is not None and strength < 1.0:  # SDEdit: skip the first (1 - strength) of the steps
            timesteps = timesteps[steps - max(1, round(steps * strength)) :]
            x = scheduler.add_noise(self.encode(init), noise, timesteps[:1].repeat(len(labels)))
        else:
            x = noise * scheduler.init_noise_sigma
        strip = {0: self.decode(x)} if 0 in trajectory_at else {}
        null = torch.full_like(labels, self.null_label)
        for i, t in enumerate(timesteps, start=1):
            t_batch = t.to(device).repeat(len(labels))
            if guidance == 1.0:
                out = self.predict(x, t_batch, labels)
            else:  # guidance is linear, so it is the same in v or in noise
                out_class, out_null = self.predict(
                    torch.cat([x, x]), t_batch.repeat(2), torch.cat([labels, null])
                ).chunk(2)
                out = out_null + guidance * (out_class - out_null)
            x = scheduler.step(out, t, x, eta=0.0).prev_sample
            if i in trajectory_at:
                strip[i] = self.decode(x)
            progress(i / len(timesteps))
        return self.decode(x), strip


def sdedit_starts(
    images: torch.Tensor, labels: torch.Tensor, wanted: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One random real image (uint8) of each wanted label's class, as SDEdit's starting points."""
    labels_cpu, wanted_cpu = labels.cpu(), wanted.cpu()
    picks = torch.empty(len(wanted_cpu), dtype=torch.long)
    for c in wanted_cpu.unique().tolist():
        own = torch.nonzero(labels_cpu == c).flatten()
        if len(own) == 0:
            raise ConfigError(f"class {c} has no training image to start SDEdit from; use strength 1 (pure noise)")
        slots = torch.nonzero(wanted_cpu == c).flatten()
        picks[slots] = own[torch.randint(len(own), (len(slots),), generator=generator)]
    return images[picks.to(images.device)]


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _check_sampling(steps: int, guidance: float, strength: float, has_init: bool) -> None:
    if not isinstance(steps, int) or not 1 <= steps <= 1000:
        raise ConfigError(f"DDIM steps must be an integer in [1, 1000]; got {steps!r}")
    if not 0.0 <= guidance <= 20.0:
        raise ConfigError(f"guidance scale must be in [0, 20] (1 = no guidance); got {guidance}")
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"SDEdit strength must be in (0, 1] (1 = start from pure noise); got {strength}")
    if strength < 1.0 and not has_init:
        raise ConfigError("SDEdit (strength < 1) needs init_images: one real image per label")


# ---- Training ---------------------------------------------------------------------------------


@GENERATOR_KINDS.register("diffusion")
class DiffusionTrainer(GeneratorTrainer):
    """Pixel space: every epoch trains the UNet. Latent space: the first `autoencoder_epochs` train the autoencoder,
    then the training images are encoded once (in their four flips) and the UNet learns on those latents."""

    config_class = DiffusionTrainConfig

    def __init__(self, config: DiffusionTrainConfig, split: TrainingSplit, device: torch.device) -> None:
        self.config, self.images, self.labels, self.device = config, split.images, split.labels, device
        self.model = DiffusionModel(
            split.images.shape[1],
            split.num_classes,
            config.image_size,
            config.width,
            config.layers_per_block,
            config.timesteps,
            config.beta_schedule,
            split.class_names,
            config.label_dropout,
            config.prediction,
            config.latent_channels,
            config.autoencoder_width,
        ).to(device)
        self.ema = copy.deepcopy(self.model.unet).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.unet.parameters(), lr=config.lr, weight_decay=0.0)
        self.steps = max(1, len(split.images) // config.batch_size)
        codec = self.model.codec
        self.codec_optimizer = (
            None if codec is None else torch.optim.AdamW(codec.parameters(), lr=config.autoencoder_lr)
        )
        self.codec_steps = max(1, len(split.images) // config.autoencoder_batch_size)
        self.latents: torch.Tensor | None = None  # (4 flips, N, C, h, w), made when the UNet's training starts

    def train_epoch(self, epoch: int, stop_event: threading.Event, progress: ProgressFn) -> dict[str, Any] | None:
        config = self.config
        generator = torch.Generator(device=self.device).manual_seed(config.seed * 100_003 + epoch)
        codec_phase = epoch < config.autoencoder_epochs
        if codec_phase:
            assert self.model.codec is not None and self.codec_optimizer is not None
            phase, steps, lr, epoch_in_phase = "autoencoder", self.codec_steps, config.autoencoder_lr, epoch
            optimizer, module, phase_epochs = self.codec_optimizer, self.model.codec, config.autoencoder_epochs
        else:
            self._encode_training_images()
            phase, steps, lr, epoch_in_phase = "denoising", self.steps, config.lr, epoch - config.autoencoder_epochs
            optimizer, module, phase_epochs = self.optimizer, self.model.unet, config.epochs - config.autoencoder_epochs
        module.train()
        sums: dict[str, float] = {}
        for step in range(steps):
            if stop_event.is_set():
                return None
            phase_step = epoch_in_phase * steps + step
            for group in optimizer.param_groups:  # short warm-up, then cosine decay, from the step alone
                group["lr"] = lr * _lr_factor(phase_step, phase_epochs * steps)
            losses = self._codec_loss(generator) if codec_phase else {"loss": self._loss(generator)}
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            if not codec_phase:
                self._update_ema(phase_step)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            if step % 10 == 0 or step == steps - 1:
                progress(
                    {
                        "event": "step",
                        "epoch": epoch,
                        "epochs": config.epochs,
                        "step": step + 1,
                        "steps": steps,
                        "phase": phase,
                        "loss": losses["loss"].item(),
                    }
                )
        means = {key: total / steps for key, total in sums.items()}
        # The autoencoder's loss is another quantity than the UNet's: it is recorded under its own name.
        return {f"autoencoder_{key}": value for key, value in means.items()} if codec_phase else means

    def _batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` random training images in [-1, 1] (or their latents), each flipped at random, and their labels."""
        device = self.device
        index = torch.randint(len(self.images), (n,), generator=generator, device=device)
        flips = torch.rand(n, 2, generator=generator, device=device) < 0.5  # dermoscopy, fundus: no up or left
        if self.latents is not None:  # encoded in all four flips beforehand
            return self.latents[flips[:, 0].long() + 2 * flips[:, 1].long(), index], self.labels[index]
        x0 = to_model_range(self.images[index])
        x0 = torch.where(flips[:, 0, None, None, None], x0.flip(-1), x0)
        x0 = torch.where(flips[:, 1, None, None, None], x0.flip(-2), x0)
        return x0, self.labels[index]

    def _codec_loss(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        assert self.model.codec is not None
        x0, _ = self._batch(self.config.autoencoder_batch_size, generator)
        return self.model.codec.loss(x0, generator, self.config.kl_weight)

    def _loss(self, generator: torch.Generator) -> torch.Tensor:
        """MSE of the prediction (v or noise) at uniformly drawn timesteps, labels dropped for guidance."""
        n, device = self.config.batch_size, self.device
        x0, labels = self._batch(n, generator)
        dropped = torch.rand(n, generator=generator, device=device) < self.config.label_dropout
        labels = torch.where(dropped, torch.full_like(labels, self.model.null_label), labels)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        t = torch.randint(self.config.timesteps, (n,), generator=generator, device=device)
        scheduler = self.model.train_scheduler
        noisy = scheduler.add_noise(x0, noise, t)
        target = noise if self.config.prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
        return F.mse_loss(self.model.predict(noisy, t, labels), target)

    @torch.no_grad()
    def _encode_training_images(self) -> None:
        """Latent space: encode the training images in their four flips once, and fix the latents' scale.

        The same weights give the same latents, so a resumed training recomputes exactly these.
        """
        codec = self.model.codec
        if codec is None or self.latents is not None:
            return
        codec.eval()
        codec.scale.fill_(1.0)
        variants = []
        for flip in range(4):
            chunks = []
            for start in range(0, len(self.images), ENCODE_CHUNK):
                images = self.images[start : start + ENCODE_CHUNK]
                images = images.flip(-1) if flip & 1 else images
                images = images.flip(-2) if flip & 2 else images
                chunks.append(codec.encode(images))
            variants.append(torch.cat(chunks))
        latents = torch.stack(variants)
        codec.scale.fill_(1.0 / latents.std().clamp_min(1e-6))
        self.latents = latents * codec.scale

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # Warm-up of the decay: early EMA weights are not dominated by the random initialisation.
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))
        for ema, live in zip(self.ema.parameters(), self.model.unet.parameters()):
            ema.lerp_(live, 1 - decay)
        for ema, live in zip(self.ema.buffers(), self.model.unet.buffers()):
            ema.copy_(live)

    def weights(self) -> dict[str, torch.Tensor]:
        codec = self.model.codec
        codec_weights = {} if codec is None else {CODEC_PREFIX + k: v for k, v in codec.state_dict().items()}
        return {**self.ema.state_dict(), **codec_weights}

    def training_state(self) -> dict[str, Any]:
        state = {"unet": self.model.unet.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.codec_optimizer is not None:
            state["codec_optimizer"] = self.codec_optimizer.state_dict()
        return state

    def load(self, weights: dict[str, torch.Tensor], training_state: dict[str, Any]) -> None:
        unet_weights, codec_weights = split_weights(weights)
        self.ema.load_state_dict(unet_weights)
        if self.model.codec is not None and self.codec_optimizer is not None:
            self.model.codec.load_state_dict(codec_weights)
            self.codec_optimizer.load_state_dict(training_state["codec_optimizer"])
        self.model.unet.load_state_dict(training_state["unet"])
        self.optimizer.load_state_dict(training_state["optimizer"])

    def metadata(self) -> dict[str, str]:
        model = self.model
        return {
            "in_chans": str(model.in_chans),
            "num_classes": str(model.num_classes),
            "class_names": "\n".join(model.class_names),
        }


def split_weights(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A file's weights -> (the UNet's, the autoencoder's; empty in pixel space)."""
    unet = {k: v for k, v in weights.items() if not k.startswith(CODEC_PREFIX)}
    codec = {k.removeprefix(CODEC_PREFIX): v for k, v in weights.items() if k.startswith(CODEC_PREFIX)}
    return unet, codec


def _lr_factor(step: int, total: int) -> float:
    warmup = min(100, total // 10)  # short trainings (small subsets) still reach the peak and decay
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


# ---- Loading ----------------------------------------------------------------------------------


def load_diffusion_model(reference: str, device: torch.device | str = "cpu") -> DiffusionModel:
    """A diffusion model by name (yours first, then pretrained/) or .safetensors path, in eval mode (EMA weights)."""
    path = resolve_generator(reference, "diffusion")
    metadata = read_metadata(path, "diffusion")
    config = DiffusionTrainConfig.from_dict(json.loads(metadata["config"]))
    trained_epochs = len(json.loads(metadata["history"]))
    if trained_epochs <= config.autoencoder_epochs:
        raise ConfigError(
            f"diffusion model {path.stem!r} has trained only its autoencoder so far ({trained_epochs} of "
            f"{config.autoencoder_epochs} epochs), not its UNet: resume its training before sampling from it"
        )
    model = DiffusionModel(
        int(metadata["in_chans"]),
        int(metadata["num_classes"]),
        config.image_size,
        config.width,
        config.layers_per_block,
        config.timesteps,
        config.beta_schedule,
        metadata["class_names"].split("\n"),
        config.label_dropout,
        config.prediction,
        config.latent_channels,
        config.autoencoder_width,
    )
    unet_weights, codec_weights = split_weights(read_generator(path)[0])
    try:
        model.unet.load_state_dict(unet_weights)
        if model.codec is not None:
            model.codec.load_state_dict(codec_weights)
    except RuntimeError as err:
        raise RunError(f"diffusion model {path} does not fit its recorded architecture ({err})") from None
    return model.to(device).eval()
