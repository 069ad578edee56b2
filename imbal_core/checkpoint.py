"""Checkpoints as one safetensors file, written atomically, with a digest verified on load.

Nested state (model, optimizer, method state) is flattened: tensors are stored under a
path-like key, and the rest of the structure is JSON in the file's metadata, with a pointer
in each tensor's place. One file means a checkpoint is never half-updated, and loading never
unpickles anything. Every weights file we write (checkpoints and generators) records a SHA-256
of its metadata and tensor bytes, so flipped or truncated bytes are an error, not a quietly
different model.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from .errors import RunError, not_a_file_phrase
from .utils import atomic_path

TENSOR = "__tensor__"
INT_KEYS = "__int_keys__"
DIGEST_KEY = "sha256"  # metadata entry: digest of the other metadata and of the tensor bytes
HEADER_SIZE_BYTES = 8  # a safetensors file starts with the header's length (little-endian u64)


def _split_file(blob: bytes) -> tuple[dict, bytes]:
    """(header, tensor bytes) of a safetensors file's content; the header holds the tensor index and metadata."""
    header_size = int.from_bytes(blob[:HEADER_SIZE_BYTES], "little")
    return json.loads(blob[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + header_size]), blob[
        HEADER_SIZE_BYTES + header_size :
    ]


def _digest(header: dict, data: bytes) -> str:
    """SHA-256 of the header (tensor names, dtypes, shapes, offsets, metadata) without the digest, and the data."""
    metadata = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != DIGEST_KEY}
    content = {**header, "__metadata__": metadata}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode() + data).hexdigest()


def write_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write tensors and string metadata atomically, recording the digest that `read_weights` checks."""
    # The tensor index and bytes do not depend on the metadata, so the digest of a first encoding holds for the second.
    header, data = _split_file(save_safetensors_bytes(tensors, metadata=metadata))
    blob = save_safetensors_bytes(tensors, metadata={**metadata, DIGEST_KEY: _digest(header, data)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def read_weights(
    path: Path, device: torch.device | str = "cpu", what: str = "weights file"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a file written by `write_weights`, after checking its digest."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{what} {path} {not_a_file_phrase(path)}")
    try:
        blob = path.read_bytes()
        header, data = _split_file(blob)
        metadata = header.get("__metadata__") or {}
        recorded = metadata.get(DIGEST_KEY)
        if recorded is not None and recorded != _digest(header, data):
            raise RunError(
                f"{what} {path} is damaged: its content no longer matches the digest recorded when it "
                "was written (flipped or truncated bytes). Re-make it, or restore it from a copy"
            )
        tensors = load_safetensors_bytes(blob)
    except RunError:
        raise
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise RunError(f"{what} {path} cannot be read ({err}); it is damaged or not ours") from None
    if recorded is None:
        warnings.warn(
            f"{path} records no digest (written before digests were kept); it cannot be verified", stacklevel=2
        )
    return {key: value.to(device) for key, value in tensors.items()}, metadata


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {TENSOR: prefix}
    if isinstance(obj, dict):
        if obj and all(isinstance(k, int) for k in obj):  # e.g. optimizer state keyed by param id
            return {INT_KEYS: {str(k): flatten_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}}
        return {str(k): flatten_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if TENSOR in obj:
            return tensors[obj[TENSOR]]
        if INT_KEYS in obj:
            return {int(k): unflatten_state(v, tensors) for k, v in obj[INT_KEYS].items()}
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (nested dicts/lists of tensors and JSON values) to one .safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_state(state, "state", tensors)
    # safetensors refuses tensors that share memory; clone those that alias another.
    seen: set[int] = set()
    for key, tensor in tensors.items():
        if tensor.untyped_storage().data_ptr() in seen:
            tensors[key] = tensor.clone()
        seen.add(tensors[key].untyped_storage().data_ptr())
    write_weights(path, tensors, {"skeleton": json.dumps(skeleton)})


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    tensors, metadata = read_weights(path, device, what="checkpoint")
    if "skeleton" not in metadata:
        raise RunError(
            f"checkpoint {path} has no state skeleton in its metadata; it is not an Imbalance Lab checkpoint"
        )
    return unflatten_state(json.loads(metadata["skeleton"]), tensors)


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """`model.load_state_dict(state)`, with a RunError naming `path` when the weights are another model's (another
    backbone or class count: a file copied from another run)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        shapes = "different shapes" if "size mismatch" in str(err) else "other layers"
        raise RunError(
            f"checkpoint {path} does not fit the run's model (its weights have {shapes}): it belongs to another run or "
            "was replaced; restore the run's own file, or delete the run"
        ) from None
