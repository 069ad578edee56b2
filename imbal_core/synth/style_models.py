"""Training, saving and finding AdaIN style models (one safetensors file each, with its recipe).

Training has two phases, both on the training split only:
1. autoencoder: encoder + decoder learn to reconstruct images (we have no pretrained VGG, so the
   encoder's features are learnt from the data itself);
2. AdaIN: the encoder is frozen and defines the losses; the decoder learns to turn
   AdaIN(content features, style features) into an image whose deepest features match that
   target (content loss) and whose channel statistics at every encoder stage match the style's
   (style loss). A reconstruction term keeps strength 0 close to the content image.

Models live in $IMBAL_LAB_HOME/style_models/ (yours) and pretrained/style_models/ (shipped).
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..data import load_dataset
from ..errors import ConfigError, RunError
from ..utils import REPO_ROOT, atomic_path, lab_home, seed_everything, select_device
from .style import AdaINModel, adain, channel_stats

PRETRAINED_STYLE_DIR = REPO_ROOT / "pretrained" / "style_models"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def user_style_dir() -> Path:
    return lab_home() / "style_models"


@dataclass
class StyleTrainConfig:
    """Everything that defines an AdaIN model; stored in the model file's metadata."""

    data: str = "synthetic"
    data_path: str | None = None
    data_options: dict[str, Any] | None = None
    image_size: int = 28
    split_seed: int = 0
    width: int = 16
    epochs: int = 10
    autoencoder_epochs: int = 4  # of `epochs`; the rest train the decoder for AdaIN
    batch_size: int = 64
    lr: float = 1e-3
    style_weight: float = 5.0
    reconstruction_weight: float = 1.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and 1 <= self.epochs <= 1000, "epochs", "an integer in [1, 1000]", self.epochs),
            (isinstance(self.autoencoder_epochs, int) and 0 <= self.autoencoder_epochs < self.epochs,
             "autoencoder_epochs", f"an integer in [0, epochs - 1 = {self.epochs - 1}]", self.autoencoder_epochs),
            (isinstance(self.width, int) and 4 <= self.width <= 128, "width", "an integer in [4, 128]", self.width),
            (isinstance(self.batch_size, int) and 2 <= self.batch_size <= 4096, "batch_size", "an integer in [2, 4096]",
             self.batch_size),
            (self.lr > 0 and self.style_weight >= 0 and self.reconstruction_weight >= 0, "lr / loss weights",
             "lr > 0 and weights >= 0", (self.lr, self.style_weight, self.reconstruction_weight)),
            (isinstance(self.image_size, int) and 16 <= self.image_size <= 512, "image_size", "an integer in [16, 512]",
             self.image_size),
        ]
        for ok, name, expected, got in checks:
            if not ok:
                raise ConfigError(f"{name} must be {expected}; got {got!r}")

    def default_name(self) -> str:
        return f"adain_{self.data}_{self.image_size}"


@dataclass
class StyleModelInfo:
    name: str
    path: Path
    source: str  # "yours" or "pretrained"
    config: dict[str, Any]
    history: list[dict[str, float]]
    status: str  # "finished", or "partial" for a stopped training (usable, fewer epochs)


# ---- Losses -----------------------------------------------------------------------------------

def style_loss(generated: list[torch.Tensor], style: list[torch.Tensor]) -> torch.Tensor:
    """Sum over encoder stages of the squared distance of channel means and of stds."""
    total = generated[0].new_zeros(())
    for g, s in zip(generated, style):
        mean_g, std_g = channel_stats(g)
        mean_s, std_s = channel_stats(s)
        total = total + F.mse_loss(mean_g, mean_s) + F.mse_loss(std_g, std_s)
    return total


