"""Where a run's training images live: whole on the device when they fit, else streamed from the disk cache.

Held whole, the images are one uint8 tensor on the device and a batch is gathered by index there. Streamed, they
stay in the data cache's `.npy` file: a batch's rows are read with `pread` (not through a memory map, whose pages
would count in the process's resident memory), pinned on a GPU machine, and copied to the device without waiting.
Both give the same batches, so a run's numbers do not depend on where its images were.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..data.images import available_memory

logger = logging.getLogger(__name__)
PLACEMENTS = ("auto", "device", "stream")
DEVICE_SHARE = 0.5  # of the free memory the training images may take when held whole (the rest: model, activations)


class StreamedImages:
    """Training images read from disk a batch at a time: `images[index]` gives (B, C, H, W) uint8 on the device, as
    indexing a tensor held there would. `index` is a tensor of positions (or a boolean mask, or a slice)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, device: torch.device) -> None:
        self.images, self.rows, self.device = images, np.asarray(rows, dtype=np.int64), device
        height, width, channels = images.shape[1:]
        self.shape = torch.Size((len(self.rows), channels, height, width))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        if isinstance(index, slice):
            positions = np.arange(len(self.rows))[index]
        elif index.dtype == torch.bool:
            positions = torch.nonzero(index.cpu()).flatten().numpy()
        else:
            positions = index.cpu().numpy()
        batch = torch.from_numpy(read_rows(self.images, self.rows[positions])).permute(0, 3, 1, 2)
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.contiguous()


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """images[rows] as a new array. From a memory-mapped `.npy` file each row is read with `pread`, so the file's
    pages stay in the page cache instead of the process's resident memory."""
    rows = np.asarray(rows, dtype=np.int64)
    filename, offset = getattr(images, "filename", None), getattr(images, "offset", None)
    if filename is None or offset is None or not images.flags.c_contiguous:
        return np.ascontiguousarray(images[rows])
    row_bytes = int(np.prod(images.shape[1:])) * images.dtype.itemsize
    out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    flat = out.reshape(len(rows), row_bytes).view(np.uint8)
    fd = os.open(filename, os.O_RDONLY)
    try:
        for i, row in enumerate(rows):
            # a memmap's .offset is the header's length: the rows start there
            view = memoryview(flat[i])
            got = os.preadv(fd, [view], offset + int(row) * row_bytes)
            if got != row_bytes:
                raise OSError(f"{filename}: read {got} of {row_bytes} bytes of row {row}; the data cache is damaged")
    finally:
        os.close(fd)
    return out


def read_range(images: np.ndarray, start: int, stop: int) -> np.ndarray:
    """images[start:stop] as `read_rows` reads it (for evaluation in chunks)."""
    return read_rows(images, np.arange(start, min(stop, len(images))))


def free_memory(device: torch.device) -> int:
    """Bytes free for data on `device`: the GPU's free memory, or the machine's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def place_train_images(
    images: np.ndarray,
    rows: np.ndarray,
    device: torch.device,
    placement: str = "auto",
) -> torch.Tensor | StreamedImages:
    """The training images `images[rows]` (uint8 N, H, W, C) for the training loop, as (N, C, H, W): held whole on the
    device, or streamed from the disk cache. "auto" holds them when they take at most DEVICE_SHARE of the free
    memory there."""
    need = len(rows) * int(np.prod(images.shape[1:]))
    free = free_memory(device)
    chosen = placement if placement != "auto" else ("device" if need <= DEVICE_SHARE * free else "stream")
    logger.info(
        "training images: %d x %s = %.2f GB; %.1f GB free on %s: %s",
        len(rows),
        "x".join(map(str, images.shape[1:])),
        need / 1e9,
        free / 1e9,
        device,
        "held on the device" if chosen == "device" else "streamed from the disk cache",
    )
    if chosen == "stream":
        return StreamedImages(images, rows, device)
    return torch.from_numpy(read_rows(images, rows)).permute(0, 3, 1, 2).contiguous().to(device)
