"""Rotation maths shared by the scripted experts, the placements, the Google-robot grids and the carrot twin check.

Numpy only: it runs in both interpreters (ManiSkill3's and SimplerEnv's, numpy < 2). Quaternions are (w, x, y, z),
as SAPIEN and both SIMPLER simulators store them; Euler angles are static-frame xyz (roll, pitch, yaw), the
convention the action adapters read a policy's rotation in.
"""

from __future__ import annotations

import numpy as np


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (4,) -> rotation matrix (3, 3)."""
    w, x, y, z = np.asarray(q, dtype=np.float64)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of two quaternions (4,) -> (4,): the rotation b, then a."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def axis_angle_to_matrix(vector: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) (the unit axis times the angle) -> rotation matrix (3, 3), by Rodrigues' formula."""
    vector = np.asarray(vector, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    k = vector / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> static-frame xyz Euler angles (roll, pitch, yaw), R = Rz(yaw) Ry(pitch) Rx(roll): the
    convention the adapter reads the policy's rotation in, so an expert's angles mean what a policy's mean."""
    pitch = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        return np.array([np.arctan2(r[2, 1], r[2, 2]), pitch, np.arctan2(r[1, 0], r[0, 0])])
    return np.array([np.arctan2(-r[1, 2], r[1, 1]), pitch, 0.0])  # gimbal lock: roll and yaw share one axis


def rotation_angle(r: np.ndarray) -> float:
    """The angle (radians, 0 to pi) a rotation matrix turns by, about whatever axis."""
    return float(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)))


def rotation_step(current: np.ndarray, goal: np.ndarray, max_angle: float) -> np.ndarray:
    """(roll, pitch, yaw) that turns ``current`` towards ``goal`` (both base-frame) by at most ``max_angle``. The
    controller applies the rotation on the left (R_target = R_delta R_current), so R_delta = R_goal R_current^T."""
    delta = goal @ current.T
    angle = rotation_angle(delta)
    if angle > max_angle:
        delta = _scaled_rotation(delta, max_angle / angle)
    return matrix_to_euler(delta)


def _scaled_rotation(r: np.ndarray, fraction: float) -> np.ndarray:
    """The same axis, ``fraction`` of the angle; the angle is below pi for the turns the experts make (at pi the
    axis read from the antisymmetric part is undefined)."""
    angle = rotation_angle(r)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2.0 * np.sin(angle))
    return axis_angle_to_matrix(axis * (angle * fraction))
