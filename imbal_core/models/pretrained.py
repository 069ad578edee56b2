"""Starting weights for a backbone: a timm pretrained tag or a local file, loaded the way timm loads them.

- A tag (`resnet18.a1_in1k`) goes through timm's own loading code, and so through the Hugging Face hub's: online it
  downloads once into the hub cache; offline (`HF_HUB_OFFLINE=1`) it reads that cache.
- A file (`.safetensors`, or a torch state dict read with `weights_only=True`) is given with the architecture named
  by the backbone; timm reads it the way it reads a hub file (its `state_dict` / `model` keys, a `module.` prefix).

Both are loaded strictly: a missing key, an unexpected one or a shape that differs is an error that names the
keys, never a silent partly random start. The input normalisation follows the weights' pretrained config.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import constants as hub_constants
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ..errors import ConfigError, not_a_file_phrase

WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
UNTRAINED_NORMALISATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # from scratch: [0, 1] -> [-1, 1]
SHOWN_KEYS = 8  # key names listed in a mismatch message


@dataclass(frozen=True)
class WeightsRecord:
    """Where a run's starting weights came from (kept in the run folder as weights.json)."""

    weights: str  # what was asked for: a tag or a file
    source: str  # "hf-hub:timm/resnet18.a1_in1k", "url:https://...", or "file"
    file: str  # the file that was read (in the hub cache, the torch hub cache, or the user's)
    sha256: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_weights_file(pretrained: str) -> bool:
    """A path to a file of weights, rather than a timm tag such as `resnet18.a1_in1k`."""
    return pretrained.lower().endswith(WEIGHT_FILE_SUFFIXES) or "/" in pretrained or "\\" in pretrained


def weights_label(pretrained: str | None) -> str | None:
    """A short label for a run group's starting weights: "ImageNet (a1_in1k)" for a timm ImageNet tag, the tag for
    another, "weights <file name>" for a file; None from scratch."""
    if pretrained is None:
        return None
    if is_weights_file(pretrained):
        return f"weights {Path(pretrained).name}"
    tag = pretrained.split(".", 1)[-1]
    return f"ImageNet ({tag})" if re.search(r"in(1|12|21|22)k", tag) else f"pretrained ({tag})"


def check_pretrained(timm_name: str, pretrained: str, backbone: str) -> None:
    """Raise ConfigError when `pretrained` cannot be meant for `backbone` (no file is read, nothing is fetched)."""
    if is_weights_file(pretrained):
        if not pretrained.lower().endswith(WEIGHT_FILE_SUFFIXES):
            raise ConfigError(
                f"pretrained weights file {pretrained!r} must end in one of {', '.join(WEIGHT_FILE_SUFFIXES)} "
                "(safetensors, or a torch state dict)"
            )
        return
    cfg = _tag_config(pretrained)
    if cfg is None:
        raise ConfigError(
            f"{pretrained!r} is neither a timm pretrained tag nor a weights file; give a tag such as "
            f"resnet18.a1_in1k (timm.list_pretrained('resnet18*') lists them) or a path to a .safetensors / .pth file"
        )
    if cfg.architecture != timm_name or backbone != timm_name:
        raise ConfigError(
            f"pretrained tag {pretrained!r} holds weights for backbone {cfg.architecture!r}, not {backbone!r}: "
            f"use --backbone {cfg.architecture} (or leave --backbone out)"
            + (" — the reduced-width presets have no published weights" if backbone != timm_name else "")
        )


def _tag_config(tag: str) -> Any:
    """timm's pretrained config of a tag `arch.tag`, or None when timm knows no such tag."""
    if "." not in tag:
        return None
    try:
        return timm.models.get_pretrained_cfg(tag)
    except RuntimeError:  # "Invalid pretrained tag"
        return None


