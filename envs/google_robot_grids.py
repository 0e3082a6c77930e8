"""SIMPLER's official Google-robot visual-matching grids, episode by episode.

SimplerEnv's ``scripts/rt1_*_visual_matching.sh`` (simpler-env/SimplerEnv 4ab7178) run each configuration below
through ``simpler_env/main_inference.py``; the order here is theirs (loops outermost first), so episode ``i`` of a
task is the ``i``-th episode those scripts run for one checkpoint. Every task is run for each of the four robot
recolourings (``urdf_version``). Pure Python and numpy: the grids are checked without the simulator.

One deviation, forced by the CPU: the drawer scripts ask for ray tracing (``--enable-raytracing``: ``shader_dir="rt"``),
about 33 s per step on lavapipe; here the drawer scenes render with the ``ibl`` shader (same scene, same overlay,
image-based lighting instead of ray-traced).
"""

from __future__ import annotations

import numpy as np

from envs.real2sim_episode import Real2SimEpisode

GOOGLE_ROBOT = "google_robot_static"
URDF_VERSIONS = (None, "recolor_tabletop_visual_matching_1", "recolor_tabletop_visual_matching_2",
                 "recolor_cabinet_visual_matching_1")
# The drawer scripts loop over the same four in another order.
DRAWER_URDF_VERSIONS = ("recolor_cabinet_visual_matching_1", "recolor_tabletop_visual_matching_1",
                          "recolor_tabletop_visual_matching_2", None)
COKE_CAN_ORIENTATIONS = ("lr_switch", "upright", "laid_vertically")  # horizontal (flipped), standing, vertical
DRAWERS = ("Top", "Middle", "Bottom")
# Real-photo overlay -> robot base (x, y, yaw) in the drawer scripts (open_drawer_{a,b,c}{0,1,2}.png).
DRAWER_OVERLAYS: dict[str, tuple[float, float, float]] = {
    "a0": (0.644, -0.179, -0.03), "a1": (0.765, -0.182, -0.02), "a2": (0.889, -0.203, -0.06),
    "b0": (0.652, 0.009, 0.0), "b1": (0.752, 0.009, 0.0), "b2": (0.851, 0.035, 0.0),
    "c0": (0.665, 0.224, 0.0), "c1": (0.765, 0.222, -0.025), "c2": (0.865, 0.222, -0.025),
}
DRAWER_SCENE = {"station_name": "mk_station_recolor", "light_mode": "simple", "disable_bad_material": True,
                "shader_dir": "ibl"}


def _linspace(low: float, high: float, count: int) -> list[float]:
    return [float(v) for v in np.linspace(low, high, count)]


def pick_coke_can() -> list[Real2SimEpisode]:
    """4 recolourings x 3 orientations x 5 x 5 positions = 300 (rt1_pick_coke_can_visual_matching.sh)."""
    return [
        Real2SimEpisode("GraspSingleOpenedCokeCanInScene-v0", GOOGLE_ROBOT, "google_pick_coke_can_1_v4",
                        "google_coke_can_real_eval_1.png", ((orientation, True), ("urdf_version", urdf)),
                        (0.35, 0.20), 0.0, obj_xy=(x, y))
        for urdf in URDF_VERSIONS
        for orientation in COKE_CAN_ORIENTATIONS
        for x in _linspace(-0.35, -0.12, 5)
        for y in _linspace(-0.02, 0.42, 5)
    ]


def move_near() -> list[Real2SimEpisode]:
    """4 recolourings x 60 object-set episodes = 240 (rt1_move_near_visual_matching.sh)."""
    return [
        Real2SimEpisode("MoveNearGoogleBakedTexInScene-v0", GOOGLE_ROBOT, "google_pick_coke_can_1_v4",
                        "google_move_near_real_eval_1.png", (("urdf_version", urdf),), (0.35, 0.21), -0.09,
                        obj_episode=episode)
        for urdf in URDF_VERSIONS
        for episode in range(60)
    ]


def _drawer(verb: str) -> list[Real2SimEpisode]:
    return [
        Real2SimEpisode(f"{verb}{drawer}DrawerCustomInScene-v0", GOOGLE_ROBOT, "dummy_drawer",
                          f"open_drawer_{overlay}.png",
                        tuple(DRAWER_SCENE.items()) + (("urdf_version", urdf),), (x, y), yaw, obj_xy=(0.0, 0.0))
        for urdf in DRAWER_URDF_VERSIONS
        for drawer in DRAWERS
        for overlay, (x, y, yaw) in DRAWER_OVERLAYS.items()
    ]


def open_drawer() -> list[Real2SimEpisode]:
    """4 recolourings x 3 drawers x 9 overlays = 108 (rt1_drawer_visual_matching.sh, the Open* env names)."""
    return _drawer("Open")


def close_drawer() -> list[Real2SimEpisode]:
    """4 recolourings x 3 drawers x 9 overlays = 108 (rt1_drawer_visual_matching.sh, the Close* env names)."""
    return _drawer("Close")


def place_apple_in_drawer() -> list[Real2SimEpisode]:
    """4 recolourings x 3 overlays x 3 x 3 apple positions = 108 (rt1_put_in_drawer_visual_matching.sh)."""
    return [
        Real2SimEpisode("PlaceIntoClosedTopDrawerCustomInScene-v0", GOOGLE_ROBOT, "dummy_drawer",
                          f"open_drawer_{overlay}.png",
                        tuple(DRAWER_SCENE.items()) + (("urdf_version", urdf), ("model_ids", "baked_apple_v2")),
                        DRAWER_OVERLAYS[overlay][:2], DRAWER_OVERLAYS[overlay][2], obj_xy=(x, y))
        for urdf in DRAWER_URDF_VERSIONS
        for overlay in ("a0", "b0", "c0")
        for x in _linspace(-0.08, -0.02, 3)
        for y in _linspace(-0.02, 0.08, 3)
    ]


GOOGLE_GRIDS = {
    "simplerenv/google_pick_coke_can": pick_coke_can,
    "simplerenv/google_move_near": move_near,
    "simplerenv/google_open_drawer": open_drawer,
    "simplerenv/google_close_drawer": close_drawer,
    "simplerenv/google_place_apple_in_drawer": place_apple_in_drawer,
}
