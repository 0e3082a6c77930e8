"""From the policy's action to an environment's action, exactly as CogACT's SIMPLER wrapper converts it.

The policy emits [dx, dy, dz, droll, dpitch, dyaw, gripper] (metres and radians, gripper absolute 1 = open,
0 = close, possibly fractional after ensembling). WidowX/Bridge (ManiSkill3's ``pd_ee_target_delta_pose``):
xyz delta scaled by ``action_scale``; roll/pitch/yaw converted to an axis-angle vector (static-frame xyz Euler
angles, as ``transforms3d.euler.euler2axangle``) times ``action_scale``; gripper +1 (open) if > 0.5 else -1.
Google robot (SIMPLER's ``gripper_pd_joint_target_delta_pos``): the same arm conversion, but that controller
moves the fingers by a relative target (RT-1 convention, +1 close, -1 open), so the absolute gripper becomes a
change that is held ("sticky") for several steps, long enough for the fingers to finish closing or opening.
Pure numpy, so adapters and their tests need no simulator.
"""

from __future__ import annotations

import numpy as np


def euler_to_quaternion(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Static-frame xyz Euler angles -> unit quaternion (w, x, y, z)."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.array([
        cp * cr * cy + sp * sr * sy,
        cp * sr * cy - sp * cr * sy,
        cp * sr * sy + sp * cr * cy,
        cp * cr * sy - sp * sr * cy,
    ])


def euler_to_axis_angle(rpy: np.ndarray) -> np.ndarray:
    """(roll, pitch, yaw) -> axis * angle (3,) with angle = 2 acos(w) in [0, 2 pi], as transforms3d's
    ``euler2axangle`` gives it (so an angle above pi is kept, not folded to the equivalent short rotation)."""
    w, x, y, z = euler_to_quaternion(*np.asarray(rpy, dtype=np.float64))
    norm = np.sqrt(x * x + y * y + z * z)
    if norm < 1e-8:
        return np.zeros(3)
    angle = 2.0 * np.arccos(np.clip(w, -1.0, 1.0))
    return np.array([x, y, z]) / norm * angle


def _policy_action(action: np.ndarray) -> np.ndarray:
    """Checked policy action: (7,) finite float64, else ValueError."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (7,):
        raise ValueError(f"action: expected shape (7,), got {action.shape}")
    if not np.isfinite(action).all():
        raise ValueError("action: contains NaN or infinity")
    return action


def _arm_action(action: np.ndarray, action_scale: float) -> np.ndarray:
    """Checked policy action (7,) -> [world xyz, axis-angle] (6,) float64, both times ``action_scale``."""
    world = action[:3] * action_scale
    rotation = euler_to_axis_angle(action[3:6]) * action_scale
    return np.concatenate([world, rotation])


class WidowXBridgeAdapter:
    """CogACT's ``widowx_bridge`` post-processing: policy action (7,) -> ManiSkill3 Bridge env action (7,)."""

    def __init__(self, action_scale: float = 1.0) -> None:
        self.action_scale = action_scale

    def reset(self) -> None:
        """The WidowX conversion keeps no state between steps (the Google robot's sticky gripper would)."""

    def __call__(self, action: np.ndarray) -> np.ndarray:
        action = _policy_action(action)
        gripper = 1.0 if action[6] > 0.5 else -1.0
        return np.concatenate([_arm_action(action, self.action_scale), [gripper]]).astype(np.float32)


class NormalizedEEDeltaAdapter(WidowXBridgeAdapter):
    """ManiSkill's ``pd_ee_delta_pose`` tabletop controllers take [-1, 1] actions that mean +-``pos_limit`` metres
    and +-``rot_limit`` radians: the Bridge conversion, then divided by those limits and clipped."""

    def __init__(self, pos_limit: float = 0.1, rot_limit: float = 0.1) -> None:
        super().__init__(action_scale=1.0)
        self.limits = np.array([pos_limit] * 3 + [rot_limit] * 3 + [1.0], dtype=np.float32)

    def __call__(self, action: np.ndarray) -> np.ndarray:
        return np.clip(super().__call__(action) / self.limits, -1.0, 1.0).astype(np.float32)


class GoogleRobotAdapter:
    """CogACT's ``google_robot`` post-processing: policy action (7,) -> SIMPLER Google robot env action (7,).

    Arm as :class:`WidowXBridgeAdapter`. Gripper: the policy's absolute open-gripper value g (1 = open) becomes
    a relative command ``previous - g`` (+1 close, -1 open). Once its magnitude exceeds 0.5 it is repeated
    ("sticky") for ``sticky_repeat`` steps, whatever the policy says meanwhile. As in CogACT (its fix of the
    SIMPLER wrapper), ``previous`` is the first value after reset and is then only updated when a sticky
    command starts, so small drifts accumulate against it instead of being lost step by step.
    """

    def __init__(self, action_scale: float = 1.0, sticky_repeat: int = 10) -> None:
        if sticky_repeat < 1:
            raise ValueError(f"sticky_repeat: expected >= 1, got {sticky_repeat}")
        self.action_scale = action_scale
        self.sticky_repeat = sticky_repeat
        self.reset()

    def reset(self) -> None:
        """Forget the gripper history (call at every episode start)."""
        self.previous_gripper: float | None = None
        self.sticky_on = False
        self.repeat = 0
        self.sticky_value = 0.0

    def __call__(self, action: np.ndarray) -> np.ndarray:
        """action (7,) [dx, dy, dz, roll, pitch, yaw, open_gripper in [0, 1]] -> env action (7,) float32
        [world xyz, axis-angle, relative gripper]."""
        action = _policy_action(action)
        gripper = self._gripper(float(action[6]))
        return np.concatenate([_arm_action(action, self.action_scale), [gripper]]).astype(np.float32)

    def _gripper(self, current: float) -> float:
        """Absolute open-gripper value -> relative command (+1 close, -1 open), updating the sticky state."""
        if self.previous_gripper is None:
            relative = 0.0
            self.previous_gripper = current
        else:
            relative = self.previous_gripper - current
        if abs(relative) > 0.5 and not self.sticky_on:
            self.sticky_on = True
            self.sticky_value = relative
            self.previous_gripper = current
        if self.sticky_on:
            self.repeat += 1
            relative = self.sticky_value
        if self.repeat == self.sticky_repeat:
            self.sticky_on = False
            self.repeat = 0
            self.sticky_value = 0.0
        return relative


ADAPTERS = {"widowx_bridge": WidowXBridgeAdapter, "google_robot": GoogleRobotAdapter,
            "ee_delta_normalized": NormalizedEEDeltaAdapter}
