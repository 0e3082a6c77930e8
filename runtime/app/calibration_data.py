"""Real observations for calibrating accelerations (``vlart calibrate``, presets that prune the LLM).

With the SIMPLER assets and ManiSkill present: for each WidowX task, the first frame of spread-out episodes of its
held-out grid (placements off the official grid, which is the test set: pruning is a choice, so it is calibrated on
other scenes) and frames of a short rollout of the policy being calibrated (one chunk predicted per collected frame,
its first rows executed), each with the task's instruction. Without them: the sample Bridge frame with a set of Bridge
instructions, which is a real camera frame but always the same scene.
"""

from __future__ import annotations

from typing import Any, Optional

from envs.sample_frames import sample_frame, simpler_available
from policies.api.interface import Observation

ROLLOUT_ACTIONS_PER_FRAME = 4
FALLBACK_INSTRUCTIONS = [
    "put carrot on plate", "put the spoon on the towel", "stack the green block on the yellow block",
    "put eggplant into yellow basket", "put the carrot on the towel", "pick up the spoon",
]


def simpler_observations(count: int, policy: Optional[Any], tasks: Optional[list[str]] = None) -> list[Observation]:
    from envs.registry import SUITES, TASKS
    from envs.sim_env import SimTask

    names = tasks or list(SUITES["ms3_twin_bridge"])
    per_task = [count // len(names) + (i < count % len(names)) for i in range(len(names))]
    observations: list[Observation] = []
    for name, wanted in zip(names, per_task):
        if wanted == 0:
            continue
        spec = TASKS[name]
        task = SimTask(spec, grid="heldout" if spec.grid_size is not None else "official")
        try:
            first_frames = max(1, wanted // 2)
            grid = spec.grid_size or first_frames
            for k in range(first_frames):
                episode = (k * grid) // first_frames
                observations.append(task.reset(episode_id=episode, seed=episode))
            obs = task.reset(episode_id=0, seed=0)
            for step in range(wanted - first_frames):
                if policy is None:
                    break
                chunk = policy.predict_action(obs, seed=step).actions
                for action in chunk[:ROLLOUT_ACTIONS_PER_FRAME]:
                    obs = task.step(action).observation
                observations.append(obs)
        finally:
            task.close()
    return observations


def sample_observations(count: int) -> list[Observation]:
    frame = sample_frame()
    return [Observation(frame, FALLBACK_INSTRUCTIONS[i % len(FALLBACK_INSTRUCTIONS)]) for i in range(count)]


def calibration_observations(count: int, policy: Optional[Any] = None,
                             tasks: Optional[list[str]] = None) -> tuple[list[Observation], str]:
    """``count`` observations and a description of where they came from."""
    if simpler_available():
        observations = simpler_observations(count, policy, tasks)
        if len(observations) >= count or policy is None:
            return observations, "SIMPLER held-out first frames and policy rollout frames"
        return observations + sample_observations(count - len(observations)), "SIMPLER frames + sample frame"
    return sample_observations(count), "the sample Bridge frame (set MS_ASSET_DIR for SIMPLER frames)"
