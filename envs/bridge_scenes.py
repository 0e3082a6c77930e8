"""What the scripted Bridge expert reads from a simulator, for ManiSkill3's twins and for the original SimplerEnv.

Both hold the same tasks, but their objects, poses and arm controllers are read differently: ManiSkill3 batches
everything in torch tensors and keys objects by name; ManiSkill2_real2sim keeps numpy arrays and a list of actors.
Their controllers also turn the target differently (``translation_for``): ManiSkill3 adds the translation to the
previous target and turns it in place; the original's ``ee_align2`` frame turns the previous target about the
*measured* end effector, so with a lag between the two a rotation also moves the target.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from envs.geometry import axis_angle_to_matrix, quaternion_to_matrix


class BridgeScene(Protocol):
    """Positions in metres; world frame unless a name says base (the robot's base frame)."""

    def source_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The source object's position (3,) and rotation matrix (3, 3)."""

    def source_size(self) -> np.ndarray:
        """(3,) the source object's bounding-box size in its own frame."""

    def heights(self) -> tuple[float, float]:
        """The source's and the target's bounding-box heights as they lie."""

    def target_position(self) -> np.ndarray:
        """(3,) the target object's position."""

    def base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """The robot base's position (3,) and rotation matrix (3, 3)."""

    def controller_target(self) -> np.ndarray:
        """(3,) the arm controller's target position in the base frame (deltas accumulate on it)."""

    def translation_for(self, move: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """The translation (3,) an action needs, with axis-angle ``rotation`` (3,), to move the controller's target
        by ``move`` (3,, base frame)."""

    def holding_source(self) -> bool:
        """Whether the fingers hold the source object (the simulator's own grasp test)."""


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.reshape(-1).cpu().numpy() if hasattr(value, "cpu") else value, dtype=np.float64)


class ManiSkill3Scene:
    """A ManiSkill3 Bridge twin (``-v1``; one environment, tensors of batch 1)."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def _pose(self, actor: Any) -> tuple[np.ndarray, np.ndarray]:
        return _array(actor.pose.p), quaternion_to_matrix(_array(actor.pose.q))

    def source_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pose(self.env.objs[self.env.source_obj_name])

    def source_size(self) -> np.ndarray:
        return _array(self.env.episode_model_bbox_sizes[self.env.source_obj_name])

    def heights(self) -> tuple[float, float]:
        return (abs(float(_array(self.env.episode_source_obj_bbox_world)[2])),
                abs(float(_array(self.env.episode_target_obj_bbox_world)[2])))

    def target_position(self) -> np.ndarray:
        return self._pose(self.env.objs[self.env.target_obj_name])[0]

    def base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pose(self.env.agent.robot)

    def controller_target(self) -> np.ndarray:
        return _array(self.env.agent.controller.controllers["arm"]._target_pose.p)

    def translation_for(self, move: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        return move

    def holding_source(self) -> bool:
        return bool(self.env.agent.is_grasping(self.env.objs[self.env.source_obj_name])[0])


class SimplerEnvScene:
    """An original SimplerEnv Bridge task (``-v0``, ManiSkill2_real2sim). Objects are where their centres of mass
    are, as its success test measures them: grasped at its origin, the spoon (whose origin is off its centre of
    mass) slips out of the fingers when the carry starts (official spoon episodes 12 and 20)."""

    def __init__(self, env: Any) -> None:
        self.env = env

    @staticmethod
    def _pose(pose: Any) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(pose.p, dtype=np.float64), quaternion_to_matrix(np.asarray(pose.q, dtype=np.float64))

    def _centre_of_mass(self, actor: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._pose(actor.pose.transform(actor.cmass_local_pose))[0], self._pose(actor.pose)[1]

    def source_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self._centre_of_mass(self.env.episode_source_obj)

    def source_size(self) -> np.ndarray:
        index = self.env.episode_objs.index(self.env.episode_source_obj)
        return np.asarray(self.env.episode_model_bbox_sizes[index], dtype=np.float64)

    def heights(self) -> tuple[float, float]:
        return (abs(float(self.env.episode_source_obj_bbox_world[2])),
                abs(float(self.env.episode_target_obj_bbox_world[2])))

    def target_position(self) -> np.ndarray:
        return self._centre_of_mass(self.env.episode_target_obj)[0]

    def base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pose(self.env.agent.robot.pose)

    def _arm(self) -> Any:
        return self.env.agent.controller.controllers["arm"]

    def controller_target(self) -> np.ndarray:
        return np.asarray(self._arm()._target_pose.p, dtype=np.float64)

    def translation_for(self, move: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """``ee_align2`` puts the new target at measured + translation + R (target - measured), R the rotation's
        matrix: so translation = move + (I - R)(target - measured)."""
        arm = self._arm()
        lag = self.controller_target() - np.asarray(arm.compute_fk(arm.qpos).p, dtype=np.float64)
        return move + lag - axis_angle_to_matrix(rotation) @ lag

    def holding_source(self) -> bool:
        return bool(self.env.agent.check_grasp(self.env.episode_source_obj))


SCENES = {"maniskill3": ManiSkill3Scene, "real2sim": SimplerEnvScene}
