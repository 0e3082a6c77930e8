"""Visual token selection inside the LLM (EfficientVLA's task-aware selection, and FastV as a baseline).

At one decoder layer (index 1 by default) the attention of the text tokens (the prompt after the image, the
cognition/EOS token included) to the visual tokens is computed explicitly, averaged over heads and summed over the
text queries: the relevance of each visual token. The selector keeps ``keep`` visual tokens; all later layers see
[BOS | kept visual tokens in their original order | text] with their original position ids. BOS and text are never
dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv


def text_to_visual_attention(
    layer: torch.nn.Module,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    num_visual: int,
) -> torch.Tensor:
    """Relevance of each visual token at ``layer``: sum over text queries of the head-averaged attention.

    hidden (B, S, D) is the layer's input, laid out [BOS | num_visual visual | text]; returns (B, num_visual) float32.
    Only the text rows of the attention matrix are computed, with an explicit causal softmax.
    """
    attn = layer.self_attn
    normed = layer.input_layernorm(hidden)
    b, s, _ = normed.shape
    head_dim = attn.head_dim
    queries = attn.q_proj(normed).view(b, s, -1, head_dim).transpose(1, 2)
    keys = attn.k_proj(normed).view(b, s, -1, head_dim).transpose(1, 2)
    cos, sin = position_embeddings
    queries, keys = apply_rotary_pos_emb(queries, keys, cos, sin)
    keys = repeat_kv(keys, attn.num_key_value_groups)
    first_text = 1 + num_visual
    text_queries = queries[:, :, first_text:].float()
    scores = text_queries @ keys.float().transpose(-1, -2) / math.sqrt(head_dim)  # (B, H, L_text, S)
    query_positions = torch.arange(first_text, s, device=hidden.device)[:, None]
    causal = torch.arange(s, device=hidden.device)[None, :] > query_positions
    probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
    return probs[..., 1:first_text].mean(dim=1).sum(dim=1)


@dataclass
class FastVSelector:
    """FastV: the ``keep`` visual tokens with the highest relevance."""

    keep: int = 56
    layer: int = 1

    def select(self, relevance: torch.Tensor, visual_hidden: torch.Tensor) -> torch.Tensor:
        """relevance (B, N), visual hidden states (B, N, D) -> kept indices (B, keep), ascending."""
        keep = min(self.keep, relevance.shape[1])
        return relevance.topk(keep, dim=1).indices.sort(dim=1).values


@dataclass
class TaskAwareSelector:
    """EfficientVLA: ``key`` most relevant tokens; of the remaining budget a fraction ``alpha`` by relevance and the
    rest by diversity, 1 - max cosine similarity to the key tokens (on the layer's output hidden states)."""

    keep: int = 56
    key: int = 4
    alpha: float = 0.5
    layer: int = 1

    def select(self, relevance: torch.Tensor, visual_hidden: torch.Tensor) -> torch.Tensor:
        """relevance (B, N), visual hidden states (B, N, D) -> kept indices (B, keep), ascending."""
        b, n = relevance.shape
        keep = min(self.keep, n)
        key_count = min(self.key, keep)
        task_count = math.floor(self.alpha * (keep - key_count))
        diverse_count = keep - key_count - task_count
        order = relevance.argsort(dim=1, descending=True)
        key_idx = order[:, :key_count]
        task_idx = order[:, key_count : key_count + task_count]
        rest_idx = order[:, key_count + task_count :]
        normed = F.normalize(visual_hidden.float(), dim=-1)
        key_vectors = normed.gather(1, key_idx[..., None].expand(-1, -1, normed.shape[-1]))
        rest_vectors = normed.gather(1, rest_idx[..., None].expand(-1, -1, normed.shape[-1]))
        similarity = (rest_vectors @ key_vectors.transpose(1, 2)).amax(dim=-1) if key_count else torch.zeros_like(
            rest_idx, dtype=normed.dtype)
        diverse_idx = rest_idx.gather(1, (1 - similarity).topk(diverse_count, dim=1).indices)
        return torch.cat([key_idx, task_idx, diverse_idx], dim=1).sort(dim=1).values


TokenSelector = FastVSelector | TaskAwareSelector
