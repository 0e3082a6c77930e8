"""SIMPLER's official WidowX/Bridge grids in the original SimplerEnv, episode by episode.

SimplerEnv's ``scripts/octo_bridge.sh`` and CogACT's ``sim_cogact/scripts/cogact_bridge.sh`` run each task with
``--obj-variation-mode episode --obj-episode-range 0 24``: episode ``i`` is the env's own ``episode_id`` ``i``, which
the env turns into object positions and orientations (ManiSkill2_real2sim ``put_on_in_scene.py``). The robot, scene,
overlay photo and robot pose are the scripts' (the same as the env's prepackaged configuration): the flat table for
spoon, carrot and stack, the sink with its own camera rig for the eggplant. The robot's base is turned to face back
along -x (quaternion wxyz (0, 0, 0, 1), a yaw of 0 about the scripts' centre orientation).
"""

from __future__ import annotations

from envs.real2sim_episode import Real2SimEpisode

FLAT_TABLE = ("widowx", "bridge_table_1_v1", "bridge_real_eval_1.png", (0.147, 0.028))
SINK = ("widowx_sink_camera_setup", "bridge_table_1_v2", "bridge_sink.png", (0.127, 0.06))
GRID_SIZE = 24


def _grid(env_id: str, rig: tuple[str, str, str, tuple[float, float]]) -> list[Real2SimEpisode]:
    robot, scene, overlay, robot_xy = rig
    return [Real2SimEpisode(env_id, robot, scene, overlay, (), robot_xy, 0.0, obj_episode=episode)
            for episode in range(GRID_SIZE)]


BRIDGE_GRIDS = {
    "simplerenv/widowx_spoon_on_towel": lambda: _grid("PutSpoonOnTableClothInScene-v0", FLAT_TABLE),
    "simplerenv/widowx_carrot_on_plate": lambda: _grid("PutCarrotOnPlateInScene-v0", FLAT_TABLE),
    "simplerenv/widowx_stack_cube": lambda: _grid("StackGreenCubeOnYellowCubeBakedTexInScene-v0", FLAT_TABLE),
    "simplerenv/widowx_put_eggplant_in_basket": lambda: _grid("PutEggplantInBasketScene-v0", SINK),
}
