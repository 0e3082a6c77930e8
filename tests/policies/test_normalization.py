import json

import numpy as np
import pytest

from policies.normalization import ActionStatistics, read_statistics_file, select_statistics
from tests.conftest import REPO

STATS = {
    "toy": {"action": {"q01": [-1.0, 0.0, -0.5], "q99": [1.0, 2.0, 0.5], "mask": [True, True, False]}},
    "other": {"action": {"q01": [0, 0, 0], "q99": [1, 1, 1], "mask": [True, True, False]}},
}


def test_unnormalize_clips_binarises_gripper_and_maps_q01_q99():
    stats = select_statistics(STATS, "toy", 3)
    normalized = np.array([[0.5, -1.0, 0.49], [2.0, 0.0, 0.5], [-3.0, 1.0, 0.7]], dtype=np.float32)
    actions, clipped = stats.unnormalize(normalized)
    # dim 0: 0.5 (x + 1)(1 - -1) + -1 = x; dim 1: 0.5 (x + 1) * 2 + 0 = x + 1; gripper: < 0.5 -> 0 else 1
    np.testing.assert_allclose(actions, [[0.5, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 2.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(clipped, [[0.5, -1.0, 0.0], [1.0, 0.0, 1.0], [-1.0, 1.0, 1.0]], atol=1e-6)
    assert actions.dtype == np.float32 and clipped.dtype == np.float32


def test_normalize_is_bounds_q99_and_inverts_unnormalize_inside_the_range():
    stats = select_statistics(STATS, "toy", 3)
    raw = np.array([[0.25, 1.5, 1.0]])
    normalized = stats.normalize(raw)
    np.testing.assert_allclose(normalized, [[0.25, 0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(stats.unnormalize(normalized)[0], raw, atol=1e-6)


def test_bridge_orig_statistics_shipped():
    stats = select_statistics(read_statistics_file(REPO / "configs/statistics/oxe_simpler.json"), "bridge_orig", 7)
    assert stats.mask.tolist() == [True] * 6 + [False]
    actions, _ = stats.unnormalize(np.array([[-1, -1, -1, 1, 1, 1, 0.2]], dtype=np.float32))
    assert actions[0, :3].tolist() == pytest.approx(stats.q01[:3].tolist())
    assert actions[0, 3:6].tolist() == pytest.approx(stats.q99[3:6].tolist())
    assert actions[0, 6] == 0.0


def test_unknown_unnorm_key_lists_available():
    with pytest.raises(ValueError, match="unnorm_key: 'fractal' is not in the dataset statistics; available: other, toy"):
        select_statistics(STATS, "fractal", 3)


def test_no_key_is_ambiguous_with_several_datasets_but_not_with_one():
    with pytest.raises(ValueError, match="choose one of: other, toy"):
        select_statistics(STATS, None, 3)
    assert select_statistics({"toy": STATS["toy"]}, None, 3).unnorm_key == "toy"


def test_wrong_dimension_and_malformed_statistics(tmp_path):
    with pytest.raises(ValueError, match=r"statistics\['toy'\].action.q01: expected 7 values"):
        select_statistics(STATS, "toy", 7)
    with pytest.raises(ValueError, match=r"expected q01, q99 and mask"):
        select_statistics({"bad": {"proprio": {}}}, "bad", 3)
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_statistics_file(path)
    path.write_text(json.dumps([]))
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_statistics_file(path)


def test_unnormalize_rejects_wrong_action_dim():
    stats = ActionStatistics("toy", np.zeros(3), np.ones(3), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="expected last dimension 3"):
        stats.unnormalize(np.zeros((16, 7), dtype=np.float32))
