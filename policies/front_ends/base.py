"""The interface every front end implements (``policies.front_ends``): ``FrontEnd`` and its ``FrontEndOutput``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn


@dataclass
class FrontEndOutput:
    """``tokens`` (B, N, D) for the projector; ``mask`` (B, N), 1 = valid token, or None when every token is valid;
    ``pooled`` (B, P), one vector per example (for an LLM-free condition; the policy does not use it)."""

    tokens: torch.Tensor
    mask: Optional[torch.Tensor]
    pooled: torch.Tensor


pytree.register_dataclass(FrontEndOutput)  # so that an exported front end returns one


class FrontEnd(nn.Module):
    """The interface of every front end (see ``policies.front_ends``). Subclasses set ``num_tokens``, ``token_dim``,
    ``pooled_dim``, ``image_size`` and, when they read the instruction, ``uses_instruction = True`` and
    ``tokenizer_name``; they implement ``preprocess``, ``encode`` and ``flop_count``."""

    uses_instruction: bool = False
    num_tokens: int
    token_dim: int
    pooled_dim: int
    image_size: int
    tokenizer_name: Optional[str] = None  # the config's tokenizer (a directory or a shipped name), when one is used
    text_vocab_size: Optional[int] = None  # rows of the text encoder's embedding table

    def __init__(self) -> None:
        super().__init__()
        self.tokenizer: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """(H, W, 3) uint8 frames -> named pixel tensors (B, 3, S, S) float32 on the module's device."""
        raise NotImplementedError

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Attach the text tokenizer (front ends with ``uses_instruction``)."""
        if self.text_vocab_size is not None and len(tokenizer) > self.text_vocab_size:
            raise ValueError(f"{type(self).__name__}: text.vocab_size={self.text_vocab_size} is smaller than the "
                             f"tokenizer ({len(tokenizer)} tokens)")
        self.tokenizer = tokenizer

    def tokenize(self, instructions: list[str]) -> Optional[dict[str, torch.Tensor]]:
        """Instructions -> the front end's text inputs (``input_ids``, ``attention_mask`` (B, L)), or None for a
        front end that does not read the instruction."""
        return None

    def encode(self, pixels: dict[str, torch.Tensor], text: Optional[dict[str, torch.Tensor]] = None) -> FrontEndOutput:
        raise NotImplementedError

    def forward(self, pixels: dict[str, torch.Tensor], text: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """The visual tokens (B, N, D) alone."""
        return self.encode(pixels, text).tokens

    def flop_count(self, text_tokens: int = 0) -> dict[str, int]:
        """FLOPs of one ``encode`` of one image (and a ``text_tokens``-token instruction), in ``policies.flops``'s
        convention: ``paper`` (2 x MACs of linear/conv layers, every block the method runs), ``executed`` (the same
        for what vlart runs) and ``attention`` (attention-score matmuls QK^T and AV that vlart runs)."""
        raise NotImplementedError

    def attach_language_model(self, language_model: nn.Module) -> None:
        """Called once the policy's LLM exists (the frozen-LLM front end copies one of its layers)."""

    def _require_text(self, text: Optional[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if text is None:
            raise ValueError(f"{type(self).__name__} reads the instruction: pass the output of tokenize()")
        return text


def tokenize_text(front_end: FrontEnd, instructions: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Instructions -> right-padded ``input_ids`` / ``attention_mask`` (B, L) with the front end's tokenizer
    (its own special tokens, truncated to ``max_length``), on the front end's device."""
    if front_end.tokenizer is None:
        raise RuntimeError(
            f"{type(front_end).__name__}: no tokenizer attached; build the policy with policies.factory (it loads "
            f"the tokenizer named by the front end's text.tokenizer, {front_end.tokenizer_name!r})"
        )
    encoded = front_end.tokenizer(list(instructions), padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt")
    device = front_end.device
    return {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device)}
