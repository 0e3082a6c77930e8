"""Real camera frames for jobs that need one without a robot (``vlart profile``, calibration, the benchmarks).

SIMPLER's own first frame when the simulator and its assets are here, else the Bridge V2 table photo that SIMPLER's
WidowX tasks are composited on: a real camera frame either way, so the vision stages do realistic work.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from runtime.core.resources import config_file

FIRST_FRAME_TASK = "ms3_twin/widowx_carrot_on_plate"


def simpler_available() -> bool:
    """SIMPLER frames can be rendered here: ``MS_ASSET_DIR`` is set and ManiSkill is importable."""
    return bool(os.environ.get("MS_ASSET_DIR")) and importlib.util.find_spec("mani_skill") is not None


def sample_frame() -> np.ndarray:
    """The Bridge V2 table photo (480x640 RGB) shipped in ``configs/samples``."""
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError("reading the sample frame needs Pillow (pip install pillow)") from None

    with Image.open(config_file("samples", "bridge_table.png")) as image:
        return np.asarray(image.convert("RGB"))


def simpler_first_frame(task: str = FIRST_FRAME_TASK, episode: int = 0) -> np.ndarray:
    """The first camera frame of ``episode`` of a SIMPLER task's official grid (needs ``simpler_available()``)."""
    from envs.registry import TASKS
    from envs.sim_env import SimTask

    sim = SimTask(TASKS[task])
    try:
        return sim.reset(episode_id=episode, seed=episode).image
    finally:
        sim.close()


def real_frame() -> tuple[np.ndarray, str]:
    """One real camera frame and where it came from."""
    if simpler_available():
        return simpler_first_frame(), f"SIMPLER {FIRST_FRAME_TASK} episode 0, first frame"
    return sample_frame(), "configs/samples/bridge_table.png (set MS_ASSET_DIR for a SIMPLER frame)"