def adain_losses(model: AdaINModel, content: torch.Tensor, style: torch.Tensor, config: StyleTrainConfig
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
    losses["total"] = (losses["content"] + config.style_weight * losses["style"]
                       + config.reconstruction_weight * losses["reconstruction"])
    return losses


# ---- Training ---------------------------------------------------------------------------------

ProgressFn = Callable[[dict[str, Any]], None]


def train_style_model(config: StyleTrainConfig, name: str | None = None, out_dir: Path | None = None,
                      progress: ProgressFn | None = None, stop_event: threading.Event | None = None,
                      resume: bool = False) -> Path:
    """Train an AdaIN model on the training split; save it after every epoch; return its path.

    A stopped training leaves the last completed epoch's model (status "partial", usable);
    `resume=True` continues it from there (with a fresh optimiser).
    """
    name = name or config.default_name()
    check_name(name)
    path = (out_dir or user_style_dir()) / f"{name}.safetensors"
    progress = progress or (lambda event: None)
    stop_event = stop_event or threading.Event()
    device = select_device(config.device)
    seed_everything(config.seed)
    images = _training_images(config, device)
    model = AdaINModel(images.shape[1], config.width).to(device)
    start_epoch, history = 0, []
    if resume and path.exists():
        saved = load_style_model_info(path, source="yours")
        if saved.config != asdict(config):
            raise ConfigError(f"style model {name!r} was trained with another recipe; resume it with the same options "
                              "or choose a new name")
        model.load_state_dict(_read_weights(path, device))
        history = saved.history
        start_epoch = len(history)
    steps = max(1, len(images) // config.batch_size)
    for epoch in range(start_epoch, config.epochs):
        generator = torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)
        autoencoder_phase = epoch < config.autoencoder_epochs
        if epoch in (start_epoch, config.autoencoder_epochs):
            model.encoder.requires_grad_(autoencoder_phase)
            trained = model.parameters() if autoencoder_phase else model.decoder.parameters()
            optimizer = torch.optim.Adam([p for p in trained if p.requires_grad], lr=config.lr)
        model.train()
        sums: dict[str, float] = {}
        for step in range(steps):
            if stop_event.is_set():
                progress({"event": "stopped", "epoch": epoch})
                return path
            content = _batch(images, config.batch_size, generator)
            if autoencoder_phase:
                features = model.encoder(content)[-1]
                losses = {"reconstruction": F.mse_loss(model.decoder(features, content.shape[-2:]), content)}
                losses["total"] = losses["reconstruction"]
            else:
                losses = adain_losses(model, content, _batch(images, config.batch_size, generator), config)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            if step % 10 == 0 or step == steps - 1:
                progress({"event": "step", "epoch": epoch, "epochs": config.epochs, "step": step + 1, "steps": steps,
                          "phase": "autoencoder" if autoencoder_phase else "adain", "loss": losses["total"].item()})
        history.append({"epoch": epoch, "phase": "autoencoder" if autoencoder_phase else "adain",
                        **{key: value / steps for key, value in sums.items()}})
        save_style_model(path, model, config, history)
        progress({"event": "epoch", **history[-1], "epochs": config.epochs})
    progress({"event": "finished", "path": str(path)})
    return path


def _training_images(config: StyleTrainConfig, device: torch.device) -> torch.Tensor:
    dataset = load_dataset(config.data, path=config.data_path, image_size=config.image_size,
                           split_seed=config.split_seed, **(config.data_options or {}))
    return torch.from_numpy(dataset.train.images).permute(0, 3, 1, 2).contiguous().to(device)


def _batch(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(len(images), (size,), generator=generator, device=images.device)
    return images[index].float() / 255


# ---- Files ------------------------------------------------------------------------------------

def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"style model name {name!r} may only use letters, digits, '_', '-' and '.' (1-80 characters)")


def save_style_model(path: Path, model: AdaINModel, config: StyleTrainConfig, history: list[dict]) -> None:
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    metadata = {"kind": "adain", "in_chans": str(model.in_chans), "width": str(model.width),
                "config": json.dumps(asdict(config)), "history": json.dumps(history),
                "status": "finished" if len(history) == config.epochs else "partial"}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise RunError(f"style model {path} cannot be read ({err}); it is damaged or not a safetensors file") from None
    if metadata.get("kind") != "adain":
        raise RunError(f"{path} is not an AdaIN style model of Imbalance Lab (no 'kind: adain' in its metadata)")
    return metadata


def _read_weights(path: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def load_style_model_info(path: Path, source: str) -> StyleModelInfo:
    metadata = _read_metadata(path)
    return StyleModelInfo(path.stem, path, source, json.loads(metadata["config"]), json.loads(metadata["history"]),
                          metadata["status"])


def list_style_models() -> list[StyleModelInfo]:
    """Your models first, then the shipped ones; unreadable files are skipped."""
    found = []
    for folder, source in ((user_style_dir(), "yours"), (PRETRAINED_STYLE_DIR, "pretrained")):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                found.append(load_style_model_info(path, source))
            except RunError:
                continue
    return found


def resolve_style_model(reference: str) -> Path:
    """A model name (yours first, then pretrained/) or a path to a .safetensors file."""
    if not reference:
        raise ConfigError("no style model given: name one (see `python -m imbal_core style-models`) or train one with "
                          "`python -m imbal_core style-train`")
    candidates = [Path(reference).expanduser()] if reference.endswith(".safetensors") else []
    candidates += [user_style_dir() / f"{reference}.safetensors", PRETRAINED_STYLE_DIR / f"{reference}.safetensors"]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted({info.name for info in list_style_models()})
    raise ConfigError(f"style model {reference!r} not found; known models: {known or 'none'}. Train one with "
                      "`python -m imbal_core style-train --data ...`")


def load_style_model(reference: str, device: torch.device | str = "cpu") -> AdaINModel:
    path = resolve_style_model(reference)
    metadata = _read_metadata(path)
    model = AdaINModel(int(metadata["in_chans"]), int(metadata["width"]))
    try:
        model.load_state_dict(_read_weights(path, "cpu"))
    except RuntimeError as err:
        raise RunError(f"style model {path} does not fit the AdaIN architecture ({err})") from None
    return model.to(device).eval()


def models_for(data: str, image_size: int) -> list[StyleModelInfo]:
    """The models trained on this data source at this size (any path or split)."""
    return [info for info in list_style_models()
            if info.config.get("data") == data and info.config.get("image_size") == image_size]


def training_summary(info: StyleModelInfo) -> str:
    last = info.history[-1] if info.history else {}
    losses = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float))
    return f"{len(info.history)}/{info.config['epochs']} epochs ({info.status}); last epoch: {losses or 'n/a'}"
