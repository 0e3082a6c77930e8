"""DiT feature caching (EfficientVLA): reuse each block's attention and MLP branch outputs between refresh steps.

At refresh steps (loop index k with k % interval == 0, so steps 0 and 5 of 10 with interval 5) every block runs
and its two residual-branch outputs are stored; at the other steps each block is x + cached_attn + cached_mlp, so
only the embedders, the positional embedding and the final layer run. Caches are (2B, 17, H) under guidance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from policies.action_head import DiffusionTransformer


class DiTFeatureCache:
    def __init__(self, interval: int = 5) -> None:
        if interval < 1:
            raise ValueError(f"dit_cache.interval: expected >= 1, got {interval}")
        self.interval = interval
        self.step = 0
        self.block_calls = 0
        self._attention: list[torch.Tensor] = []
        self._mlp: list[torch.Tensor] = []

    def reset(self) -> None:
        """Start of a new sampling loop."""
        self.step = 0
        self._attention, self._mlp = [], []

    def run(self, head: "DiffusionTransformer", x: torch.Tensor) -> torch.Tensor:
        """x (N, 17, H) through ``head``'s blocks, refreshing or reusing the cached branch outputs."""
        refresh = self.step % self.interval == 0 or not self._attention or self._attention[0].shape != x.shape
        if refresh:
            x, self._attention, self._mlp = head.blocks_with_branches(x)
            self.block_calls += len(self._attention)
        else:
            for attention, mlp in zip(self._attention, self._mlp):
                x = x + attention + mlp
        self.step += 1
        return x
