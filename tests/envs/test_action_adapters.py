import math

import numpy as np
import pytest

from envs.action_adapters import NormalizedEEDeltaAdapter, WidowXBridgeAdapter, euler_to_axis_angle


@pytest.mark.parametrize(
    "rpy, expected",
    [
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((0.1, 0.0, 0.0), (0.1, 0.0, 0.0)),
        ((0.0, -0.2, 0.0), (0.0, -0.2, 0.0)),
        ((0.0, 0.0, math.pi / 2), (0.0, 0.0, math.pi / 2)),
        # roll = pitch = pi/2: q = (1/2, 1/2, 1/2, -1/2)... with static xyz: w = c c c + s s s etc.
        # q = (0.5, 0.5, 0.5, -0.5): angle 2 acos(0.5) = 2 pi / 3, axis (1, 1, -1) / sqrt(3).
        ((math.pi / 2, math.pi / 2, 0.0), tuple(np.array([1, 1, -1]) / math.sqrt(3) * 2 * math.pi / 3)),
    ],
)
def test_euler_to_axis_angle_hand_computed(rpy, expected):
    np.testing.assert_allclose(euler_to_axis_angle(np.array(rpy)), expected, atol=1e-12)


def test_matches_transforms3d_as_cogact_uses_it():
    transforms3d = pytest.importorskip("transforms3d")
    rng = np.random.default_rng(0)
    for _ in range(500):
        rpy = rng.uniform(-math.pi, math.pi, 3) * rng.choice([1.0, 0.3, 0.01])
        axis, angle = transforms3d.euler.euler2axangle(*rpy)
        np.testing.assert_allclose(euler_to_axis_angle(rpy), np.asarray(axis) * angle, atol=1e-9)


def test_widowx_conversion():
    adapter = WidowXBridgeAdapter()
    env_action = adapter(np.array([0.01, -0.02, 0.03, 0.0, 0.0, 0.1, 0.7]))
    np.testing.assert_allclose(env_action, [0.01, -0.02, 0.03, 0.0, 0.0, 0.1, 1.0], atol=1e-7)
    assert env_action.dtype == np.float32
    # gripper: open (+1) only above 0.5; the ensembled gripper may be fractional
    assert adapter(np.array([0, 0, 0, 0, 0, 0, 0.5]))[6] == -1.0
    assert adapter(np.array([0, 0, 0, 0, 0, 0, 0.51]))[6] == 1.0
    assert adapter(np.array([0, 0, 0, 0, 0, 0, 0.0]))[6] == -1.0
    scaled = WidowXBridgeAdapter(action_scale=2.0)(np.array([0.01, 0, 0, 0.1, 0, 0, 1.0]))
    np.testing.assert_allclose(scaled, [0.02, 0, 0, 0.2, 0, 0, 1.0], atol=1e-7)


def test_bad_actions_are_refused():
    adapter = WidowXBridgeAdapter()
    with pytest.raises(ValueError, match=r"action: expected shape \(7,\)"):
        adapter(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        adapter(np.array([np.nan, 0, 0, 0, 0, 0, 1]))


def test_normalized_ee_delta_for_maniskill_tabletop():
    adapter = NormalizedEEDeltaAdapter(pos_limit=0.1, rot_limit=0.1)
    np.testing.assert_allclose(adapter(np.array([0.05, -0.5, 0.0, 0.0, 0.0, 0.02, 0.9])),
                               [0.5, -1.0, 0.0, 0.0, 0.0, 0.2, 1.0], atol=1e-6)
