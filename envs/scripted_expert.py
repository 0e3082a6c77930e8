"""A privileged scripted expert for the SIMPLER WidowX/Bridge tasks.

It reads the true object poses and sizes from the simulator and moves the arm controller's target in steps of at
most ``max_step`` metres: above the source object, down to it, close the gripper, lift, over the target, down, open.
Its actions are in the policy's own convention ([dx, dy, dz] in the robot base frame, [droll, dpitch, dyaw], gripper
1 = open / 0 = close) and go through the same adapter as the policy's during evaluation, so demonstrations and
evaluation share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

APPROACH_HEIGHT = 0.08
LIFT_HEIGHT = 0.10
RELEASE_CLEARANCE = 0.02
GRASP_HEIGHT = 0.005
CLOSE_STEPS = 3
OPEN_STEPS = 3
REACHED = 0.01
MAX_YAW_STEP = 0.4


@dataclass
class Phase:
    name: str
    gripper: float  # 1 open, 0 closed (the policy's convention)
    hold_steps: int = 0  # a phase that waits (gripper moving) instead of moving the arm


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


class ScriptedExpert:
    """Call ``reset(task)`` after each ``task.reset``, then ``act()`` for each step's 7-d policy action."""

    def __init__(self, max_step: float = 0.03, grasp_height: float = GRASP_HEIGHT) -> None:
        self.max_step = max_step
        self.grasp_height = grasp_height
        self.phase = 0
        self.phase_steps = 0
        self.env: Any = None
        self.grasp_yaw = 0.0
        self.applied_yaw = 0.0

    def reset(self, task: Any) -> None:
        self.env = task.env.unwrapped
        self.phase = 0
        self.phase_steps = 0
        self.applied_yaw = 0.0
        source = self.env.objs[self.env.source_obj_name]
        self.grasp_yaw = self._long_axis_yaw(source)
        target = self.env.objs[self.env.target_obj_name]
        self.source_start = source.pose.p[0].cpu().numpy().astype(np.float64)
        self.target_position = target.pose.p[0].cpu().numpy().astype(np.float64)
        source_height = float(abs(self.env.episode_source_obj_bbox_world[2]))
        target_height = float(abs(self.env.episode_target_obj_bbox_world[2]))
        release_z = self.target_position[2] + (source_height + target_height) / 2 + RELEASE_CLEARANCE
        self.waypoints = [
            ("approach", self.source_start + [0, 0, APPROACH_HEIGHT], 1.0),
            ("descend", self.source_start + [0, 0, self.grasp_height], 1.0),
            ("close", None, 0.0),
            ("lift", self.source_start + [0, 0, LIFT_HEIGHT], 0.0),
            ("carry", self.target_position + [0, 0, LIFT_HEIGHT], 0.0),
            ("lower", np.array([*self.target_position[:2], release_z]), 0.0),
            ("open", None, 1.0),
            ("done", None, 1.0),
        ]

    def _long_axis_yaw(self, source: Any) -> float:
        """The angle in the table plane of the source object's long axis, wrapped to (-pi/2, pi/2]: the wrist turns
        by it so the fingers close across the object (the arm's resting grasp suits a long axis along world x)."""
        size = self.env.episode_model_bbox_sizes[self.env.source_obj_name].reshape(-1)[:2].cpu().numpy()
        axis = np.zeros(3)
        axis[int(np.argmax(np.abs(size)))] = 1.0
        direction = _quat_to_matrix(source.pose.q[0].cpu().numpy().astype(np.float64)) @ axis
        yaw = float(np.arctan2(direction[1], direction[0]))
        return (yaw + np.pi / 2) % np.pi - np.pi / 2

    @property
    def phase_name(self) -> str:
        return self.waypoints[self.phase][0]

    def _base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        base = self.env.agent.robot.pose
        return base.p[0].cpu().numpy().astype(np.float64), _quat_to_matrix(base.q[0].cpu().numpy().astype(np.float64))

    def _controller_target(self) -> np.ndarray:
        """The arm controller's current target position, in the base frame (deltas accumulate on it)."""
        arm = self.env.agent.controller.controllers["arm"]
        return arm._target_pose.p[0].cpu().numpy().astype(np.float64)

    def act(self) -> np.ndarray:
        name, waypoint, gripper = self.waypoints[self.phase]
        action = np.zeros(7)
        action[6] = gripper
        self.phase_steps += 1
        if waypoint is None:
            if name in ("close", "open") and self.phase_steps >= (CLOSE_STEPS if name == "close" else OPEN_STEPS):
                self._advance()
            return action
        base_p, base_r = self._base_frame()
        goal = base_r.T @ (waypoint - base_p)
        delta = goal - self._controller_target()
        distance = np.linalg.norm(delta)
        if distance > self.max_step:
            delta = delta / distance * self.max_step
        action[:3] = delta
        turning = False
        if name == "approach":
            yaw_step = float(np.clip(self.grasp_yaw - self.applied_yaw, -MAX_YAW_STEP, MAX_YAW_STEP))
            action[5] = yaw_step
            self.applied_yaw += yaw_step
            turning = abs(self.grasp_yaw - self.applied_yaw) > 1e-6
        if (distance <= REACHED and not turning) or self.phase_steps > 25:
            self._advance()
        return action

    def _advance(self) -> None:
        self.phase = min(self.phase + 1, len(self.waypoints) - 1)
        self.phase_steps = 0


def run_expert_episode(task: Any, episode_id: int, seed: int, max_steps: Optional[int] = None,
                       expert: Optional[ScriptedExpert] = None) -> dict[str, Any]:
    """One expert episode: observations, actions (policy convention) and whether it succeeded."""
    expert = expert or ScriptedExpert()
    obs = task.reset(episode_id, seed)
    expert.reset(task)
    frames, actions, successes, grasped = [obs.image], [], [], None
    for _ in range(max_steps or task.spec.max_steps):
        action = expert.act()
        result = task.step(action)
        actions.append(action)
        successes.append(result.success)
        grasped = result.grasped
        frames.append(result.observation.image)
        if expert.phase_name == "done" and result.success:
            break
    return {"instruction": obs.instruction, "frames": frames, "actions": np.array(actions),
            "success": bool(successes and successes[-1]), "success_any": any(successes), "grasped": grasped,
            "steps": len(actions)}
