"""CogACT's action objective: noise-prediction MSE of the DiT on normalised action chunks (and an optional
auxiliary regression of the chunk from the cognition feature, for training from scratch).

Each sample is repeated ``repeats`` times with independent noise and timesteps t ~ U{0..T-1} (T = 100); with
probability ``condition_dropout`` a repeat's cognition feature is replaced by the learned ``uncondition`` vector, which
is what classifier-free guidance needs at inference. x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.

With ``CommittedRows`` (training-time action conditioning, arXiv 2512.05964) a repeat's first d rows are given clean
and marked committed, d drawn per repeat, and the loss counts only the other rows: the DiT learns to continue actions
that are already executing, which is what it is given under inference delay. Both guidance branches (a dropped
condition or not) see the committed rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CommittedRows:
    """How many leading rows of a training chunk are committed: 0 with probability ``zero_fraction`` (the policy
    must still plan from scratch, as at the first step of an episode), else uniform over 1..``max_rows``."""

    max_rows: int
    zero_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"--max-committed-rows: expected >= 1, got {self.max_rows}")
        if not 0.0 <= self.zero_fraction <= 1.0:
            raise ValueError(f"--zero-committed-fraction: expected a fraction in [0, 1], got {self.zero_fraction}")

    def draw(self, n: int, chunk_length: int, generator: torch.Generator) -> torch.Tensor:
        """(n, T) bool: True for each sample's committed rows."""
        rows = torch.randint(1, self.max_rows + 1, (n,), generator=generator)
        rows = torch.where(torch.rand((n,), generator=generator) < self.zero_fraction, 0, rows)
        return torch.arange(chunk_length)[None, :] < rows.clamp(max=chunk_length)[:, None]


def diffusion_loss(
    action_head: nn.Module,
    cognition: torch.Tensor,
    actions: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    repeats: int,
    condition_dropout: float,
    generator: torch.Generator,
    committed_rows: Optional[CommittedRows] = None,
) -> torch.Tensor:
    """cognition (B, C), normalised actions (B, T, A) -> scalar loss: the noise-prediction MSE over the rows that
    are not committed."""
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
    if committed_rows is None:
        return F.mse_loss(action_head(noisy, timesteps, condition), noise)
    committed = committed_rows.draw(n, x0.shape[1], generator).to(device)
    noisy = torch.where(committed[..., None], x0, noisy)
    free = (~committed)[..., None].to(x0.dtype).expand_as(x0)
    squared = (action_head(noisy, timesteps, condition, committed) - noise) ** 2
    return (squared * free).sum() / free.sum().clamp(min=1.0)


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
