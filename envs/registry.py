"""Named evaluation tasks and suites; the name says which simulator a number comes from.

A task says which simulator environment to build, how to read the policy's inputs from it and how to convert the
policy's actions for it. Episodes are picked from the task's official ``episode_id`` grid (0 .. grid - 1).

- ``simplerenv/...``: SIMPLER as published, in the original SimplerEnv (ManiSkill2_real2sim on SAPIEN 2): the four
  WidowX/Bridge tasks and the five Google-robot visual-matching tasks. Numbers from these compare with the papers'
  (CogACT, Octo, OpenVLA, SpatialVLA, pi0). Their backend is ``real2sim``: worker processes of that environment's own
  interpreter (``envs/real2sim_workers.py``) run them; their grids are listed episode by episode
  (``envs/bridge_grids.py``, ``envs/google_robot_grids.py``).
- ``ms3_twin/...``: ManiSkill3's digital twins of the four Bridge tasks (``-v1``), the fast path in vlart's own
  interpreter. They are a different benchmark (controller, friction, success test and the eggplant grid differ:
  docs/simpler.md), so their numbers do not compare with the papers'.
- ``maniskill/pick_cube``: a quick tabletop check.

Names before the split (``simpler/widowx_*`` for the twins, ``simpler/google_*``, the suites ``simpler_widowx`` and
``simpler_google_vm``) still resolve, with a warning naming the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
import warnings
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
    sim_rate_hz: Optional[int] = None  # physics rate where the task fixes it (the original SimplerEnv's)

    @property
    def simulator(self) -> str:
        """What a results file records as the simulator: the benchmark's own, or ManiSkill3's twin."""
        if self.backend == "real2sim":
            return "SimplerEnv (ManiSkill2_real2sim, SAPIEN 2.2.2)"
        return "ManiSkill3 digital twin" if self.simpler else "ManiSkill3"


BRIDGE_CONTROL_MODE = "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos"
GOOGLE_CONTROL_MODE = ("arm_pd_ee_delta_pose_align_interpolate_by_planner_gripper_pd_joint_target_delta_pos_"
                       "interpolate_by_planner")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        *(TaskSpec(f"simplerenv/widowx_{name}", env_id, steps, 5.0, "3rd_view_camera", "widowx_bridge", True,
                   grid_size=24, control_mode=BRIDGE_CONTROL_MODE, backend="real2sim", sim_rate_hz=500)
          for name, env_id, steps in (
              ("spoon_on_towel", "PutSpoonOnTableClothInScene-v0", 60),
              ("carrot_on_plate", "PutCarrotOnPlateInScene-v0", 60),
              ("stack_cube", "StackGreenCubeOnYellowCubeBakedTexInScene-v0", 60),
              ("put_eggplant_in_basket", "PutEggplantInBasketScene-v0", 120),
          )),
        *(TaskSpec(f"simplerenv/google_{name}", env_id, steps, 3.0, "overhead_camera", "google_robot", True,
                   grid_size=size, control_mode=GOOGLE_CONTROL_MODE, unnorm_key="fractal20220817_data",
                   ensemble_horizon=2, backend="real2sim", sim_rate_hz=513)
          for name, env_id, steps, size in (
              ("pick_coke_can", "GraspSingleOpenedCokeCanInScene-v0", 80, 300),
              ("move_near", "MoveNearGoogleBakedTexInScene-v0", 80, 240),
              ("open_drawer", "Open{Top,Middle,Bottom}DrawerCustomInScene-v0", 113, 108),
              ("close_drawer", "Close{Top,Middle,Bottom}DrawerCustomInScene-v0", 113, 108),
              ("place_apple_in_drawer", "PlaceIntoClosedTopDrawerCustomInScene-v0", 200, 108),
          )),
        *(TaskSpec(f"ms3_twin/widowx_{name}", env_id, steps, 5.0, "3rd_view_camera", "widowx_bridge", True,
                   grid_size=size)
          for name, env_id, steps, size in (
              ("carrot_on_plate", "PutCarrotOnPlateInScene-v1", 60, 24),
              ("spoon_on_towel", "PutSpoonOnTableClothInScene-v1", 60, 24),
              ("stack_cube", "StackGreenCubeOnYellowCubeBakedTexInScene-v1", 60, 24),
              ("eggplant_in_basket", "PutEggplantInBasketScene-v1", 120, 64),
          )),
        TaskSpec("maniskill/pick_cube", "PickCube-v1", 50, 20.0, "base_camera", "ee_delta_normalized", False,
                 instruction="pick up the red cube", control_mode="pd_ee_delta_pose", obs_mode="rgb"),
    )
}

SUITES: dict[str, tuple[str, ...]] = {
    "simplerenv_bridge": tuple(name for name in TASKS if name.startswith("simplerenv/widowx_")),
    "simplerenv_google_vm": tuple(name for name in TASKS if name.startswith("simplerenv/google_")),
    "simplerenv": tuple(name for name in TASKS if name.startswith("simplerenv/")),
    "ms3_twin_bridge": tuple(name for name in TASKS if name.startswith("ms3_twin/")),
    "quick": ("maniskill/pick_cube",),
}

# Names before the twins and the originals were told apart (the twins' Bridge tasks were "simpler/widowx_*").
RENAMED: dict[str, str] = {
    "simpler_widowx": "ms3_twin_bridge",
    "simpler_google_vm": "simplerenv_google_vm",
    **{name.replace("ms3_twin/", "simpler/"): name for name in SUITES["ms3_twin_bridge"]},
    **{name.replace("simplerenv/", "simpler/"): name for name in SUITES["simplerenv_google_vm"]},
}


def current_name(name: str) -> str:
    """A suite or task name as the registry spells it now; an old name warns and gives the new one."""
    if name in RENAMED:
        new = RENAMED[name]
        note = (" (ManiSkill3's twins; SIMPLER as published is simplerenv_bridge / simplerenv/widowx_*)"
                if new.startswith("ms3_twin") else "")
        warnings.warn(f"{name!r} is now {new!r}{note}", FutureWarning, stacklevel=2)
        return new
    return name


def current_suite(name: str) -> str:
    """A ``--suite`` value (names joined by commas) with every name as the registry spells it now."""
    return ",".join(current_name(part.strip()) for part in name.split(","))


def resolve_suite(name: str) -> list[TaskSpec]:
    """A suite or task name, or several joined by commas (names from before the split included) -> their tasks, in
    order, each once."""
    names: list[str] = []
    for part in name.split(","):
        part = current_name(part.strip())
        if part in SUITES:
            names.extend(SUITES[part])
        elif part in TASKS:
            names.append(part)
        else:
            raise ValueError(f"--suite: unknown suite or task {part!r}; suites: {', '.join(SUITES)}; tasks: "
                             f"{', '.join(TASKS)}")
    return [TASKS[task] for task in dict.fromkeys(names)]
