"""CogACT's action objective: noise-prediction MSE of the DiT on normalised action chunks (and an optional
auxiliary regression of the chunk from the cognition feature, for training from scratch).

Each sample is repeated ``repeats`` times with independent noise and timesteps t ~ U{0..T-1} (T = 100); with
probability ``condition_dropout`` a repeat's cognition feature is replaced by the learned ``uncondition`` vector, which
is what classifier-free guidance needs at inference. x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def diffusion_loss(
    action_head: nn.Module,
    cognition: torch.Tensor,
    actions: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    repeats: int,
    condition_dropout: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """cognition (B, C), normalised actions (B, T, A) -> scalar loss."""
    device = actions.device
    x0 = actions.repeat_interleave(repeats, dim=0)
    condition = cognition.repeat_interleave(repeats, dim=0).to(x0.dtype)
    n = x0.shape[0]
    timesteps = torch.randint(0, len(alphas_cumprod), (n,), generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device, x0.dtype)
    abar = alphas_cumprod.to(device, x0.dtype)[timesteps].view(n, 1, 1)
    noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    dropped = (torch.rand((n,), generator=generator) < condition_dropout).to(device)
    uncondition = action_head.z_embedder.uncondition.expand(n, -1).to(condition.dtype)
    condition = torch.where(dropped[:, None], uncondition, condition)
    return F.mse_loss(action_head(noisy, timesteps, condition), noise)


class CognitionRegressor(nn.Module):
    """A linear map from the cognition feature to the whole normalised chunk, used only while training.

    CogACT starts from a pretrained VLM whose cognition feature already describes the scene. Trained from scratch, the
    DiT first learns the marginal action distribution and ignores a near-constant cognition feature, so the noise-
    prediction loss sends the vision towers and the LLM almost no signal. Regressing the chunk from the cognition
    gives them a direct one; the regressor is discarded afterwards (the policy still acts through the DiT alone)."""

    def __init__(self, cognition_dim: int, chunk_length: int, action_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cognition_dim, chunk_length * action_dim)

    def loss(self, cognition: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """cognition (B, C), normalised actions (B, T, A) -> scalar MSE."""
        return F.mse_loss(self.linear(cognition.to(self.linear.weight.dtype)), actions.flatten(1))
