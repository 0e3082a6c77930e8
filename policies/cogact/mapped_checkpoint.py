"""Reading a CogACT ``.pt`` memory-mapped, and giving back the pages of tensors already copied, so loading a
release holds the model once plus the pages being copied (not the model plus the whole checkpoint)."""

from __future__ import annotations

import ctypes
import mmap
import sys
from pathlib import Path
from typing import Iterable

import torch

from policies.cogact.key_rules import GROUPS


def read_checkpoint(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The ``{"model": {group: state dict}}`` of a ``.pt``, memory-mapped (nothing is read until used)."""
    try:
        data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # torch raises many kinds (zip, pickle, unsupported global)
        raise ValueError(f"{path}: cannot read the checkpoint: {exc}") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise ValueError(f"{path}: expected a dict with a 'model' dict of groups ({', '.join(GROUPS)})")
    for group, state in model.items():
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise ValueError(f"{path}: group {group!r} is not a state dict of tensors")
    return model


_MADV_DONTNEED = 4  # Linux


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """The address ranges where this process maps ``path`` (Linux ``/proc/self/maps``; empty elsewhere)."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    target = str(Path(path).resolve())
    regions = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            low, high = fields[0].split("-")
            regions.append((int(low, 16), int(high, 16)))
    return regions


def release_mapped_pages(tensors: Iterable[torch.Tensor], regions: list[tuple[int, int]]) -> None:
    """Drop the pages of already-copied checkpoint tensors from this process (``madvise(MADV_DONTNEED)``), so the
    memory-mapped ``.pt`` does not add its whole size to the resident memory while the model fills up.

    Only pages inside ``regions`` (the checkpoint file's mappings, never written) are touched: such a page, also a
    neighbour's when a tensor does not end on a page boundary, is simply read from the file again if used later.
    A tensor outside them (not memory-mapped) is left alone, since dropping anonymous memory would discard data.
    """
    if not regions or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    for tensor in tensors:
        size = tensor.numel() * tensor.element_size()
        if size == 0 or tensor.device.type != "cpu":
            continue
        first, last = tensor.data_ptr(), tensor.data_ptr() + size
        for low, high in regions:
            if low <= first and last <= high:
                start = max(low, first // page * page)
                end = min(high, -(-last // page) * page)
                libc.madvise(start, end - start, _MADV_DONTNEED)
                break
