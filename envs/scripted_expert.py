"""A privileged scripted expert for the SIMPLER WidowX/Bridge tasks.

It reads the true object poses and sizes from the simulator and moves the arm controller's target in steps of at
most ``max_step`` metres: above the source object, down to it, close the gripper, lift, over the target, down, open.
Its actions are in the policy's own convention ([dx, dy, dz] in the robot base frame, [droll, dpitch, dyaw], gripper
1 = open / 0 = close) and go through the same adapter as the policy's during evaluation, so demonstrations and
evaluation share one code path.

It is closed-loop on the controller's target, so it corrects any perturbation of the arm: ``run_expert_episode`` can
execute its actions with Gaussian noise on the translation while recording the clean ones (DART, Laskey et al. 2017),
which shows a learner how to come back from the small errors it will make. If the lift ends without the source object
in the fingers (a grasp that missed), the expert opens the gripper and starts again from the object's current pose,
at most ``MAX_REGRASPS`` times.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from envs.geometry import quaternion_to_matrix

APPROACH_HEIGHT = 0.08
LIFT_HEIGHT = 0.10
RELEASE_CLEARANCE = 0.02
GRASP_HEIGHT = 0.005
CLOSE_STEPS = 3
OPEN_STEPS = 3
MAX_YAW_STEP = 0.4
MAX_REGRASPS = 2


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
        self.regrasps = 0
        self.reopening = False

    def reset(self, task: Any) -> None:
        self.env = task.env.unwrapped
        self.applied_yaw = 0.0
        self.regrasps = 0
        self.reopening = False
        target = self.env.objs[self.env.target_obj_name]
        self.target_position = target.pose.p[0].cpu().numpy().astype(np.float64)
        self._plan()

    def _plan(self) -> None:
        """Waypoints from the source object's current pose (at reset, and again after a missed grasp)."""
        self.phase = 0
        self.phase_steps = 0
        source = self.env.objs[self.env.source_obj_name]
        self.grasp_yaw = self._long_axis_yaw(source)
        self.source_start = source.pose.p[0].cpu().numpy().astype(np.float64)
        source_height = float(abs(self.env.episode_source_obj_bbox_world[2]))
        target_height = float(abs(self.env.episode_target_obj_bbox_world[2]))
        release_z = self.target_position[2] + (source_height + target_height) / 2 + RELEASE_CLEARANCE
        grasp = self.source_start + [0, 0, self.grasp_height]
        release = np.array([*self.target_position[:2], release_z])
        # close and open keep steering to their waypoint, so a perturbed arm is brought back while the fingers move
        self.waypoints = [
            ("approach", self.source_start + [0, 0, APPROACH_HEIGHT], 1.0),
            ("descend", grasp, 1.0),
            ("close", grasp, 0.0),
            ("lift", self.source_start + [0, 0, LIFT_HEIGHT], 0.0),
            ("carry", self.target_position + [0, 0, LIFT_HEIGHT], 0.0),
            ("lower", release, 0.0),
            ("open", release, 1.0),
            ("done", None, 1.0),
        ]

    def _long_axis_yaw(self, source: Any) -> float:
        """The angle in the table plane of the source object's long axis, wrapped to (-pi/2, pi/2]: the wrist turns
        by it so the fingers close across the object (the arm's resting grasp suits a long axis along world x)."""
        size = self.env.episode_model_bbox_sizes[self.env.source_obj_name].reshape(-1)[:2].cpu().numpy()
        axis = np.zeros(3)
        axis[int(np.argmax(np.abs(size)))] = 1.0
        direction = quaternion_to_matrix(source.pose.q[0].cpu().numpy().astype(np.float64)) @ axis
        yaw = float(np.arctan2(direction[1], direction[0]))
        return (yaw + np.pi / 2) % np.pi - np.pi / 2

    @property
    def phase_name(self) -> str:
        return "reopen" if self.reopening else self.waypoints[self.phase][0]

    def _base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        base = self.env.agent.robot.pose
        return base.p[0].cpu().numpy().astype(np.float64), quaternion_to_matrix(base.q[0].cpu().numpy().astype(np.float64))

    def _controller_target(self) -> np.ndarray:
        """The arm controller's current target position, in the base frame (deltas accumulate on it)."""
        arm = self.env.agent.controller.controllers["arm"]
        return arm._target_pose.p[0].cpu().numpy().astype(np.float64)

    def act(self) -> np.ndarray:
        name, waypoint, gripper = self.waypoints[self.phase]
        action = np.zeros(7)
        action[6] = gripper
        self.phase_steps += 1
        if self.reopening:
            action[6] = 1.0
            if self.phase_steps >= OPEN_STEPS:
                self.reopening = False
                self._plan()
            return action
        if waypoint is None:
            return action
        base_p, base_r = self._base_frame()
        goal = base_r.T @ (waypoint - base_p)
        delta = goal - self._controller_target()
        distance = np.linalg.norm(delta)
        if distance > self.max_step:
            delta = delta / distance * self.max_step
        action[:3] = delta
        if name in ("close", "open"):
            if self.phase_steps >= (CLOSE_STEPS if name == "close" else OPEN_STEPS):
                self._advance()
            return action
        turning = False
        if name == "approach":
            yaw_step = float(np.clip(self.grasp_yaw - self.applied_yaw, -MAX_YAW_STEP, MAX_YAW_STEP))
            action[5] = yaw_step
            self.applied_yaw += yaw_step
            turning = abs(self.grasp_yaw - self.applied_yaw) > 1e-6
        # this step lands the target on the waypoint (a test on the next step's distance would stall under noise)
        if (distance <= self.max_step and not turning) or self.phase_steps > 25:
            if name == "lift" and not self._holding_source() and self.regrasps < MAX_REGRASPS:
                self.regrasps += 1
                self.reopening = True
                self.phase_steps = 0
                return action
            self._advance()
        return action

    def _holding_source(self) -> bool:
        return bool(self.env.agent.is_grasping(self.env.objs[self.env.source_obj_name])[0])

    def _advance(self) -> None:
        self.phase = min(self.phase + 1, len(self.waypoints) - 1)
        self.phase_steps = 0


def run_expert_episode(task: Any, episode_id: int, seed: int, max_steps: Optional[int] = None,
                       expert: Optional[ScriptedExpert] = None, action_noise: float = 0.0) -> dict[str, Any]:
    """One expert episode: observations, actions (policy convention, as the expert chose them) and whether it
    succeeded. ``action_noise`` > 0 executes each action with N(0, action_noise^2) metres added to dx, dy, dz (drawn
    from ``seed``): the recorded actions stay clean, the expert's next ones correct the perturbation."""
    expert = expert or ScriptedExpert()
    rng = np.random.default_rng(seed)
    obs = task.reset(episode_id, seed)
    expert.reset(task)
    frames, actions, successes, grasped = [obs.image], [], [], None
    for _ in range(max_steps or task.spec.max_steps):
        action = expert.act()
        executed = action.copy()
        if action_noise > 0:
            executed[:3] += rng.normal(0.0, action_noise, 3)
        result = task.step(executed)
        actions.append(action)
        successes.append(result.success)
        grasped = result.grasped
        frames.append(result.observation.image)
        if expert.phase_name == "done" and result.success:
            break
    return {"instruction": obs.instruction, "frames": frames, "actions": np.array(actions),
            "success": bool(successes and successes[-1]), "success_any": any(successes), "grasped": grasped,
            "steps": len(actions), "regrasps": expert.regrasps}
