"""One SIMPLER task (Google robot or WidowX/Bridge) in the original SimplerEnv (ManiSkill2_real2sim on SAPIEN 2.2.2).

Runs only in the second interpreter that ``./setup.sh`` builds (``.venv-real2sim``: numpy < 2, SAPIEN 2): it
imports numpy, gymnasium, sapien and mani_skill2_real2sim, never torch. ``Real2SimTask`` has ``SimTask``'s interface
(``reset(episode_id, seed)`` -> ``Observation``, ``step(policy_action)`` -> ``StepResult``, ``close()``), so the
evaluation worker, the timed control loop and ``vlart robot`` drive it unchanged.

Episode ``i`` is entry ``i`` of the task's official visual-matching grid (``envs/google_robot_grids.py``,
``envs/bridge_grids.py``): the environment is built with that entry's robot, scene, overlay and constructor keywords
(robot recolouring, can orientation, drawer) as SimplerEnv's ``main_inference.py`` builds it, and rebuilt only when the
next episode needs different ones (a new overlay photo alone is swapped in place). SimplerEnv's evaluator builds a new
environment for every episode (4-6 s here). A reused one is first reset as the constructor resets a new one (a new
physics scene, seed 2022; 0.3 s): without that, state the last episode left in the articulation (its joints' drive
targets, link poses to float rounding) makes the next episode's rollout drift from a new environment's. With it the
frames of whole episodes are bit-identical to a new environment's (``benchmarks.simplerenv_bridge_timing``; first
frames against SimplerEnv's own builder: ``tests/envs/test_real2sim_bridge.py``). The
instruction is read at every step: placing the apple in the drawer switches from "open top drawer" to "place apple
into top drawer" at step 100, and, as CogACT's wrapper does on a new instruction, the sticky gripper starts afresh.

The WidowX (Bridge) tasks also have a held-out grid (``grid="heldout"``, ``envs/placements.py``) and take any
placement (``place``, for ``vlart demos``): the environment's own table of object placements, which its reset indexes
by ``episode_id``, is replaced by the one placement, and episode 0 of it is reset with the official rig (robot pose,
scene, overlay).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from envs.action_adapters import ADAPTERS
from envs.bridge_grids import BRIDGE_GRIDS
from envs.google_robot_grids import GOOGLE_GRIDS
from envs.placements import GRIDS as PLACEMENT_GRIDS, Placement, PlacementSampler
from envs.real2sim_episode import Real2SimEpisode
from envs.registry import TaskSpec
from envs.rendering import check_asset_dir, configure_rendering
from envs.sim_env import StepResult
from policies.api.interface import Observation

GRIDS = {**GOOGLE_GRIDS, **BRIDGE_GRIDS}
CONSTRUCTOR_SEED = 2022  # ManiSkill2_real2sim's BaseEnv.__init__ resets with it, reconfiguring the scene
LAYER_NAME = "VK_LAYER_VLART_hide_cuda_interop"
LAYER_MANIFEST = "VkLayer_vlart_hide_cuda_interop.json"  # envs/vulkan_layer/, built by setup.sh
ASSET_PATHS = ("real_inpainting/google_coke_can_real_eval_1.png", "custom/info_pick_custom_baked_tex_v1.json")


def check_real2sim_assets() -> Path:
    """The folder MS2_REAL2SIM_ASSET_DIR names, checked to hold the SimplerEnv data (overlays, object models)."""
    return check_asset_dir(
        "MS2_REAL2SIM_ASSET_DIR", ASSET_PATHS,
        "point it at ManiSkill2_real2sim's data folder (this checkout: export "
        "MS2_REAL2SIM_ASSET_DIR=$(realpath ../shared/simpler_real2sim/ManiSkill2_real2sim/data); with internet: "
        "the data/ folder of a clone of github.com/simpler-env/ManiSkill2_real2sim)",
        "ManiSkill2_real2sim's data")


def configure_real2sim_rendering() -> str:
    """Point Vulkan at a driver before SAPIEN 2 starts; on lavapipe also enable the layer ``./setup.sh`` builds into
    this interpreter's environment (SAPIEN 2 asks for CUDA-interop extensions lavapipe lacks). Returns the backend."""
    backend = configure_rendering()
    os.environ["DISPLAY"] = ""  # SAPIEN 2 would try to open a window through GLFW
    if backend == "sapien_cpu":
        layer_dir = Path(os.environ.get("VLART_VK_LAYER_DIR", Path(sys.prefix) / "vulkan_layer"))
        if not (layer_dir / LAYER_MANIFEST).is_file():
            raise RuntimeError(f"the Vulkan layer SAPIEN 2 needs on lavapipe is not in {layer_dir}: run ./setup.sh "
                               "(it builds the layer into .venv-real2sim; needs gcc and libvulkan-dev)")
        paths = [str(layer_dir)] + [p for p in os.environ.get("VK_LAYER_PATH", "").split(os.pathsep) if p]
        os.environ["VK_LAYER_PATH"] = os.pathsep.join(dict.fromkeys(paths))
        layers = [LAYER_NAME] + [n for n in os.environ.get("VK_INSTANCE_LAYERS", "").split(os.pathsep) if n]
        os.environ["VK_INSTANCE_LAYERS"] = os.pathsep.join(dict.fromkeys(layers))
    return backend


