"""Pieces the front ends share: image normalisation, multi-head (cross-)attention with plain ``nn.Linear``
projections (so ``policies.flops.linear_macs`` sees them), attention masks."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from policies.image_transforms import DINO_MEAN, DINO_STD, resize_naive, to_normalized_tensor

IMAGENET_MEAN, IMAGENET_STD = DINO_MEAN, DINO_STD
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize_frames(images: list[np.ndarray], size: int, mean: tuple[float, ...], std: tuple[float, ...],
                     device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 frames -> (B, 3, size, size) float32: CogACT's resize-naive (bicubic, the whole frame
    squashed to a square), then ``(x / 255 - mean) / std``."""
    resized = np.stack([resize_naive(image, size) for image in images])
    return to_normalized_tensor(resized, mean, std).to(device)


def key_padding_bias(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """(B, M) 1 = valid -> additive (B, 1, 1, M) bias (0 or the dtype's minimum), or None."""
    if mask is None:
        return None
    return torch.zeros((mask.shape[0], 1, 1, mask.shape[1]), dtype=dtype, device=mask.device).masked_fill(
        mask[:, None, None, :] == 0, torch.finfo(dtype).min)


def init_linear(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) weights and zero biases for every ``nn.Linear`` in ``module``; LayerNorms to (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MultiHeadAttention(nn.Module):
    """Queries (B, Q, dim) attend to a context (B, M, context_dim): separate ``query``/``key``/``value``/``output``
    Linears, ``heads`` heads, softmax over the context (``context_mask`` (B, M), 1 = valid)."""

    def __init__(self, dim: int, context_dim: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key = nn.Linear(context_dim, dim, bias=bias)
        self.value = nn.Linear(context_dim, dim, bias=bias)
        self.output = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: Optional[torch.Tensor] = None,
                key_input: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``key_input`` (default ``context``) feeds the key projection, ``context`` the value projection."""
        b, q, _ = x.shape
        m = context.shape[1]
        query = self.query(x).view(b, q, self.heads, -1).transpose(1, 2)
        key = self.key(context if key_input is None else key_input).view(b, m, self.heads, -1).transpose(1, 2)
        value = self.value(context).view(b, m, self.heads, -1).transpose(1, 2)
        bias = key_padding_bias(context_mask, query.dtype)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return self.output(out.transpose(1, 2).reshape(b, q, -1))

    def macs(self, queries: int, keys: int) -> int:
        """Multiply-accumulates of the four projections for ``queries`` queries over ``keys`` context tokens."""
        return (queries * (self.query.in_features * self.query.out_features
                           + self.output.in_features * self.output.out_features)
                + keys * (self.key.in_features * self.key.out_features
                          + self.value.in_features * self.value.out_features))


class GatedCrossAttention(nn.Module):
    """FIBER's fusion module: ``alpha * Attn(LN(x) or x, context)``, ``alpha`` one scalar initialised to 0 (no tanh),
    so a fresh module adds exactly nothing."""

    def __init__(self, dim: int, context_dim: int, heads: int, query_norm: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps) if query_norm else None
        self.attention = MultiHeadAttention(dim, context_dim, heads)
        init_linear(self.attention)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        query = self.norm(x) if self.norm is not None else x
        return self.alpha.to(x.dtype) * self.attention(query, context, context_mask)
