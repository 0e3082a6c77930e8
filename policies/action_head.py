"""CogACT's DiT action model: a diffusion transformer conditioned in context on the cognition feature.

Not adaLN-DiT: the condition is one prepended token, ``t_emb + Linear(cognition)``; 16 noisy action tokens follow;
learned positional embeddings cover all 17. Blocks are pre-norm with LayerNorms without affine parameters and a
GELU-tanh MLP. Parameter names follow CogACT's ``action_model.net`` where CogACT's layout is kept (``blocks.i.attn.qkv``,
``z_embedder.uncondition``, ...); the timestep MLP is diffusers' ``TimestepEmbedding``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from policies.acceleration.dit_cache import DiTFeatureCache
from policies.action_config import ActionHeadConfig

TIMESTEP_FREQUENCY_DIM = 256
# The diffusion time of a committed row (training-time action conditioning): one step before the cleanest level the
# schedule has (0), i.e. no noise at all: the row is given, not denoised.
COMMITTED_TIMESTEP = -1


class ActionEmbedder(nn.Module):
    """(B, T, action_dim) -> (B, T, H)."""

    def __init__(self, action_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(action_dim, hidden_size)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.linear(actions)


class CognitionEmbedder(nn.Module):
    """(B, C) cognition features -> (B, 1, H). ``uncondition`` is the learned null condition of classifier-free
    guidance, kept in the raw C-dimensional cognition space (it goes through the same ``linear``)."""

    def __init__(self, cognition_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cognition_dim, hidden_size)
        self.uncondition = nn.Parameter(torch.zeros(1, cognition_dim))

    def forward(self, cognition: torch.Tensor) -> torch.Tensor:
        return self.linear(cognition).unsqueeze(1)


class DiTAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection split as [q | k | v], each head-major."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, L, H)."""
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, h // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, h))


class DiTMLP(nn.Module):
    def __init__(self, hidden_size: int, mlp_hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """x <- x + Attn(LN1(x)); x <- x + MLP(LN2(x)). The two residual branches are separate methods so that
    feature caching can reuse them."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = DiTAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = DiTMLP(hidden_size, int(hidden_size * mlp_ratio))

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm1(x))

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention_branch(x)
        return x + self.mlp_branch(x)


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, out_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x))


class DiffusionTransformer(nn.Module):
    """Predicts the noise of a noisy action chunk.

    forward(noisy_actions (B, T, A), timesteps (B,) original diffusion steps 0..99, cognition (B, C),
    committed (B, T) bool or None) -> (B, T, A) with T = chunk_length (16), A = action_dim (7), C = the LLM hidden
    size.

    ``committed`` rows (training-time action conditioning, arXiv 2512.05964) are actions already given, clean: each
    such row has its own diffusion time, ``COMMITTED_TIMESTEP`` (done), where the others share the sample's. The
    sample's time reaches the network through the condition token, so a row's own time enters as the offset
    t_emb(done) - t_emb(t) added to its token: zero for every uncommitted row, so with nothing committed the network
    is exactly CogACT's, and a checkpoint trained without committed rows can be fine-tuned with them.
    """

    def __init__(self, config: ActionHeadConfig, cognition_dim: int) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.x_embedder = ActionEmbedder(config.action_dim, hidden)
        self.t_frequencies = Timesteps(TIMESTEP_FREQUENCY_DIM, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.t_embedder = TimestepEmbedding(TIMESTEP_FREQUENCY_DIM, hidden)
        self.z_embedder = CognitionEmbedder(cognition_dim, hidden)
        self.positional_embedding = nn.Parameter(torch.zeros(config.chunk_length + 1, hidden))
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden, config.num_heads, config.mlp_ratio) for _ in range(config.depth)]
        )
        self.final_layer = FinalLayer(hidden, config.action_dim)
        self.feature_cache: Optional[DiTFeatureCache] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiT's initialisation, except that the output layer is not zeroed: a zero output layer would make an
        untrained model predict exactly zero noise, so nothing downstream of it could be exercised."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.t_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(self.t_embedder.linear_2.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.02)
        nn.init.normal_(self.z_embedder.uncondition, std=0.02)

    def embed_timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        """(B,) -> t_emb (B, H)."""
        return self.t_embedder(self.t_frequencies(timesteps).to(self.positional_embedding.dtype))

    def embed_condition(self, timesteps: torch.Tensor, cognition: torch.Tensor) -> torch.Tensor:
        """(B,), (B, C) -> condition token (B, 1, H) = t_emb + Linear(cognition)."""
        return self.embed_timesteps(timesteps).unsqueeze(1) + self.z_embedder(cognition)

    def embed_actions(self, noisy_actions: torch.Tensor, timesteps: torch.Tensor,
                      committed: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, T, A), (B,), committed (B, T) or None -> action tokens (B, T, H), committed rows marked done."""
        tokens = self.x_embedder(noisy_actions)
        if committed is None:
            return tokens
        done = self.embed_timesteps(torch.full_like(timesteps, COMMITTED_TIMESTEP))
        offset = done - self.embed_timesteps(timesteps)  # (B, H)
        return tokens + committed.unsqueeze(-1).to(tokens.dtype) * offset.unsqueeze(1)

    def begin_sample(self) -> None:
        """Called before each sampling loop (resets the feature cache, when one is attached)."""
        if self.feature_cache is not None:
            self.feature_cache.reset()

    def blocks_with_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """x (N, T + 1, H) through every block -> (x, each block's attention branch, each block's MLP branch): what
        the feature cache runs at its refresh steps, a function of x alone (so it compiles to one graph)."""
        attentions, mlps = [], []
        for block in self.blocks:
            attention = block.attention_branch(x)
            x = x + attention
            mlp = block.mlp_branch(x)
            x = x + mlp
            attentions.append(attention)
            mlps.append(mlp)
        return x, attentions, mlps

    def forward(self, noisy_actions: torch.Tensor, timesteps: torch.Tensor, cognition: torch.Tensor,
                committed: Optional[torch.Tensor] = None) -> torch.Tensor:
        actions = self.embed_actions(noisy_actions, timesteps, committed)
        x = torch.cat([self.embed_condition(timesteps, cognition), actions], dim=1)
        x = x + self.positional_embedding
        if self.feature_cache is not None:
            x = self.feature_cache.run(self, x)
        else:
            for block in self.blocks:
                x = block(x)
        return self.final_layer(x)[:, 1:]
