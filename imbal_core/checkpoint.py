"""Checkpoints as one safetensors file, written atomically.

Nested state (model, optimizer, method state) is flattened: tensors are stored under a
path-like key, and the rest of the structure is JSON in the file's metadata, with a pointer
in each tensor's place. One file means a checkpoint is never half-updated, and loading never
unpickles anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import RunError
from .utils import atomic_path

TENSOR = "__tensor__"
INT_KEYS = "__int_keys__"


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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"skeleton": json.dumps(skeleton)})


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise RunError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            skeleton = json.loads(handle.metadata()["skeleton"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise RunError(f"checkpoint {path} cannot be read ({err}); it is damaged or not ours") from None
    return unflatten_state(skeleton, tensors)
