"""Chunk continuation (real-time chunking, RTC, arXiv 2506.07339) for the DDIM/epsilon action head.

A new chunk must reproduce the actions that execute while it is inferred (the frozen rows) and continue the old plan
over the rest of the overlap; RTC's soft mask weights each row (``rtc_weights``). Two methods
(``sampler.continuation_method``), both ending with the sample blended with the known actions by those weights, so
frozen rows come out exactly:

- ``repaint`` (default): RePaint with r = 1 (no resampling jumps). Before every DDIM step the carried sample x_t is
  blended, row by row, with the known actions noised to that step's level.
- ``x0_guidance``: guidance through the predicted clean chunk, PiGDM-style with the denoiser's Jacobian taken as the
  identity and guidance weight 1: at every step the predicted x0 is blended with the known actions and the noise
  prediction is replaced by the one consistent with that x0, so the DDIM update moves towards it. No extra noise.

Works in the sampler's normalised space: the prefix is normalised with the policy's action statistics. The server
announces the method and the soft mask ``rtc_exponential`` in ``hello``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from policies.api.interface import ChunkContinuation, continuation_problem
from policies.normalization import ActionStatistics

REPAINT_STREAM = 1  # spawn key of the inpainting noise stream, a child of the request's seed


def rtc_weights(chunk_length: int, prefix_length: int, delay_ticks: int) -> np.ndarray:
    """RTC's soft mask (T,) float32 for a prefix of P rows whose first d rows are frozen:

        w_i = 1                                   for i < d
        w_i = c_i (exp(c_i) - 1) / (e - 1),  c_i = (P - i) / (P - d + 1)   for d <= i < P
        w_i = 0                                   for i >= P

    so the soft rows decrease strictly from below 1 towards 0 (c_i runs from (P - d) / (P - d + 1) down to
    1 / (P - d + 1)).
    """
    if not 0 <= delay_ticks <= prefix_length <= chunk_length:
        raise ValueError(
            f"expected 0 <= delay_ticks <= prefix_length <= chunk_length, got {delay_ticks}, {prefix_length}, "
            f"{chunk_length}"
        )
    weights = np.zeros(chunk_length, dtype=np.float64)
    weights[:delay_ticks] = 1.0
    soft = np.arange(delay_ticks, prefix_length)
    c = (prefix_length - soft) / (prefix_length - delay_ticks + 1)
    weights[soft] = c * np.expm1(c) / (math.e - 1.0)
    return weights.astype(np.float32)


def check_continuation(continuation: object, chunk_length: int, action_dim: int) -> None:
    """``ValueError`` naming the field unless ``continuation`` is a valid request for chunks (T, A)."""
    if not isinstance(continuation, ChunkContinuation):
        raise ValueError(f"continuation: expected a ChunkContinuation, got {type(continuation).__name__}")
    problem = continuation_problem(continuation.prefix, continuation.delay_ticks, chunk_length, action_dim)
    if problem is not None:
        field, message = problem
        raise ValueError(f"continuation.{field}: {message}")


def inpainting_generator(seed: Optional[int]) -> Optional[torch.Generator]:
    """The CPU generator of the inpainting noise: its own stream, so the initial noise (seeded with ``seed``) is
    the same with or without a continuation. ``seed + 1`` would be the next seed's initial noise; a spawned child
    stream of ``seed`` is independent of every request's. Unseeded (global RNG) when ``seed`` is None."""
    if seed is None:
        return None
    child = np.random.SeedSequence(seed, spawn_key=(REPAINT_STREAM,)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(child))



