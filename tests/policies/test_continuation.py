"""Chunk continuation (RTC's soft mask, RePaint inpainting in the DDIM loop) on the tiny policy."""

import math

import numpy as np
import pytest
import torch

from policies.acceleration.calibration import calibrate
from policies.config import load_config
from policies.continuation import inpainting_generator, rtc_weights
from policies.factory import build_policy
from policies.api.interface import ChunkContinuation, Observation
from policies.loading import load_policy
from policies.normalization import ActionStatistics
from policies.presets import apply_preset, load_preset
from tests.conftest import TINY

INSTRUCTION = "put the carrot on the plate"


def plan_prefix(statistics: ActionStatistics, rows: int, seed: int = 1) -> np.ndarray:
    """(rows, 7) float32 actions a robot could be executing: masked dims strictly inside [q01, q99] (so normalising
    clips nothing), the gripper 0 or 1."""
    rng = np.random.default_rng(seed)
    prefix = statistics.q01 + rng.uniform(0.1, 0.9, (rows, 7)) * (statistics.q99 - statistics.q01)
    prefix[:, 6] = rng.integers(0, 2, rows)
    return prefix.astype(np.float32)


def test_rtc_weights_freeze_then_decay_to_zero():
    weights = rtc_weights(16, prefix_length=12, delay_ticks=2)
    assert weights.shape == (16,) and weights.dtype == np.float32
    np.testing.assert_array_equal(weights[:2], [1.0, 1.0])
    soft = weights[2:12]
    assert np.all(soft > 0) and np.all(soft < 1) and np.all(np.diff(soft) < 0)
    np.testing.assert_array_equal(weights[12:], 0.0)
    c = 10 / 11  # (P - d) / (P - d + 1) at the first soft row
    assert weights[2] == pytest.approx(c * (math.exp(c) - 1) / (math.e - 1), rel=1e-6)
    assert weights[2] == pytest.approx(0.7841158, rel=1e-6) and weights[11] == pytest.approx(0.00503513, rel=1e-5)
    assert not rtc_weights(16, 0, 0).any()  # nothing to continue
    np.testing.assert_array_equal(rtc_weights(16, 3, 3), [1, 1, 1] + [0] * 13)  # all frozen, no soft rows


def test_an_empty_continuation_is_the_plain_sample_bit_for_bit(tiny_policy, frame):
    obs = Observation(frame, INSTRUCTION)
    empty = ChunkContinuation(np.zeros((0, 7), np.float32), delay_ticks=0)
    plain = tiny_policy.session().predict_action(obs, seed=4)
    continued = tiny_policy.session().predict_action(obs, seed=4, continuation=empty)
    assert np.array_equal(continued.actions, plain.actions)
    assert np.array_equal(continued.normalized_actions, plain.normalized_actions)


@pytest.mark.parametrize("cfg_scale", [1.5, 1.0])
def test_frozen_rows_reproduce_the_prefix_with_and_without_guidance(tiny_policy, frame, cfg_scale):
    policy = tiny_policy if cfg_scale == 1.5 else load_policy(TINY, overrides=["sampler.cfg_scale=1.0"])
    assert policy.config.sampler.cfg_scale == cfg_scale
    obs = Observation(frame, INSTRUCTION)
    prefix = plan_prefix(policy.statistics, 3)
    out = policy.session().predict_action(obs, seed=0, continuation=ChunkContinuation(prefix, delay_ticks=3))
    np.testing.assert_allclose(out.actions[:3], prefix, atol=1e-5)
    plain = policy.session().predict_action(obs, seed=0)
    assert not np.allclose(plain.actions[:3], prefix, atol=1e-3)  # the plain sample is elsewhere
    assert np.isfinite(out.actions).all() and not np.array_equal(out.actions[3:], plain.actions[3:])


def test_frozen_rows_are_the_normalised_prefix_exactly_for_every_chunk_of_a_batch(tiny_policy, frame):
    prefix = plan_prefix(tiny_policy.statistics, 5)
    sampled = tiny_policy.sample_normalized(
        [frame, frame[::-1].copy()], [INSTRUCTION, "open the drawer"], seed=2,
        continuation=ChunkContinuation(prefix, delay_ticks=4),
    )
    known = torch.from_numpy(tiny_policy.statistics.normalize(prefix.astype(np.float64)))
    assert sampled.shape == (2, 16, 7)
    assert torch.equal(sampled[0, :4], known[:4]) and torch.equal(sampled[1, :4], known[:4])
    assert not torch.equal(sampled[0, 4:], sampled[1, 4:])  # each chunk continues from its own observation


def test_an_unseeded_continuation_still_freezes_the_prefix(tiny_policy, frame):
    prefix = plan_prefix(tiny_policy.statistics, 6, seed=5)
    out = tiny_policy.session().predict_action(
        Observation(frame, INSTRUCTION), continuation=ChunkContinuation(prefix, delay_ticks=2)
    )
    np.testing.assert_allclose(out.actions[:2], prefix[:2], atol=1e-5)


