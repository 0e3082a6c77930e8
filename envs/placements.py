"""Object placements around, and never on, a SIMPLER task's official episode grid.

The source and target objects get positions drawn uniformly from the official positions' bounding box widened by
``MARGIN``, rejected if within ``MIN_POSITION_GAP`` of any official position of that object; an object the official
grid never moves stays where it is (the eggplant task's target is an invisible plane marking the basket, which is
part of the scene: moving the plane would move the goal away from the basket); the source object gets a yaw turn of
5 to 30 degrees (either sign) on top of an official orientation, rejected if it lands within ``MIN_YAW_GAP`` of any
official orientation. The source and target are redrawn while they lie closer than the official grid's closest pair
(an episode that starts with the source touching the target measures nothing). ``vlart demos`` trains on such
placements and ``vlart eval`` with the held-out grid tests on them, so choices made on the official grid (the test
set) can be checked elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.geometry import quaternion_multiply

GRIDS = ("official", "heldout")  # where evaluation episodes put the objects: SIMPLER's grid, or off it
MARGIN = 0.03
MIN_POSITION_GAP = 0.005
MIN_YAW_GAP = np.deg2rad(5.0)
YAW_TURN = (np.deg2rad(5.0), np.deg2rad(30.0))
# Held-out episodes draw from their own random stream, so they never repeat a demonstration's placement
# (demonstrations draw from default_rng(seed * 1000003 + attempt)).
HELDOUT_STREAM = 0x4E1D0


def quat_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle between two unit quaternions."""
    return float(2 * np.arccos(np.clip(abs(float(np.dot(a, b))), -1.0, 1.0)))


@dataclass
class Placement:
    xyz: np.ndarray  # (objects, 3)
    quat: np.ndarray  # (objects, 4) wxyz


class PlacementSampler:
    """Placements around, and never on, a task's official episode grid (see the module docstring)."""

    def __init__(self, official_xyz: np.ndarray, official_quat: np.ndarray) -> None:
        self.official_xyz = official_xyz  # (P, objects, 3)
        self.official_quat = official_quat  # (Q, objects, 4)

    @property
    def min_source_target_distance(self) -> float:
        """The official grid's smallest xy distance between source (object 0) and target (object 1); 0 with one
        object."""
        if self.official_xyz.shape[1] < 2:
            return 0.0
        gaps = np.linalg.norm(self.official_xyz[:, 0, :2] - self.official_xyz[:, 1, :2], axis=1)
        return float(gaps.min())

    def sample(self, rng: np.random.Generator) -> Placement:
        while True:
            xyz = self._positions(rng)
            if xyz.shape[0] < 2 or np.linalg.norm(xyz[0, :2] - xyz[1, :2]) >= self.min_source_target_distance:
                break
        quat = self.official_quat[rng.integers(len(self.official_quat))].copy()
        while True:
            turn = rng.uniform(*YAW_TURN) * rng.choice([-1.0, 1.0])
            source = quaternion_multiply(np.array([np.cos(turn / 2), 0.0, 0.0, np.sin(turn / 2)]), quat[0])
            if min(quat_angle(source, q) for q in self.official_quat[:, 0]) >= MIN_YAW_GAP:
                break
        quat[0] = source
        return Placement(xyz, quat)

    def _positions(self, rng: np.random.Generator) -> np.ndarray:
        """(objects, 3): each moved object's position drawn off its official positions (see the module docstring)."""
        objects = self.official_xyz.shape[1]
        xyz = np.empty((objects, 3))
        for i in range(objects):
            official = self.official_xyz[:, i]
            if np.ptp(official[:, :2], axis=0).max() == 0:
                xyz[i] = official[0]
                continue
            low, high = official[:, :2].min(0) - MARGIN, official[:, :2].max(0) + MARGIN
            while True:
                xy = rng.uniform(low, high)
                if np.linalg.norm(official[:, :2] - xy, axis=1).min() >= MIN_POSITION_GAP:
                    break
            xyz[i] = [*xy, official[0, 2]]
        return xyz

    def heldout(self, episode_id: int, seed: int) -> Placement:
        """The held-out grid's episode ``episode_id``: the same placement for the same episode and seed."""
        return self.sample(np.random.default_rng([HELDOUT_STREAM, seed, episode_id]))

    def coincides(self, placement: Placement) -> bool:
        """True if the source object is where and as an official episode puts it (never, by construction)."""
        near = np.linalg.norm(self.official_xyz[:, 0, :2] - placement.xyz[0, :2], axis=1).min() < MIN_POSITION_GAP
        turned = min(quat_angle(placement.quat[0], q) for q in self.official_quat[:, 0]) < MIN_YAW_GAP
        return bool(near and turned)