def input_normalisation(timm_name: str, pretrained: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of 3 channels the backbone expects: its tag's pretrained config; for a file, the
    architecture's default pretrained config (ImageNet for timm's CNNs); from scratch, mean 0.5 and std 0.5."""
    if pretrained is None:
        return UNTRAINED_NORMALISATION
    try:
        cfg = timm.models.get_pretrained_cfg(timm_name if is_weights_file(pretrained) else pretrained)
    except RuntimeError:  # an architecture timm has no pretrained config for
        cfg = None
    if cfg is None:
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    return tuple(cfg.mean), tuple(cfg.std)


def create_pretrained_backbone(timm_name: str, pretrained: str, in_chans: int, **kwargs: Any) -> nn.Module:
    """A timm backbone (no classifier, no pooling) holding the weights of `pretrained`.

    With HF_HUB_OFFLINE=1, timm's hub code reads the tag's weights from the hub cache. Online, a tag already in the
    cache (or torch's hub cache) is read from there, so a machine without a network need not wait for the hub's
    retries; otherwise timm downloads it. The weights' classifier is loaded too (so every key is checked) and then
    dropped. timm adapts the first convolution to `in_chans` as it does for its own weights.
    """
    name, overlay, num_classes = pretrained, {}, {}
    if is_weights_file(pretrained):
        state = _read_weights_file(Path(pretrained))
        classes = _classifier_size(timm_name, state)
        name, overlay, num_classes = timm_name, {"state_dict": state, "num_classes": classes}, {"num_classes": classes}
    elif not hub_constants.HF_HUB_OFFLINE and (cached := cached_weights_file(pretrained)) is not None:
        overlay = {"file": str(cached[0])}
    try:
        net = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=overlay or None, in_chans=in_chans, **num_classes, **kwargs
        )
    except RuntimeError as err:
        if "Error(s) in loading state_dict" in str(err):
            raise ConfigError(_mismatch_message(pretrained, timm_name, str(err))) from None
        raise ConfigError(_unreachable_message(pretrained, timm_name, err)) from None
    except Exception as err:  # the hub's and urllib's errors differ by version; each means "not here"
        raise ConfigError(_unreachable_message(pretrained, timm_name, err)) from None
    net.reset_classifier(0, "")
    return net


def weights_record(timm_name: str, pretrained: str) -> WeightsRecord:
    """Where the weights of `pretrained` were read from, and their SHA-256 (call after loading them)."""
    mean, std = input_normalisation(timm_name, pretrained)
    found = (Path(pretrained), "file") if is_weights_file(pretrained) else cached_weights_file(pretrained)
    if found is None:
        raise ConfigError(f"the weights of {pretrained!r} were loaded, but their file is not in the hub cache")
    return WeightsRecord(pretrained, found[1], str(found[0]), _sha256(found[0]), mean, std)


def cached_weights_file(tag: str) -> tuple[Path, str] | None:
    """(file, source) of a tag's weights in the Hugging Face hub cache, or torch's hub cache for a URL source;
    None when neither holds them."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(tag)
    assert cfg is not None, "check_pretrained has accepted the tag"
    if cfg.hf_hub_id:
        for filename in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found), f"hf-hub:{cfg.hf_hub_id}"
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if path.is_file():
            return path, f"url:{cfg.url}"
    return None


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(
            f"pretrained weights file {path} {not_a_file_phrase(path)}; give an existing .safetensors or .pth file, "
            "or a timm tag such as resnet18.a1_in1k"
        )
    try:
        return timm.models.load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as err:  # safetensors, pickle (weights_only refuses code) and zip errors differ
        raise ConfigError(
            f"pretrained weights file {path} cannot be read as weights ({type(err).__name__}: {err}); give a "
            ".safetensors file or a torch state dict saved with torch.save(model.state_dict(), ...)"
        ) from None


def _classifier_size(timm_name: str, state: dict[str, torch.Tensor]) -> int:
    """The number of classes of the file's classifier (0 when it has none), so timm loads every key strictly."""
    cfg = timm.models.get_pretrained_cfg(timm_name)
    classifier = (cfg.classifier if cfg is not None else None) or "fc"
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    weight = state.get(f"{names[0]}.weight")
    return int(weight.shape[0]) if weight is not None else 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mismatch_message(pretrained: str, timm_name: str, error: str) -> str:
    """torch's strict-loading error, each kind of mismatch with its first key names and a count."""
    parts = []
    for kind, pattern in (
        ("missing", r"Missing key\(s\) in state_dict: (.*?)\.?\s*$"),
        ("unexpected", r"Unexpected key\(s\) in state_dict: (.*?)\.?\s*$"),
        ("of another shape", r"size mismatch for ([^:]+):"),
    ):
        keys = [k for match in re.findall(pattern, error, flags=re.M) for k in re.findall(r'"?([\w.]+)"?', match)]
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            parts.append(f"{len(keys)} key(s) {kind}: {', '.join(keys[:SHOWN_KEYS])}{more}")
    return (
        f"the weights in {pretrained!r} do not match backbone {timm_name!r} ({'; '.join(parts) or error[:500]}). "
        "Name the architecture the weights were saved from with --backbone, or use a timm tag of this architecture"
    )


def _unreachable_message(pretrained: str, timm_name: str, err: Exception) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return (
        f"pretrained weights {pretrained!r} could not be loaded ({type(err).__name__}: {str(err)[:300]}). Two ways: "
        f"(1) fill the Hugging Face cache ({HF_HUB_CACHE}) once on a machine online, e.g. "
        f"python -c \"import timm; timm.create_model('{pretrained}', pretrained=True)\", then copy it here and "
        "set HF_HUB_OFFLINE=1; or (2) give a local file: --pretrained path/to/weights.safetensors "
        f"--backbone {timm_name}"
    )
