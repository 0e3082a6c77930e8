"""How far from the machine's limit: its matrix-multiply peak, measured in the same run as a profile, and each stage's
achieved rate (FLOPs counted by ``policies.flops``, over the stage's measured time) as a fraction of that peak.

The peak is the best of a few large square matrix products in the policy's dtype (2048 on a CPU, 8192 on a GPU):
what the machine's BLAS reaches when launch overhead, memory traffic and small shapes do not get in the way. A stage
far below it loses its time to those (many small kernels, weights streamed from memory), not to arithmetic.
"""

from __future__ import annotations

import time
from typing import Any

import torch

PEAK_SIZE = {"cpu": 2048, "cuda": 8192}
PEAK_REPEATS = 5


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, repeats: int = PEAK_REPEATS) -> float:
    """The best GFLOP/s of ``repeats`` (n x n) @ (n x n) products on ``device`` in ``dtype``, after two warm-ups."""
    size = PEAK_SIZE.get(device.type, PEAK_SIZE["cpu"])
    generator = torch.Generator().manual_seed(0)
    a = torch.randn((size, size), generator=generator).to(device, dtype)
    b = torch.randn((size, size), generator=generator).to(device, dtype)
    best = float("inf")
    for index in range(repeats + 2):
        synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        if index >= 2:
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def stage_rates(stage_gflop: dict[str, float], stage_ms: dict[str, float], peak_gflops: float) -> dict[str, Any]:
    """Per stage with counted FLOPs and a time: GFLOP, achieved GFLOP/s and the fraction of ``peak_gflops``."""
    rates = {}
    for stage, gflop in stage_gflop.items():
        ms = stage_ms.get(stage)
        if not ms:
            continue
        achieved = gflop / (ms / 1e3)
        rates[stage] = {"gflop": round(gflop, 4), "gflops_per_s": round(achieved, 2),
                        "fraction_of_peak": round(achieved / peak_gflops, 4)}
    return rates
