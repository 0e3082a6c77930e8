"""The simulator task for a registry entry, whichever simulator it lives in."""

from __future__ import annotations

from typing import Any

from envs.registry import TaskSpec


def make_task(spec: TaskSpec, grid: str = "official") -> Any:
    """ManiSkill3's ``SimTask`` or, for the Google robot, ``Real2SimTask`` (importable only in the SimplerEnv
    interpreter); both have ``reset(episode_id, seed)``, ``step(policy_action)`` and ``close()``."""
    if spec.backend == "real2sim":
        from envs.real2sim_env import Real2SimTask

        return Real2SimTask(spec, grid=grid)
    from envs.sim_env import SimTask

    return SimTask(spec, grid=grid)
