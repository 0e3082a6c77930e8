"""Named evaluation tasks and suites.

A task says which simulator environment to build, how to read the policy's inputs from it and how to convert the
policy's actions for it. The four SIMPLER WidowX/Bridge digital twins are ManiSkill3's; ``maniskill/pick_cube`` is a
quick tabletop check. Episodes are picked from the task's official ``episode_id`` grid (0 .. grid - 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env_id: str
    max_steps: int
    control_rate_hz: float
    camera: str
    adapter: str  # "widowx_bridge" or "ee_delta_normalized"
    simpler: bool  # a SIMPLER digital twin: needs the Bridge assets, greenscreened frames, an episode grid
    grid_size: Optional[int] = None  # official episode_id grid (positions x orientations); None: seeds only
    instruction: Optional[str] = None  # for tasks whose env has no language instruction
    control_mode: Optional[str] = None
    obs_mode: str = "rgb+segmentation"
    unnorm_key: str = "bridge_orig"


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("simpler/widowx_carrot_on_plate", "PutCarrotOnPlateInScene-v1", 60, 5.0, "3rd_view_camera",
                 "widowx_bridge", True, grid_size=24),
        TaskSpec("simpler/widowx_spoon_on_towel", "PutSpoonOnTableClothInScene-v1", 60, 5.0, "3rd_view_camera",
                 "widowx_bridge", True, grid_size=24),
        TaskSpec("simpler/widowx_stack_cube", "StackGreenCubeOnYellowCubeBakedTexInScene-v1", 60, 5.0,
                 "3rd_view_camera", "widowx_bridge", True, grid_size=24),
        TaskSpec("simpler/widowx_eggplant_in_basket", "PutEggplantInBasketScene-v1", 120, 5.0, "3rd_view_camera",
                 "widowx_bridge", True, grid_size=64),
        TaskSpec("maniskill/pick_cube", "PickCube-v1", 50, 20.0, "base_camera", "ee_delta_normalized", False,
                 instruction="pick up the red cube", control_mode="pd_ee_delta_pose", obs_mode="rgb"),
    )
}

SUITES: dict[str, tuple[str, ...]] = {
    "simpler_widowx": tuple(name for name in TASKS if name.startswith("simpler/")),
    "quick": ("maniskill/pick_cube",),
}


def resolve_suite(name: str) -> list[TaskSpec]:
    """A suite name or a single task name -> its tasks."""
    if name in SUITES:
        return [TASKS[task] for task in SUITES[name]]
    if name in TASKS:
        return [TASKS[name]]
    raise ValueError(
        f"--suite: unknown suite or task {name!r}; suites: {', '.join(SUITES)}; tasks: {', '.join(TASKS)}"
    )
