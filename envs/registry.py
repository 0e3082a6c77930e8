"""Named evaluation tasks and suites.

A task says which simulator environment to build, how to read the policy's inputs from it and how to convert the
policy's actions for it. The four SIMPLER WidowX/Bridge digital twins are ManiSkill3's; ``maniskill/pick_cube`` is a
quick tabletop check. Episodes are picked from the task's official ``episode_id`` grid (0 .. grid - 1).

SIMPLER's Google-robot tasks exist only in the original SimplerEnv (ManiSkill2_real2sim, SAPIEN 2): their backend
is ``real2sim``, run by worker processes of that environment's own interpreter (``envs/real2sim_workers.py``), and
their grid is listed episode by episode in ``envs/google_robot_grids.py``.
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
    adapter: str  # "widowx_bridge", "google_robot" or "ee_delta_normalized"
    simpler: bool  # a SIMPLER digital twin: needs the Bridge assets, greenscreened frames, an episode grid
    grid_size: Optional[int] = None  # official episode_id grid (positions x orientations); None: seeds only
    instruction: Optional[str] = None  # for tasks whose env has no language instruction
    control_mode: Optional[str] = None
    obs_mode: str = "rgb+segmentation"
    # The robot's action conventions where they differ from the model's defaults (which are the WidowX's): the
    # statistics to unnormalise with and CogACT's action-ensemble window (its SIMPLER wrapper: 7 WidowX, 2 Google).
    unnorm_key: Optional[str] = None
    ensemble_horizon: Optional[int] = None
    backend: str = "maniskill3"  # or "real2sim": the original SimplerEnv, in its own interpreter


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
        *(TaskSpec(f"simpler/google_{name}", env_id, steps, 3.0, "overhead_camera", "google_robot", True,
                   grid_size=size, unnorm_key="fractal20220817_data", ensemble_horizon=2, backend="real2sim")
          for name, env_id, steps, size in (
              ("pick_coke_can", "GraspSingleOpenedCokeCanInScene-v0", 80, 300),
              ("move_near", "MoveNearGoogleBakedTexInScene-v0", 80, 240),
              ("open_drawer", "Open{Top,Middle,Bottom}DrawerCustomInScene-v0", 113, 108),
              ("close_drawer", "Close{Top,Middle,Bottom}DrawerCustomInScene-v0", 113, 108),
              ("place_apple_in_drawer", "PlaceIntoClosedTopDrawerCustomInScene-v0", 200, 108),
          )),
        TaskSpec("maniskill/pick_cube", "PickCube-v1", 50, 20.0, "base_camera", "ee_delta_normalized", False,
                 instruction="pick up the red cube", control_mode="pd_ee_delta_pose", obs_mode="rgb"),
    )
}

SUITES: dict[str, tuple[str, ...]] = {
    "simpler_widowx": tuple(name for name in TASKS if name.startswith("simpler/widowx_")),
    "simpler_google_vm": tuple(name for name in TASKS if name.startswith("simpler/google_")),
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
