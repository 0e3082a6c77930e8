"""DDIM sampling of action chunks with classifier-free guidance, reproducing CogACT's ``ddim10`` sampler.

diffusers' ``DDIMScheduler`` with 100 training steps, ``squaredcos_cap_v2``, epsilon prediction, no clipping,
``set_alpha_to_one`` and leading spacing gives the timesteps 90, 80, ..., 0 and, stepped with eta = 0, CogACT's own
update. The network is called with those original timesteps, as CogACT does. With a ``ChunkInpainting``
(``policies.continuation``) the carried sample is steered towards known actions at every step and after the last.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch
from diffusers import DDIMScheduler

from policies.action_config import SamplerConfig
from policies.continuation import ChunkInpainting
from policies.torch_context import default_dtype
from runtime.core.timing import StageTimer

NoisePredictor = Callable[..., torch.Tensor]


def make_scheduler(config: SamplerConfig) -> DDIMScheduler:
    scheduler = DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="leading",
        steps_offset=0,
    )
    scheduler.set_timesteps(config.num_inference_steps)
    return scheduler


def guided_noise(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_u + s * (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


class DDIMActionSampler:
    """Turns Gaussian noise (B, T, A) into a normalised action chunk (B, T, A).

    ``predict_noise(x, t, condition[, committed])`` is the DiT: x (N, T, A), t (N,) long, condition (N, C),
    committed (N, T) bool (only when the inpainting marks rows) -> (N, T, A).
    With guidance the conditional and unconditional halves run as one batch of 2B, as in CogACT; both halves share
    the noise, so only the conditional half is carried through the loop.
    """

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        # The schedule's tables stay on the host in float32, whatever device and dtype the model is built under.
        with torch.device("cpu"), default_dtype(torch.float32):
            self.scheduler = make_scheduler(config)

    @property
    def timesteps(self) -> list[int]:
        return [int(t) for t in self.scheduler.timesteps]

    def sample(
        self,
        predict_noise: NoisePredictor,
        noise: torch.Tensor,
        condition: torch.Tensor,
        uncondition: Optional[torch.Tensor] = None,
        cfg_scale: Optional[float] = None,
        timer: Optional[StageTimer] = None,
        inpainting: Optional[ChunkInpainting] = None,
    ) -> torch.Tensor:
        """noise (B, T, A), condition (B, C), uncondition (1, C) or None -> x0 (B, T, A), not clipped.

        With a ``timer`` whose ``step_detail`` is on, each loop iteration k is timed as stage ``ddim_step_k``. With
        ``inpainting``, x_t is inpainted before the step at t (at the noise level abar_t of that original timestep)
        and x_0 after the last; under guidance both halves see the inpainted x, since only x is carried, and the
        rows it marks committed."""
        scale = self.config.cfg_scale if cfg_scale is None else cfg_scale
        guided = uncondition is not None and scale != 1.0
        batch = noise.shape[0]
        if guided:
            condition = torch.cat([condition, uncondition.expand(batch, -1).to(condition.dtype)], dim=0)
        x = noise
        committed = inpainting.committed(batch) if inpainting is not None else None
        if committed is not None and guided:
            committed = torch.cat([committed, committed], dim=0)
        per_step = timer is not None and timer.step_detail
        for k, t in enumerate(self.scheduler.timesteps):
            with timer.stage(f"ddim_step_{k}") if per_step else nullcontext():
                if inpainting is not None:
                    x = inpainting.noised(x, float(self.scheduler.alphas_cumprod[int(t)]))
                model_input = torch.cat([x, x], dim=0) if guided else x
                t_batch = torch.full((model_input.shape[0],), int(t), dtype=torch.long, device=x.device)
                if committed is None:
                    eps = predict_noise(model_input, t_batch, condition)
                else:
                    eps = predict_noise(model_input, t_batch, condition, committed)
                if guided:
                    eps = guided_noise(eps[:batch], eps[batch:], scale)
                if inpainting is not None:
                    eps = inpainting.guided_noise(x, eps, float(self.scheduler.alphas_cumprod[int(t)]))
                x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
        return inpainting.finish(x) if inpainting is not None else x
