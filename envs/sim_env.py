"""One simulator environment for one task: policy inputs out, policy actions in.

``SimTask(spec)`` builds the ManiSkill3 environment on the CPU physics backend with the render backend chosen by
``envs.rendering``; ``reset(episode_id, seed)`` returns the first ``Observation`` (uint8 RGB frame from the task's
camera and the task's instruction), ``step(policy_action)`` converts the action with the task's adapter (CogACT's
WidowX conversion for SIMPLER) and returns the next observation and whether the task is solved at this step.
With ``grid="heldout"`` a SIMPLER task's episodes put the objects off the official grid (``envs/placements.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from envs.action_adapters import ADAPTERS
from envs.placements import GRIDS, Placement, PlacementSampler
from envs.registry import TaskSpec
from envs.rendering import check_simpler_assets, configure_rendering
from policies.api.interface import Observation


@dataclass
class StepResult:
    observation: Observation
    success: bool
    env_action: np.ndarray
    # SIMPLER's partial success: the source object held for 5+ consecutive steps so far (None: the task has no such
    # measure). Bridge tasks accumulate it over the episode, so the last step's value is the episode's.
    grasped: Optional[bool] = None


class SimTask:
    def __init__(self, spec: TaskSpec, grid: str = "official") -> None:
        if spec.backend != "maniskill3":
            raise ValueError(f"{spec.name} runs in the original SimplerEnv (its own interpreter, .venv-real2sim), "
                             "not ManiSkill3: build it with envs.tasks.make_task there, or run vlart eval")
        if grid not in GRIDS:
            raise ValueError(f"grid: expected one of {', '.join(GRIDS)}, got {grid!r}")
        if grid == "heldout" and spec.grid_size is None:
            raise ValueError(f"grid: {spec.name} has no official grid to hold out from")
        self.spec = spec
        self.grid = grid
        render_backend = configure_rendering()
        if spec.simpler:
            check_simpler_assets()
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the environments)
        from mani_skill.utils.logging_utils import logger as maniskill_logger

        maniskill_logger.setLevel(logging.ERROR)  # its per-make warnings about the Bridge assets are expected
        if spec.simpler:
            # ManiSkill 3.0.1 keeps this list on the class, so a second digital-twin task type built in the same
            # process would inherit the first one's segmentation ids (stale greenscreen holes). Start it empty.
            from mani_skill.envs.tasks.digital_twins.base_env import BaseDigitalTwinEnv

            BaseDigitalTwinEnv._objects_to_remove_from_greenscreen = []
        kwargs = {"control_mode": spec.control_mode} if spec.control_mode else {}
        self.env = gym.make(spec.env_id, obs_mode=spec.obs_mode, num_envs=1, sim_backend="physx_cpu",
                            render_backend=render_backend, **kwargs)
        self.adapter = ADAPTERS[spec.adapter]()
        self.placements: Optional[PlacementSampler] = None  # off the official grid; None: the task has no grid
        if spec.grid_size is not None:
            unwrapped = self.env.unwrapped
            entries = len(unwrapped.xyz_configs) * len(unwrapped.quat_configs)
            if entries != spec.grid_size:
                raise RuntimeError(f"{spec.env_id}: episode grid has {entries} entries, the task expects "
                                   f"{spec.grid_size}")
            self.placements = PlacementSampler(unwrapped.xyz_configs.cpu().numpy().astype(np.float64),
                                               unwrapped.quat_configs.cpu().numpy().astype(np.float64))
        self.instruction = spec.instruction or ""
        self._home_qpos = None  # the arm's joint positions after a reset (bridge tasks), recorded at the first one

    def _observation(self, obs: dict) -> Observation:
        frame = obs["sensor_data"][self.spec.camera]["rgb"][0].cpu().numpy()
        return Observation(image=np.ascontiguousarray(frame, dtype=np.uint8), instruction=self.instruction)

    def place(self, placement: Placement) -> None:
        """Every later reset puts the objects at ``placement``: it becomes the whole configuration table."""
        import torch

        unwrapped = self.env.unwrapped
        unwrapped.xyz_configs = torch.tensor(placement.xyz[None], dtype=torch.float32)
        unwrapped.quat_configs = torch.tensor(placement.quat[None], dtype=torch.float32)

    def reset(self, episode_id: int, seed: int) -> Observation:
        if self.grid == "heldout":
            assert self.placements is not None
            self.place(self.placements.heldout(episode_id, seed))
        options = {"episode_id": episode_id} if self.spec.grid_size is not None else {}
        self._clear_previous_episode()
        obs, _ = self.env.reset(seed=seed, options=options)
        if self.spec.simpler and self._home_qpos is None:
            self._home_qpos = self.env.unwrapped.agent.robot.get_qpos().clone()
        if self.spec.instruction is None:
            self.instruction = self.env.unwrapped.get_language_instruction()[0]
        self.adapter.reset()
        return self._observation(obs)

    def _clear_previous_episode(self) -> None:
        """Send the arm home and stop every object before a bridge task's reset, as a new environment starts.

        ManiSkill's bridge reset places the objects and lets them settle with the arm still where the last episode
        left it, and only then moves the arm home; it keeps the objects' velocities. An arm left above the eggplant
        task's basket (after a success) catches the invisible plane that marks the goal as it drops into the basket,
        tilting it so the next episode cannot succeed. ManiSkill evaluates each episode in its own fresh environment.
        """
        if self._home_qpos is None:
            return
        import torch

        unwrapped = self.env.unwrapped
        robot = unwrapped.agent.robot
        unwrapped.agent.reset(self._home_qpos)
        robot.set_joint_drive_targets(self._home_qpos, joints=robot.get_active_joints())
        for actor in unwrapped.objs.values():
            actor.set_linear_velocity(torch.zeros(3))
            actor.set_angular_velocity(torch.zeros(3))

    def step(self, policy_action: np.ndarray) -> StepResult:
        import torch

        env_action = self.adapter(policy_action)
        obs, _, _, _, info = self.env.step(torch.from_numpy(env_action))
        grasped = bool(info["consecutive_grasp"].reshape(-1)[0]) if "consecutive_grasp" in info else None
        return StepResult(self._observation(obs), bool(info["success"].reshape(-1)[0]), env_action, grasped)

    def close(self) -> None:
        self.env.close()
