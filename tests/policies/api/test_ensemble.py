import numpy as np
import pytest

from policies.api.ensemble import AdaptiveActionEnsemble, adaptive_blend


def test_first_chunk_returns_its_first_row():
    ensemble = AdaptiveActionEnsemble(horizon=3, alpha=0.1)
    assert ensemble.add(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])).tolist() == [1.0, 0.0]


def test_hand_computed_weights():
    ensemble = AdaptiveActionEnsemble(horizon=3, alpha=0.1)
    ensemble.add(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    # Predictions for this step: older chunk's row 1 = [0, 1], newest chunk's row 0 = [1, 1] (the reference).
    # cos = 1/sqrt(2) and 1; weights exp(0.0707107) = 1.0732706, exp(0.1) = 1.1051709 -> 0.4926782, 0.5073218.
    out = ensemble.add(np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]))
    assert out.tolist() == pytest.approx([0.5073218, 1.0], abs=1e-6)


def test_adaptive_blend_weights_by_cosine_to_the_newest():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    w_old, w_new = np.exp(0.0), np.exp(0.1)  # cos(b, a) = 0, cos(b, b) = 1
    np.testing.assert_allclose(adaptive_blend([a, b], 0.1), (w_old * a + w_new * b) / (w_old + w_new), atol=1e-12)
    # The ensemble blends exactly these numbers: row 1 of the older chunk, row 0 of the newer.
    ensemble = AdaptiveActionEnsemble(horizon=2, alpha=0.1)
    ensemble.add(np.stack([b, a]))
    assert ensemble.add(np.stack([b, a])).tolist() == adaptive_blend([a, b], 0.1).astype(np.float32).tolist()


def test_horizon_limits_history_and_reset_clears():
    ensemble = AdaptiveActionEnsemble(horizon=2, alpha=0.1)
    chunk = np.tile(np.arange(4.0)[:, None], (1, 2))  # row k = [k, k]
    for _ in range(5):
        out = ensemble.add(chunk)
    assert len(ensemble) == 2
    # Predictions: the older chunk's row 1 = [1, 1], the newest chunk's row 0 = [0, 0]. The reference is the zero
    # vector, so both cosines are 0, the weights are equal and the result is the mean.
    assert out.tolist() == pytest.approx([0.5, 0.5])
    ensemble.reset()
    assert len(ensemble) == 0
    assert ensemble.add(chunk).tolist() == [0.0, 0.0]


def test_invalid_input():
    with pytest.raises(ValueError, match="horizon: expected >= 1"):
        AdaptiveActionEnsemble(horizon=0)
    ensemble = AdaptiveActionEnsemble(horizon=7)
    with pytest.raises(ValueError, match="chunk: expected shape"):
        ensemble.add(np.zeros(7))
    with pytest.raises(ValueError, match="cannot cover ensemble horizon 7"):
        ensemble.add(np.zeros((4, 7)))