class ChunkInpainting:
    """Steers samples x (B, T, A) towards ``known`` normalised actions, (T, A) for every sample or (B, T, A) one per
    sample, with per-row ``weights`` (T,) or (B, T). The sampler calls ``noised`` before each step,
    ``guided_noise`` on each step's noise prediction and ``finish`` on x_0; each default leaves its input alone."""

    def __init__(self, known: torch.Tensor, weights: torch.Tensor) -> None:
        self.known = known
        self.weights = weights.unsqueeze(-1)  # (T, 1) or (B, T, 1): one weight per row, broadcast over action dims

    @classmethod
    def stacked(cls, rows: "list[Optional[ChunkInpainting]]", chunk_shape: tuple[int, int], device: torch.device,
                dtype: torch.dtype) -> "Optional[ChunkInpainting]":
        """One inpainting for a batch whose sample i has its own ``rows[i]`` (None: unconstrained, weight 0); None
        when no sample is constrained. The rows share one method (the policy's ``continuation_method``)."""
        if len(rows) == 1:
            return rows[0]
        present = [row for row in rows if row is not None]
        if not present:
            return None
        kinds = {type(row) for row in present}
        if len(kinds) != 1:
            names = sorted(kind.__name__ for kind in kinds)
            raise ValueError(f"continuations: expected one inpainting method per batch, got {names}")
        free = torch.zeros(chunk_shape, device=device, dtype=dtype)
        known = torch.stack([row.known if row is not None else free for row in rows])
        weights = torch.stack([row.weights[..., 0] if row is not None else free[:, 0] for row in rows])
        kind = kinds.pop()
        if kind is RePaint:
            # An unconstrained sample gets a private stream: its draws are multiplied by weight 0 and must not
            # consume the global generator an unseeded request of the batch draws from.
            generators = [row.generators[0] if row is not None else torch.Generator() for row in rows]  # type: ignore[attr-defined]
            return RePaint(known, weights, generators)
        return kind(known, weights)

    def noised(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return x

    def guided_noise(self, x: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return eps

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """x_0 (B, T, A) -> w * a + (1 - w) * x_0: rows of weight 1 become the known actions exactly."""
        return self.weights * self.known + (1.0 - self.weights) * x

    def committed(self, batch: int) -> Optional[torch.Tensor]:
        """(batch, T) bool: the rows the DiT is told are committed; None (the default) tells it nothing."""
        return None


class ConditionedPrefix(ChunkInpainting):
    """``conditioning``: the frozen rows (weight 1; the weights are RTC's hard mask) are clamped clean into x before
    every step and marked committed, as the action head saw them in training."""

    def noised(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return self.finish(x)

    def committed(self, batch: int) -> Optional[torch.Tensor]:
        rows = self.weights[..., 0] > 0.5
        return rows.expand(batch, -1) if rows.ndim == 1 else rows


class X0Guidance(ChunkInpainting):
    """``x0_guidance``: x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar) is blended to w * a + (1 - w) * x0_hat and
    eps replaced by (x_t - sqrt(abar) x0') / sqrt(1 - abar), the noise that predicts exactly x0'."""

    def guided_noise(self, x: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        signal, noise = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
        x0 = (x - noise * eps) / signal
        return (x - signal * self.finish(x0)) / noise


class RePaint(ChunkInpainting):
    """``repaint``: before the step at t, x_t is blended with the known actions noised to abar_t."""

    def __init__(self, known: torch.Tensor, weights: torch.Tensor,
                 generators: list[Optional[torch.Generator]]) -> None:
        """``generators``: one for the whole batch, or one per sample (row i's eps is then exactly what sample i
        alone draws)."""
        super().__init__(known, weights)
        self.generators = generators

    def noised(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """x_t (B, T, A) -> w * (sqrt(abar_t) a + sqrt(1 - abar_t) eps) + (1 - w) * x_t, before the step at t.

        eps is drawn on the CPU, as the initial noise is, so a seed gives the same chunk on every device."""
        if len(self.generators) == 1:
            eps = torch.randn(x.shape, generator=self.generators[0])
        else:
            eps = torch.cat([torch.randn((1, *x.shape[1:]), generator=g) for g in self.generators])
        eps = eps.to(x.device, x.dtype)
        known_t = math.sqrt(alpha_bar) * self.known + math.sqrt(1.0 - alpha_bar) * eps
        return self.weights * known_t + (1.0 - self.weights) * x


def inpainting_for(
    continuation: Optional[ChunkContinuation],
    statistics: Optional[ActionStatistics],
    chunk_shape: tuple[int, int],
    seed: Optional[int],
    device: torch.device,
    dtype: torch.dtype,
    method: str = "repaint",
) -> Optional[ChunkInpainting]:
    """The inpainting of ``continuation`` into chunks of ``chunk_shape`` (T, A), on ``device`` in ``dtype``; None
    when it constrains nothing (no continuation, or every weight 0), so such a sample is the plain one, bit for bit.
    ``ValueError`` naming the field for a continuation that does not fit (T, A) or, lacking ``statistics``, cannot
    be normalised.

    The prefix is normalised as training targets are, so masked dims outside [q01, q99] are clipped to the range."""
    if continuation is None:
        return None
    chunk_length, action_dim = chunk_shape
    check_continuation(continuation, chunk_length, action_dim)
    prefix_length = continuation.prefix.shape[0]
    if method == "conditioning":  # the frozen rows alone: the hard mask
        weights = rtc_weights(chunk_length, continuation.delay_ticks, continuation.delay_ticks)
    else:
        weights = rtc_weights(chunk_length, prefix_length, continuation.delay_ticks)
    if not weights.any():
        return None
    if statistics is None:
        raise ValueError(
            "continuation.prefix: this policy has no action statistics (actions.statistics / actions.unnorm_key), so "
            "an unnormalised prefix cannot be brought into the space the action head samples in"
        )
    known = np.zeros((chunk_length, action_dim), dtype=np.float32)
    known[:prefix_length] = statistics.normalize(continuation.prefix.astype(np.float64))
    known_t, weights_t = torch.from_numpy(known).to(device, dtype), torch.from_numpy(weights).to(device, dtype)
    if method == "x0_guidance":
        return X0Guidance(known_t, weights_t)
    if method == "conditioning":
        return ConditionedPrefix(known_t, weights_t)
    return RePaint(known_t, weights_t, [inpainting_generator(seed)])
