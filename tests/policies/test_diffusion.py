import math

import numpy as np
import pytest
import torch

from policies.action_config import SamplerConfig
from policies.diffusion import DDIMActionSampler, guided_noise


def cogact_alphas_cumprod(steps: int = 100) -> np.ndarray:
    """squaredcos_cap_v2 in float64, as CogACT's gaussian_diffusion computes it."""
    def alpha_bar(s):
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)])
    return np.cumprod(1.0 - betas)


@pytest.fixture(scope="module")
def sampler():
    return DDIMActionSampler(SamplerConfig())


def test_timesteps_are_90_down_to_0(sampler):
    assert sampler.timesteps == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]


def test_one_step_matches_closed_form_ddim(sampler):
    alphas = cogact_alphas_cumprod()
    x = torch.randn(2, 16, 7, dtype=torch.float64)
    eps = torch.randn(2, 16, 7, dtype=torch.float64)
    for t, prev in ((90, 80), (10, 0)):
        a_t, a_prev = alphas[t], alphas[prev]
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
        got = sampler.scheduler.step(eps.float(), t, x.float(), eta=0.0).prev_sample
        assert torch.allclose(got.double(), expected, atol=1e-4, rtol=1e-4)
    # The last step (t = 0) goes to alpha_prev = 1: the output is x0 itself.
    a0 = alphas[0]
    x0 = (x - math.sqrt(1 - a0) * eps) / math.sqrt(a0)
    assert torch.allclose(sampler.scheduler.step(eps.float(), 0, x.float()).prev_sample.double(), x0, atol=1e-4)


def test_cfg_combines_unconditional_plus_scaled_difference():
    eps_c = torch.tensor([1.0, -2.0, 0.5])
    eps_u = torch.tensor([0.5, 1.0, 0.5])
    assert guided_noise(eps_c, eps_u, 1.5).tolist() == pytest.approx([1.25, -3.5, 0.5])


def test_full_loop_matches_hand_rolled_cogact_sampler(sampler):
    alphas = cogact_alphas_cumprod()
    weight = torch.randn(4, 7, dtype=torch.float64) * 0.1
    uncondition = torch.randn(1, 4, dtype=torch.float64)
    condition = torch.randn(2, 4, dtype=torch.float64)
    calls = []

    def predict_noise(x, t, c):
        calls.append((x.shape[0], int(t[0])))
        return 0.5 * x + (c.to(weight.dtype) @ weight).to(x.dtype)[:, None, :] * (1 + t[:, None, None] / 100)

    noise = torch.randn(2, 16, 7, dtype=torch.float64)
    got = sampler.sample(predict_noise, noise.float(), condition.float(), uncondition.float(), cfg_scale=1.5)

    x = noise.clone()
    for j in range(9, -1, -1):
        t = 10 * j
        t_vec = torch.full((2,), t)
        eps_c = predict_noise(x, t_vec, condition)
        eps_u = predict_noise(x, t_vec, uncondition.expand(2, -1))
        eps = eps_u + 1.5 * (eps_c - eps_u)
        a_t = alphas[t]
        a_prev = alphas[t - 10] if t > 0 else 1.0
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    assert torch.allclose(got.double(), x, atol=1e-4, rtol=1e-4)
    # Guidance runs conditional and unconditional halves as one batch of 2B at each of the 10 steps.
    assert [c for c in calls[:10]] == [(4, t) for t in range(90, -1, -10)]


def test_no_guidance_runs_batch_b(sampler):
    seen = []
    sampler.sample(lambda x, t, c: seen.append(x.shape[0]) or torch.zeros_like(x), torch.zeros(3, 16, 7),
                   torch.zeros(3, 4), uncondition=None)
    assert seen == [3] * 10
