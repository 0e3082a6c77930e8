"""A privileged scripted expert for the SIMPLER WidowX/Bridge tasks, in ManiSkill3's twins and the original SimplerEnv.

It reads the true object poses and sizes from the simulator (through a ``BridgeScene``: one per simulator, since their
objects and controllers differ) and moves the arm controller's target in steps of at most ``max_step`` metres: above
the source object, down to it, close the gripper, lift, over the target, down, open.
Its actions are in the policy's own convention ([dx, dy, dz] in the robot base frame, [droll, dpitch, dyaw], gripper
1 = open / 0 = close) and go through the same adapter as the policy's during evaluation, so demonstrations and
evaluation share one code path.

It is closed-loop on the controller's target, so it corrects any perturbation of the arm: ``run_expert_episode`` can
execute its actions with Gaussian noise on the translation while recording the clean ones (DART, Laskey et al. 2017),
which shows a learner how to come back from the small errors it will make. If the lift ends without the source object
in the fingers (a grasp that missed), the expert opens the gripper and starts again from the object's current pose,
at most ``MAX_REGRASPS`` times.

With ``shadow`` it labels states another driver visits (DAgger, ``envs.dagger``), so its phase follows the state,
not its own plan: a phase ends when the arm reaches its waypoint, whoever moved it, never on a step count; an arm
already low over the object skips the approach; fingers holding the object start the lift from where the arm is (a
learner that grasped by another path is not sent back); fingers closed on nothing for a while, or an object lost on
the way, start again from the object's pose, every time. A driver reports each executed action (``executed``): the
wrist's yaw and the fingers are then what was executed, not what the expert asked for.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from envs.action_adapters import euler_to_axis_angle
from envs.bridge_scenes import SCENES, BridgeScene

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

    def __init__(self, max_step: float = 0.03, grasp_height: float = GRASP_HEIGHT, shadow: bool = False) -> None:
        self.max_step = max_step
        self.grasp_height = grasp_height
        self.shadow = shadow
        self.phase = 0
        self.phase_steps = 0
        self.scene: Optional[BridgeScene] = None
        self.grasp_yaw = 0.0
        self.applied_yaw = 0.0
        self.regrasps = 0
        self.reopening = False
        self.asked_yaw = 0.0
        self.closed_steps = 0  # consecutive executed steps with the fingers told to close

    def reset(self, task: Any) -> None:
        self.scene = SCENES[task.spec.backend](task.env.unwrapped)
        self.applied_yaw = 0.0
        self.regrasps = 0
        self.reopening = False
        self.target_position = self.scene.target_position()
        self._plan()

    def _plan(self) -> None:
        """Waypoints from the source object's current pose (at reset, and again after a missed grasp)."""
        assert self.scene is not None
        self.phase = 0
        self.phase_steps = 0
        self.source_start, source_rotation = self.scene.source_pose()
        self.grasp_yaw = self._long_axis_yaw(source_rotation)
        source_height, target_height = self.scene.heights()
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

    def _long_axis_yaw(self, rotation: np.ndarray) -> float:
        """The angle in the table plane of the source object's long axis, wrapped to (-pi/2, pi/2]: the wrist turns
        by it so the fingers close across the object (the arm's resting grasp suits a long axis along world x)."""
        assert self.scene is not None
        size = self.scene.source_size()[:2]
        axis = np.zeros(3)
        axis[int(np.argmax(np.abs(size)))] = 1.0
        direction = rotation @ axis
        yaw = float(np.arctan2(direction[1], direction[0]))
        return (yaw + np.pi / 2) % np.pi - np.pi / 2

    @property
    def phase_name(self) -> str:
        return "reopen" if self.reopening else self.waypoints[self.phase][0]

    def act(self) -> np.ndarray:
        name, waypoint, gripper = self.waypoints[self.phase]
        action = np.zeros(7)
        action[6] = gripper
        self.phase_steps += 1
        self.asked_yaw = 0.0
        if self.shadow and not self.reopening and self._follow_the_state():
            return self.act()
        if self.reopening:
            action[6] = 1.0
            if self.phase_steps >= OPEN_STEPS:
                self.reopening = False
                self._plan()
            return action
        if waypoint is None:
            return action
        assert self.scene is not None
        base_p, base_r = self.scene.base_frame()
        delta = base_r.T @ (waypoint - base_p) - self.scene.controller_target()
        distance = np.linalg.norm(delta)
        if distance > self.max_step:
            delta = delta / distance * self.max_step
        if name in ("close", "open"):
            action[:3] = self.scene.translation_for(delta, np.zeros(3))
            # in shadow mode the fingers closing on the object end the close (``_follow_the_state``), not a count
            if not (self.shadow and name == "close") and \
                    self.phase_steps >= (CLOSE_STEPS if name == "close" else OPEN_STEPS):
                self._advance()
            return action
        turning = False
        if name == "approach":
            yaw_step = float(np.clip(self.grasp_yaw - self.applied_yaw, -MAX_YAW_STEP, MAX_YAW_STEP))
            action[5] = self.asked_yaw = yaw_step
            self.applied_yaw += yaw_step
            turning = abs(self.grasp_yaw - self.applied_yaw) > 1e-6
        action[:3] = self.scene.translation_for(delta, euler_to_axis_angle(action[3:6]))
        # this step lands the target on the waypoint (a test on the next step's distance would stall under noise)
        if (distance <= self.max_step and not turning) or (self.phase_steps > 25 and not self.shadow):
            if name == "lift" and not self._holding_source() and (self.shadow or self.regrasps < MAX_REGRASPS):
                self._start_over()
                return action
            self._advance()
        return action

    def executed(self, action: np.ndarray) -> None:
        """The action the arm was given after the last ``act`` (by default, the expert's own)."""
        self.applied_yaw += float(action[5]) - self.asked_yaw
        self.asked_yaw = float(action[5])
        self.closed_steps = self.closed_steps + 1 if action[6] < 0.5 else 0

    def _follow_the_state(self) -> bool:
        """Shadow mode: move to the phase the state is in; True when the phase changed (act again from it)."""
        assert self.scene is not None
        name = self.waypoints[self.phase][0]
        holding = self._holding_source()
        base_p, base_r = self.scene.base_frame()
        arm = base_p + base_r @ self.scene.controller_target()
        if holding and name in ("approach", "descend", "close"):
            lift = np.array([arm[0], arm[1], max(arm[2], self.source_start[2] + LIFT_HEIGHT)])
            self.waypoints[self._index("lift")] = ("lift", lift, 0.0)
            self._go("lift")
            return True
        missed = name == "close" and self.closed_steps > CLOSE_STEPS + 2
        if (not holding and name in ("lift", "carry", "lower")) or missed:
            self._start_over()
            return True
        over_source = np.linalg.norm(arm[:2] - self.source_start[:2]) < 0.02
        if name == "approach" and over_source and arm[2] < self.source_start[2] + APPROACH_HEIGHT:
            self._go("descend")
            return True
        return False

    def _start_over(self) -> None:
        """A missed or lost grasp: open the fingers, then plan again from the object's pose."""
        self.regrasps += 1
        self.reopening = True
        self.phase_steps = 0

    def _index(self, name: str) -> int:
        return [waypoint[0] for waypoint in self.waypoints].index(name)

    def _go(self, name: str) -> None:
        self.phase = self._index(name)
        self.phase_steps = 0

    def _holding_source(self) -> bool:
        assert self.scene is not None
        return self.scene.holding_source()

    def _advance(self) -> None:
        self.phase = min(self.phase + 1, len(self.waypoints) - 1)
        self.phase_steps = 0


def run_expert_episode(task: Any, episode_id: int, seed: int, max_steps: Optional[int] = None,
                       expert: Optional[ScriptedExpert] = None, action_noise: float = 0.0,
                       to_the_end: bool = False) -> dict[str, Any]:
    """One expert episode: observations, actions (policy convention, as the expert chose them) and whether it
    succeeded. ``action_noise`` > 0 executes each action with N(0, action_noise^2) metres added to dx, dy, dz (drawn
    from ``seed``): the recorded actions stay clean, the expert's next ones correct the perturbation. The episode
    ends once the expert is done and the task solved (demonstrations stop there), or with ``to_the_end`` after all
    its steps, as SIMPLER scores a policy (success at the last step)."""
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
        if expert.phase_name == "done" and result.success and not to_the_end:
            break
    return {"instruction": obs.instruction, "frames": frames, "actions": np.array(actions),
            "success": bool(successes and successes[-1]), "success_any": any(successes), "grasped": grasped,
            "steps": len(actions), "regrasps": expert.regrasps}