class Real2SimTask:
    """``policy_camera_only``: render only the camera the policy sees. SimplerEnv's scenes also render a 128x128
    ``base_camera`` every step that nothing reads; dropping it leaves the policy's frames bit-identical (measured
    and tested: ``benchmarks.simplerenv_bridge_timing``)."""

    def __init__(self, spec: TaskSpec, grid: str = "official", policy_camera_only: bool = True) -> None:
        if spec.name not in GRIDS:
            raise ValueError(f"{spec.name}: not a task of the original SimplerEnv")
        if grid not in PLACEMENT_GRIDS:
            raise ValueError(f"grid: expected one of {', '.join(PLACEMENT_GRIDS)}, got {grid!r}")
        if grid != "official" and spec.name not in BRIDGE_GRIDS:
            raise ValueError(f"grid: {spec.name} has only SIMPLER's official visual-matching grid, got {grid!r}")
        self.spec = spec
        self.grid = grid
        self.policy_camera_only = policy_camera_only
        self.episodes: list[Real2SimEpisode] = GRIDS[spec.name]()
        self.asset_dir = check_real2sim_assets()
        configure_real2sim_rendering()
        self.env: Any = None
        self.built: Optional[tuple[Any, ...]] = None  # what the current env was built for
        self.fresh = False  # the env is as its constructor left it (no episode reset yet)
        self.overlay: Optional[str] = None
        self.adapter = ADAPTERS[spec.adapter]()
        self.instruction = ""
        self._placements: Optional[PlacementSampler] = None
        self._placed: Optional[Placement] = None  # replaces the official table at every reset, once placed
        self._official_table: Optional[tuple[list, list]] = None  # the environment's own (xy, quat) table

    def _build(self, episode: Real2SimEpisode) -> None:
        key = (episode.env_id, episode.robot, episode.scene, episode.build)
        if key == self.built:
            self._set_overlay(episode.overlay)
            return
        self.close()
        import gymnasium as gym
        import mani_skill2_real2sim.envs  # noqa: F401  (registers the environments)

        self.env = gym.make(
            episode.env_id, obs_mode="rgbd", robot=episode.robot, sim_freq=self.spec.sim_rate_hz,
            control_mode=self.spec.control_mode, control_freq=int(self.spec.control_rate_hz),
            max_episode_steps=self.spec.max_steps, scene_name=episode.scene, camera_cfgs={"add_segmentation": True},
            rgb_overlay_path=str(self.asset_dir / "real_inpainting" / episode.overlay),
            rgb_overlay_cameras=[self.spec.camera], **dict(episode.build),
        )
        self.built = key
        self.overlay = episode.overlay
        self.fresh = True

    def _set_overlay(self, overlay: str) -> None:
        """The real photo behind the scene, swapped without a rebuild (the drawer grids change it every episode and a
        build takes 5-30 s): read as the env's constructor reads it, as SimplerEnv's prepackaged resets swap it."""
        if overlay == self.overlay:
            return
        import cv2

        path = self.asset_dir / "real_inpainting" / overlay
        unwrapped = self.env.unwrapped
        unwrapped.rgb_overlay_img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) / 255
        unwrapped.rgb_overlay_path = str(path)
        self.overlay = overlay

    def _observation(self, obs: dict) -> Observation:
        frame = obs["image"][self.spec.camera]["rgb"]
        return Observation(image=np.ascontiguousarray(frame, dtype=np.uint8), instruction=self.instruction)

    def _read_instruction(self) -> None:
        instruction = self.env.unwrapped.get_language_instruction()
        if instruction != self.instruction:
            self.instruction = instruction
            self.adapter.reset()

    @property
    def placements(self) -> PlacementSampler:
        """Placements off this Bridge task's official grid, from the environment's own table (built on first use)."""
        if self._placements is None:
            if self.spec.name not in BRIDGE_GRIDS:
                raise ValueError(f"{self.spec.name}: only the WidowX (Bridge) tasks take placements off their grid")
            if self.env is None:
                self._build(self.episodes[0])
            unwrapped = self.env.unwrapped
            xy = np.asarray(unwrapped._xy_configs, dtype=np.float64)  # (P, objects, 2)
            self._official_table = (unwrapped._xy_configs, unwrapped._quat_configs)
            self._placements = PlacementSampler(np.concatenate([xy, np.zeros((*xy.shape[:2], 1))], axis=2),
                                                np.asarray(unwrapped._quat_configs, dtype=np.float64))
        return self._placements

    def place(self, placement: Placement) -> None:
        """Every later reset puts the objects at ``placement`` (x, y; the environment sets the heights)."""
        self.placements  # the official table is read before it is replaced
        self._placed = placement

    def _episode(self, episode_id: int, seed: int) -> Real2SimEpisode:
        """The episode to build and reset: an official grid entry, or the official rig with the placed objects."""
        if self.grid == "heldout":
            self.place(self.placements.heldout(episode_id, seed))
        if self._placed is not None:
            return replace(self.episodes[0], obj_episode=0)
        if not 0 <= episode_id < len(self.episodes):
            raise ValueError(f"episode_id: {self.spec.name} has episodes 0 .. {len(self.episodes) - 1}, "
                             f"got {episode_id}")
        return self.episodes[episode_id]

    def _set_table(self) -> None:
        """The environment's placement table: the placed objects alone, or the official grid."""
        if self._placements is None:
            return
        unwrapped = self.env.unwrapped
        if self._placed is None:
            unwrapped._xy_configs, unwrapped._quat_configs = self._official_table
        else:
            unwrapped._xy_configs = [self._placed.xyz[:, :2].copy()]
            unwrapped._quat_configs = [self._placed.quat.copy()]

    def reset(self, episode_id: int, seed: int) -> Observation:
        episode = self._episode(episode_id, seed)
        self._build(episode)
        self._set_table()  # before the reconfiguring reset too, which places the objects from the table
        if not self.fresh:
            self.env.reset(seed=CONSTRUCTOR_SEED, options={"reconfigure": True})
        self.fresh = False
        obs, _ = self.env.reset(seed=seed, options=episode.reset_options())
        if self.policy_camera_only:  # the cameras are rebuilt only when a reset reconfigures the scene
            cameras = self.env.unwrapped._cameras
            for uid in [uid for uid in cameras if uid != self.spec.camera]:
                del cameras[uid]
        self.instruction = ""
        self._read_instruction()
        self.adapter.reset()
        return self._observation(obs)

    def step(self, policy_action: np.ndarray) -> StepResult:
        env_action = self.adapter(policy_action)
        obs, _, _, _, info = self.env.step(env_action.astype(np.float64))
        self._read_instruction()
        # SIMPLER's partial success as its Bridge scripts count it: the source object grasped at any step so far
        grasped = info.get("episode_stats", {}).get("is_src_obj_grasped")
        return StepResult(self._observation(obs), bool(info["success"]), env_action,
                          None if grasped is None else bool(grasped))

    def close(self) -> None:
        if self.env is not None:
            env, self.env, self.built, self.overlay = self.env, None, None, None
            env.close()