def test_the_efficientvla_preset_with_its_dit_cache_continues_the_prefix(frame):
    policy = load_policy(TINY, overrides=["llm.num_layers=8"])  # room for the preset's layer pruning
    obs = Observation(frame, INSTRUCTION)
    apply_preset(policy, load_preset("efficientvla"), calibrate(policy, [obs]))
    cache = policy.action_head.feature_cache
    assert cache is not None and cache.interval == 5 and policy.metadata["preset"] == "efficientvla"
    prefix = plan_prefix(policy.statistics, 3)
    plain = policy.session().predict_action(obs, seed=1)
    calls = cache.block_calls
    out = policy.session().predict_action(obs, seed=1, continuation=ChunkContinuation(prefix, delay_ticks=3))
    # The blocks ran only at the refresh steps 0 and 5 of 10 (2 blocks each): the cache served the other steps.
    assert cache.block_calls - calls == 4
    np.testing.assert_allclose(out.actions[:3], prefix, atol=1e-5)
    empty = ChunkContinuation(np.zeros((0, 7), np.float32), delay_ticks=0)
    assert np.array_equal(policy.session().predict_action(obs, seed=1, continuation=empty).actions, plain.actions)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_rows_are_pulled_towards_the_old_plan(tiny_policy, frame, seed):
    obs = Observation(frame, INSTRUCTION)
    prefix = plan_prefix(tiny_policy.statistics, 12, seed=seed + 10)
    out = tiny_policy.session().predict_action(obs, seed=seed, continuation=ChunkContinuation(prefix, delay_ticks=2))
    plain = tiny_policy.session().predict_action(obs, seed=seed)
    np.testing.assert_allclose(out.actions[:2], prefix[:2], atol=1e-5)
    continued_gap = np.abs(out.actions[2:12] - prefix[2:12]).mean()
    plain_gap = np.abs(plain.actions[2:12] - prefix[2:12]).mean()
    assert continued_gap < plain_gap


def test_same_seed_and_continuation_give_the_same_chunk(tiny_policy, frame):
    obs = Observation(frame, INSTRUCTION)
    continuation = ChunkContinuation(plan_prefix(tiny_policy.statistics, 8), delay_ticks=3)
    first = tiny_policy.session().predict_action(obs, seed=9, continuation=continuation)
    second = tiny_policy.session().predict_action(obs, seed=9, continuation=continuation)
    other = tiny_policy.session().predict_action(obs, seed=10, continuation=continuation)
    assert np.array_equal(first.actions, second.actions)
    assert np.array_equal(first.normalized_actions, second.normalized_actions)
    assert not np.array_equal(first.actions[3:], other.actions[3:])


def test_the_inpainting_noise_is_its_own_stream(tiny_policy):
    # Neither the request's initial noise nor the next seed's: a continuation leaves the main stream untouched.
    drawn = torch.randn(16, 7, generator=inpainting_generator(7))
    assert torch.equal(drawn, torch.randn(16, 7, generator=inpainting_generator(7)))
    assert not torch.equal(drawn, tiny_policy.initial_noise(1, 7)[0])
    assert not torch.equal(drawn, tiny_policy.initial_noise(1, 8)[0])
    assert inpainting_generator(None) is None


def test_the_session_ensemble_adds_the_continued_chunk(tiny_policy, frame):
    session = tiny_policy.session()
    obs = Observation(frame, INSTRUCTION)
    prefix = plan_prefix(tiny_policy.statistics, 4)
    first = session.predict_action(obs, seed=0, continuation=ChunkContinuation(prefix, delay_ticks=1))
    assert len(session.ensemble) == 1
    np.testing.assert_allclose(first.action, prefix[0], atol=1e-5)  # one chunk: its first row, the frozen one
    second = session.predict_action(obs, seed=1, continuation=ChunkContinuation(first.actions[1:5], delay_ticks=1))
    assert len(session.ensemble) == 2 and not np.array_equal(second.action, second.actions[0])


@pytest.mark.parametrize(
    "continuation, message",
    [
        (ChunkContinuation(np.zeros((3, 6), np.float32), 0), r"continuation.prefix: expected shape \(P, 7\)"),
        (ChunkContinuation(np.zeros((17, 7), np.float32), 0), r"continuation.prefix: .* P <= 16, got \(17, 7\)"),
        (ChunkContinuation(np.full((4, 7), np.nan, np.float32), 1), "continuation.prefix: contains NaN"),
        (ChunkContinuation(np.zeros((2, 7), np.float32), 3), "continuation.prefix: expected at least delay_ticks = 3"),
        (ChunkContinuation(np.zeros((4, 7), bool), 0), "continuation.prefix: expected a numeric array"),
        (ChunkContinuation(np.zeros((4, 7), np.float32), 16),
         r"continuation.delay_ticks: expected an integer in \[0, 16\)"),
        (ChunkContinuation(np.zeros((4, 7), np.float32), -1), "continuation.delay_ticks: expected an integer"),
        ({"prefix": np.zeros((4, 7)), "delay_ticks": 1}, "continuation: expected a ChunkContinuation, got dict"),
    ],
)
def test_a_bad_continuation_names_the_field(tiny_policy, frame, continuation, message):
    with pytest.raises(ValueError, match=message):
        tiny_policy.predict_action(Observation(frame, INSTRUCTION), seed=0, continuation=continuation)


