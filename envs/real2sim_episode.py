"""One episode of an original-SimplerEnv grid (Google robot or WidowX): what to build and how to reset it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from envs.geometry import quaternion_multiply


@dataclass(frozen=True)
class Real2SimEpisode:
    """One episode of an official grid: how to build the environment and how to reset it."""

    env_id: str
    robot: str  # ManiSkill2_real2sim's robot uid (the camera rig comes with it)
    scene: str
    overlay: str  # file name under the asset pack's real_inpainting/
    build: tuple[tuple[str, Any], ...]  # constructor keywords besides the common ones (hashable: envs are reused)
    robot_xy: tuple[float, float]
    robot_yaw: float
    obj_xy: Optional[tuple[float, float]] = None
    obj_episode: Optional[int] = None  # the env's own episode id (move near, Bridge) instead of a position

    def robot_quat(self) -> np.ndarray:
        """(4,) wxyz: a yaw about z composed with the scripts' centre orientation (0, 0, 0, 1), i.e. the robot faces
        back along -x, as ``Pose(q=euler2quat(0, 0, yaw)) * Pose(q=[0, 0, 0, 1])`` gives it."""
        yaw_quat = np.array([np.cos(self.robot_yaw / 2), 0.0, 0.0, np.sin(self.robot_yaw / 2)])
        return quaternion_multiply(yaw_quat, np.array([0.0, 0.0, 0.0, 1.0]))

    def reset_options(self) -> dict[str, Any]:
        obj: dict[str, Any] = ({"episode_id": self.obj_episode} if self.obj_episode is not None
                               else {"init_xy": np.array(self.obj_xy if self.obj_xy is not None else (0.0, 0.0))})
        return {"robot_init_options": {"init_xy": np.array(self.robot_xy), "init_rot_quat": self.robot_quat()},
                "obj_init_options": obj}
