"""Batched prediction (the server's dynamic batching): every row equals the same request run alone."""

import numpy as np
import pytest

from policies.acceleration.calibration import calibrate
from policies.api.interface import ChunkContinuation, Observation, PredictRequest
from policies.loading import load_policy
from policies.presets import apply_preset, available_presets, load_preset
from tests.conftest import TINY

INSTRUCTIONS = ("pick coke can", "put the small spoon from the left side of the table on the towel", "open drawer")
TOLERANCE = 1e-5


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8) for _ in range(count)]


def run_alone(policy, requests_per_step):
    """Each session's requests, step by step, unbatched: the reference."""
    sessions = [policy.session() for _ in requests_per_step[0]]
    return [[session.predict_action(obs, seed=seed, continuation=continuation)
             for session, (obs, seed, continuation) in zip(sessions, step)] for step in requests_per_step]


def run_batched(policy, requests_per_step):
    sessions = [policy.session() for _ in requests_per_step[0]]
    return [policy.predict_batch([PredictRequest(session, obs, seed, continuation)
                                  for session, (obs, seed, continuation) in zip(sessions, step)])
            for step in requests_per_step]


def assert_same(batched, alone, tolerance=TOLERANCE):
    for batch_step, alone_step in zip(batched, alone):
        for got, expected in zip(batch_step, alone_step):
            assert not isinstance(got, Exception), got
            np.testing.assert_allclose(got.actions, expected.actions, atol=tolerance, rtol=0)
            np.testing.assert_allclose(got.action, expected.action, atol=tolerance, rtol=0)


def three_steps(images):
    """Three sessions (mixed instruction lengths, own seeds), three steps each, so the ensembles carry history."""
    return [[(Observation(image, text), 100 * step + i, None)
             for i, (image, text) in enumerate(zip(images, INSTRUCTIONS))] for step in range(3)]


def test_batched_rows_equal_unbatched_requests(tiny_policy):
    steps = three_steps(frames(3))
    lengths = tiny_policy.language_model.tokenize(list(INSTRUCTIONS)).lengths.tolist()
    assert len(set(lengths)) == 3  # the batch really is padded
    batched, alone = run_batched(tiny_policy, steps), run_alone(tiny_policy, steps)
    assert_same(batched, alone)
    # The ensembles are the sessions' own: the executed action differs from the chunk's first row after step 0.
    assert not np.allclose(batched[2][0].action, batched[2][0].actions[0])
    # Rows really differ (no row copies another's result).
    assert not np.allclose(batched[0][0].actions, batched[0][1].actions)


@pytest.mark.parametrize("method", ["repaint", "conditioning"])
def test_each_row_keeps_its_own_continuation(tiny_policy, method):
    if method != "repaint":
        tiny_policy = load_policy(TINY, overrides=[f"sampler.continuation_method={method}",
                                                   "action_head.max_committed_rows=4"])
    images = frames(3)
    prefix = np.tile(np.array([[0.01, -0.02, 0.0, 0.0, 0.01, 0.0, 1.0]]), (4, 1))
    step = [(Observation(images[0], INSTRUCTIONS[0]), 5, ChunkContinuation(prefix, 2)),
            (Observation(images[1], INSTRUCTIONS[1]), 6, None),
            (Observation(images[2], INSTRUCTIONS[2]), 7, ChunkContinuation(prefix[:3] * 2, 1))]
    batched, alone = run_batched(tiny_policy, [step]), run_alone(tiny_policy, [step])
    assert_same(batched, alone)
    np.testing.assert_allclose(batched[0][0].actions[:2], prefix[:2], atol=1e-4)


@pytest.fixture(scope="module")
def calibrated():
    policy = load_policy(TINY, overrides=["llm.num_layers=8"])
    images = frames(3)
    return calibrate(policy, [Observation(image, text) for image, text in zip(images, INSTRUCTIONS)])


@pytest.mark.parametrize("preset", available_presets())
def test_every_preset_batches(preset, calibrated):
    policy = apply_preset(load_policy(TINY, overrides=["llm.num_layers=8"]), load_preset(preset), calibrated)
    steps = three_steps(frames(3))[:2]
    assert_same(run_batched(policy, steps), run_alone(policy, steps))


def test_a_failing_row_fails_alone(tiny_policy, monkeypatch):
    images = frames(3)
    sessions = [tiny_policy.session() for _ in range(4)]
    requests = [PredictRequest(sessions[0], Observation(images[0], "pick coke can"), 1),
                PredictRequest(sessions[1], Observation(images[1].astype(np.float32), "pick coke can"), 2),
                PredictRequest(sessions[2], Observation(images[2], "explode, please"), 3),
                PredictRequest(sessions[3], Observation(images[2], "open drawer"), 4)]
    tokenize = tiny_policy.language_model.tokenize

    def refuse_explosions(texts):
        if any("explode" in text for text in texts):
            raise RuntimeError("the tokenizer broke on this prompt")
        return tokenize(texts)

    monkeypatch.setattr(tiny_policy.language_model, "tokenize", refuse_explosions)
    results = tiny_policy.predict_batch(requests)
    assert isinstance(results[1], ValueError) and "image: expected dtype uint8" in str(results[1])
    assert isinstance(results[2], RuntimeError) and "tokenizer broke" in str(results[2])
    expected = [tiny_policy.session().predict_action(requests[i].obs, seed=requests[i].seed) for i in (0, 3)]
    for got, want in zip((results[0], results[3]), expected):
        np.testing.assert_allclose(got.actions, want.actions, atol=TOLERANCE, rtol=0)
    # The rerun after the failed batch did not add a second chunk to the good rows' ensembles.
    assert len(sessions[0].ensemble) == 1 and len(sessions[3].ensemble) == 1


def test_a_session_of_another_policy_is_refused(tiny_policy):
    other = load_policy(TINY)
    results = tiny_policy.predict_batch([PredictRequest(other.session(), Observation(frames(1)[0], "pick"), 0)])
    assert isinstance(results[0], ValueError) and "session: expected a session() of this policy" in str(results[0])
