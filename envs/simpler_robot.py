"""A SIMPLER task as a robot: ``vlart robot --robot simpler:TASK[:EPISODE]`` drives the simulator in real time.

``SimplerRobotAdapter(task, episode_id, seed)`` builds the task's simulator (ManiSkill3 on the CPU; a
Google-robot task needs the SimplerEnv interpreter, e.g. ``.venv-real2sim/bin/vlart robot``), resets it to the
episode and then serves the control loop like a real arm: ``observe()`` returns the current frame, ``act()``
steps the simulator with the action.

**What hold does.** ``hold()`` steps the simulator once with the hold action: zero end-effector motion, the gripper
where the last action left it (open before any action). Holding advances the simulation, as it does on a real
robot: the world does not pause while the arm holds (an object released mid-air still falls), and the Bridge
controller (``pd_ee_target_delta_pose``) keeps the end-effector target, so the arm itself stays still. Holds are
counted apart from actions (``steps`` counts both).

The simulator runs in the control loop's thread and its step (physics + CPU rendering) takes part of every tick;
it is not truncated at the task's ``max_steps`` (a robot runs until stopped), so ``success`` is SIMPLER's success at
the latest step and ``success_any`` whether it was reached at any step.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from envs.registry import TASKS, current_name
from policies.api.interface import Observation
from runtime.robot.runner import RobotAdapter


def resolve_task(task: str) -> str:
    """A registry name (or one from before the split), or a short name that one simulator's task alone has
    (``widowx_put_eggplant_in_basket``) -> the registry name."""
    name = current_name(task)
    if name in TASKS:
        return name
    matches = [n for n in TASKS if n.split("/", 1)[-1] == task]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"task {task!r} exists in more than one simulator: {', '.join(matches)}; name one")
    raise ValueError(f"unknown SIMPLER task {task!r}; tasks: {', '.join(TASKS)}")


class SimplerRobotAdapter(RobotAdapter):
    def __init__(self, task: str, episode_id: int = 0, seed: int = 0, grid: str = "official") -> None:
        from envs.tasks import make_task

        self.task_name = resolve_task(task)
        self.spec = TASKS[self.task_name]
        if self.spec.grid_size is not None and not 0 <= episode_id < self.spec.grid_size:
            raise ValueError(f"episode {episode_id} is off {self.task_name}'s grid (0 .. {self.spec.grid_size - 1})")
        self.episode_id = episode_id
        self.seed = seed
        self.sim: Optional[Any] = make_task(self.spec, grid=grid)
        self.observation: Observation = self.sim.reset(episode_id=episode_id, seed=seed)
        self.steps = 0  # simulator steps: actions and holds
        self.actions = 0
        self.holds = 0
        self.gripper = 1.0  # the gripper the hold action keeps (policy convention: 1 = open)
        self.last_action: Optional[np.ndarray] = None
        self.last_call: Optional[str] = None  # "act" or "hold"
        self.success = False
        self.success_any = False
        self.grasped: Optional[bool] = None
        self.stopped = 0  # times stop() was called

    @property
    def control_rate_hz(self) -> float:
        return self.spec.control_rate_hz

    def hold_action(self) -> np.ndarray:
        action = np.zeros(7, dtype=np.float32)
        action[-1] = self.gripper
        return action

    def observe(self) -> Observation:
        return self.observation

    def _step(self, action: np.ndarray) -> None:
        if self.sim is None:
            raise RuntimeError("the simulator has been stopped")
        result = self.sim.step(action)
        self.observation = result.observation
        self.success = result.success
        self.success_any |= result.success
        self.grasped = result.grasped
        self.steps += 1
        self.last_action = np.array(action, dtype=np.float32)

    def act(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float32)
        self._step(action)
        self.gripper = float(action[-1])
        self.actions += 1
        self.last_call = "act"

    def hold(self) -> None:
        if self.sim is None:
            return
        self._step(self.hold_action())
        self.holds += 1
        self.last_call = "hold"

    def stop(self) -> None:
        self.stopped += 1
        if self.sim is not None:
            sim, self.sim = self.sim, None
            sim.close()

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task_name,
            "episode_id": self.episode_id,
            "steps": self.steps,
            "actions": self.actions,
            "hold_calls": self.holds,  # explicit hold() calls (the loop's hold ticks arrive as act)
            "last_call": self.last_call,
            "last_action": None if self.last_action is None else [round(float(v), 6) for v in self.last_action],
            "success": self.success,
            "success_any": self.success_any,
            "grasped": self.grasped,
        }
