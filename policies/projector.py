"""Prismatic's ``no-align+fused-gelu-mlp`` projector from visual features to the LLM's embedding space."""

from __future__ import annotations

import torch
from torch import nn


class FusedMLPProjector(nn.Module):
    """(B, N, vision_dim) -> (B, N, llm_dim) through Linear-GELU-Linear-GELU-Linear, hidden 4 * vision_dim
    (2176 -> 8704 -> 4096 -> 4096 at base size). The inner ``nn.Sequential`` is named ``projector`` so parameter
    names match CogACT's checkpoint (``projector.0/2/4``)."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        hidden = 4 * vision_dim
        self.projector = nn.Sequential(
            nn.Linear(vision_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, llm_dim),
            nn.GELU(),
            nn.Linear(llm_dim, llm_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector(features)
