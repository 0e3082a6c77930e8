import math

import numpy as np
import pytest

from envs.action_adapters import (
    GoogleRobotAdapter,
    NormalizedEEDeltaAdapter,
    WidowXBridgeAdapter,
    euler_to_axis_angle,
)


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


@pytest.mark.parametrize("adapter_cls", [WidowXBridgeAdapter, GoogleRobotAdapter])
def test_bad_actions_are_refused(adapter_cls):
    adapter = adapter_cls()
    with pytest.raises(ValueError, match=r"action: expected shape \(7,\)"):
        adapter(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        adapter(np.array([np.nan, 0, 0, 0, 0, 0, 1]))


def test_normalized_ee_delta_for_maniskill_tabletop():
    adapter = NormalizedEEDeltaAdapter(pos_limit=0.1, rot_limit=0.1)
    np.testing.assert_allclose(adapter(np.array([0.05, -0.5, 0.0, 0.0, 0.0, 0.02, 0.9])),
                               [0.5, -1.0, 0.0, 0.0, 0.0, 0.2, 1.0], atol=1e-6)


def _grippers(adapter, opens):
    """The gripper entries the adapter emits for a sequence of policy open-gripper values (arm at rest)."""
    return [float(adapter(np.array([0, 0, 0, 0, 0, 0, g]))[6]) for g in opens]


def test_google_robot_arm_conversion():
    adapter = GoogleRobotAdapter()
    env_action = adapter(np.array([0.01, -0.02, 0.03, 0.1, 0.0, 0.0, 1.0]))
    np.testing.assert_allclose(env_action, [0.01, -0.02, 0.03, 0.1, 0.0, 0.0, 0.0], atol=1e-7)
    assert env_action.dtype == np.float32
    np.testing.assert_allclose(adapter(np.array([0, 0, 0, 0, 0, math.pi / 2, 1.0]))[:6],
                               [0, 0, 0, 0, 0, math.pi / 2], atol=1e-6)
    # action_scale multiplies both the translation and the axis-angle vector, not the gripper
    scaled = GoogleRobotAdapter(action_scale=2.0)
    np.testing.assert_allclose(scaled(np.array([0.01, -0.02, 0.03, 0, 0, math.pi / 2, 1.0])),
                               [0.02, -0.04, 0.06, 0, 0, math.pi, 0.0], atol=1e-6)


def test_google_robot_arm_matches_widowx_arm():
    google, widowx = GoogleRobotAdapter(action_scale=1.5), WidowXBridgeAdapter(action_scale=1.5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = np.concatenate([rng.uniform(-0.05, 0.05, 3), rng.uniform(-math.pi, math.pi, 3), [rng.uniform()]])
        np.testing.assert_array_equal(google(action)[:6], widowx(action)[:6])


def test_google_robot_close_is_sticky_for_ten_steps():
    adapter = GoogleRobotAdapter()
    # open x3: the first step after reset is 0 and sets previous = 1.0; then 1.0 - 1.0 = 0.
    # close (0.0): 1.0 - 0.0 = +1 > 0.5 starts the sticky close and sets previous = 0.0; +1 is held for 10 steps
    # whatever the policy says (0.2 for the last 9 of them).
    # After it: previous is still the 0.0 seen when the sticky action started (the 0.2s did not update it),
    # so 0.0 - 0.2 = -0.2.
    opens = [1.0, 1.0, 1.0, 0.0] + [0.2] * 9 + [0.2]
    assert _grippers(adapter, opens) == pytest.approx([0.0, 0.0, 0.0] + [1.0] * 10 + [-0.2])


def test_google_robot_open_is_sticky_minus_one():
    adapter = GoogleRobotAdapter()
    # previous = 0.0 (closed), then 0.0 - 1.0 = -1 (open) for 10 steps, then 1.0 - 1.0 = 0
    assert _grippers(adapter, [0.0] + [1.0] * 11) == pytest.approx([0.0] + [-1.0] * 10 + [0.0])


def test_google_robot_partial_change_is_not_sticky():
    # an ensembled 0.7 -> 0.4: 0.7 - 0.4 = 0.3, under the 0.5 threshold, so passed on once, not held
    assert _grippers(GoogleRobotAdapter(), [0.7, 0.4]) == pytest.approx([0.0, 0.3])


def test_google_robot_previous_is_stale_so_drift_accumulates():
    adapter = GoogleRobotAdapter()
    # 1.0 -> 0.7 -> 0.4: previous stays 1.0 (it is not updated on every step), so the third step gives
    # 1.0 - 0.4 = 0.6 > 0.5 and a sticky 0.6 (the relative value itself, not rounded to +1) for 10 steps;
    # that sets previous = 0.4, so a further 0.4 gives 0. (Updating previous each step would give 0.3, 0.3.)
    opens = [1.0, 0.7, 0.4] + [0.4] * 9 + [0.4]
    assert _grippers(adapter, opens) == pytest.approx([0.0, 0.3] + [0.6] * 10 + [0.0])


def test_google_robot_sticky_repeat():
    # sticky_repeat = 2: +1 held for two steps, then 0.0 - 0.0 = 0
    assert _grippers(GoogleRobotAdapter(sticky_repeat=2), [1.0, 0.0, 0.0, 0.0]) == pytest.approx([0, 1, 1, 0])
    with pytest.raises(ValueError, match="sticky_repeat"):
        GoogleRobotAdapter(sticky_repeat=0)


def test_google_robot_reset_clears_sticky_state():
    adapter = GoogleRobotAdapter()
    assert _grippers(adapter, [1.0, 0.0]) == pytest.approx([0.0, 1.0])  # sticky close under way
    adapter.reset()
    # without the reset the next two steps would still be +1; after it 0.0 is a first step (0) and then 0 - 0
    assert _grippers(adapter, [0.0, 0.0]) == pytest.approx([0.0, 0.0])
    # and a new episode starting open sees no stale previous: first 1.0 is 0, not 0.0 - 1.0 = -1
    adapter.reset()
    assert _grippers(adapter, [1.0]) == pytest.approx([0.0])


def test_google_robot_refused_action_leaves_gripper_state_alone():
    adapter = GoogleRobotAdapter()
    assert _grippers(adapter, [1.0]) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="NaN"):
        adapter(np.array([0, 0, 0, 0, 0, 0, np.nan]))
    # previous is still 1.0 and no sticky action started: 1.0 - 0.0 = +1 starts one now
    assert _grippers(adapter, [0.0, 0.0]) == pytest.approx([1.0, 1.0])