def test_a_policy_without_statistics_cannot_normalise_a_prefix(frame):
    config = load_config(TINY)
    config.actions.statistics = None
    policy = build_policy(config)
    with pytest.raises(ValueError, match="continuation.prefix: this policy has no action statistics"):
        policy.sample_normalized([frame], [INSTRUCTION], seed=0,
                                 continuation=ChunkContinuation(np.zeros((2, 7), np.float32), 1))


@pytest.fixture(scope="module")
def x0_guided_policy():
    return load_policy(TINY, overrides=["sampler.continuation_method=x0_guidance"])


def test_x0_guidance_freezes_the_prefix_pulls_the_overlap_and_leaves_plain_samples_alone(x0_guided_policy, frame):
    policy = x0_guided_policy
    obs = Observation(frame, INSTRUCTION)
    assert policy.metadata["continuation_method"] == "x0_guidance"
    prefix = plan_prefix(policy.statistics, 12, seed=11)
    out = policy.session().predict_action(obs, seed=0, continuation=ChunkContinuation(prefix, delay_ticks=2))
    plain = policy.session().predict_action(obs, seed=0)
    np.testing.assert_allclose(out.actions[:2], prefix[:2], atol=1e-5)
    assert np.abs(out.actions[2:12] - prefix[2:12]).mean() < np.abs(plain.actions[2:12] - prefix[2:12]).mean()
    empty = ChunkContinuation(np.zeros((0, 7), np.float32), delay_ticks=0)
    assert np.array_equal(policy.session().predict_action(obs, seed=0, continuation=empty).actions, plain.actions)


def test_the_two_methods_differ_and_an_unknown_method_is_refused(tiny_policy, x0_guided_policy, frame):
    from runtime.core.yaml_config import ConfigError

    obs = Observation(frame, INSTRUCTION)
    continuation = ChunkContinuation(plan_prefix(tiny_policy.statistics, 12, seed=3), delay_ticks=2)
    repainted = tiny_policy.session().predict_action(obs, seed=5, continuation=continuation)
    guided = x0_guided_policy.session().predict_action(obs, seed=5, continuation=continuation)
    assert not np.allclose(repainted.actions[2:], guided.actions[2:])
    with pytest.raises(ConfigError, match="sampler.continuation_method: expected one of repaint, x0_guidance, "
                                          "conditioning"):
        load_policy(TINY, overrides=["sampler.continuation_method=guidance"])


CONDITIONED = ["sampler.continuation_method=conditioning", "action_head.max_committed_rows=4"]


@pytest.fixture(scope="module")
def conditioned_policy():
    return load_policy(TINY, overrides=CONDITIONED)


def test_conditioning_clamps_and_marks_only_the_frozen_rows(conditioned_policy, frame, monkeypatch):
    policy = conditioned_policy
    obs = Observation(frame, INSTRUCTION)
    prefix = plan_prefix(policy.statistics, 12, seed=4)
    seen = []
    forward = type(policy.action_head).forward

    def recording(head, x, t, condition, committed=None):
        seen.append((x.clone(), committed))
        return forward(head, x, t, condition, committed)

    monkeypatch.setattr(type(policy.action_head), "forward", recording)
    out = policy.session().predict_action(obs, seed=0, continuation=ChunkContinuation(prefix, delay_ticks=3))
    np.testing.assert_allclose(out.actions[:3], prefix[:3], atol=1e-5)
    known = torch.from_numpy(policy.statistics.normalize(prefix[:3].astype(np.float64))).float()
    assert len(seen) == policy.config.sampler.num_inference_steps
    for x, committed in seen:  # every step, both guidance halves: the clean frozen rows, marked; nothing else
        assert x.shape[0] == 2 and committed.tolist() == [[True] * 3 + [False] * 13] * 2
        torch.testing.assert_close(x[:, :3], known.expand(2, -1, -1))
    # RTC's soft rows are not used: a longer prefix with the same frozen rows gives the same chunk.
    seen.clear()
    short = policy.session().predict_action(obs, seed=0, continuation=ChunkContinuation(prefix[:3], delay_ticks=3))
    np.testing.assert_array_equal(short.actions, out.actions)


def test_conditioning_with_nothing_frozen_is_the_plain_sample(conditioned_policy, tiny_policy, frame):
    obs = Observation(frame, INSTRUCTION)
    prefix = plan_prefix(conditioned_policy.statistics, 8, seed=2)
    plain = tiny_policy.session().predict_action(obs, seed=3)
    unfrozen = conditioned_policy.session().predict_action(obs, seed=3, continuation=ChunkContinuation(prefix, 0))
    assert np.array_equal(unfrozen.actions, plain.actions)


def test_conditioning_needs_a_head_trained_with_committed_rows():
    from runtime.core.yaml_config import ConfigError

    with pytest.raises(ConfigError, match="never trained with committed rows.*--max-committed-rows"):
        load_policy(TINY, overrides=["sampler.continuation_method=conditioning"])
