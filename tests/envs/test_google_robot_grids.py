"""The Google-robot visual-matching grids against SimplerEnv's scripts (scripts/rt1_*_visual_matching.sh)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.geometry import quaternion_multiply
from envs.google_robot_grids import GOOGLE_GRIDS
from envs.registry import SUITES, TASKS


@pytest.mark.parametrize("task, count", [
    ("simplerenv/google_pick_coke_can", 300), ("simplerenv/google_move_near", 240),
    ("simplerenv/google_open_drawer", 108), ("simplerenv/google_close_drawer", 108),
    ("simplerenv/google_place_apple_in_drawer", 108),
])
def test_grid_sizes_match_the_scripts_and_the_registry(task: str, count: int) -> None:
    episodes = GOOGLE_GRIDS[task]()
    assert len(episodes) == count == TASKS[task].grid_size
    assert len(set(episodes)) == count  # no episode twice


def test_the_suite_holds_the_five_tasks_at_three_hertz() -> None:
    assert SUITES["simplerenv_google_vm"] == tuple(GOOGLE_GRIDS)
    assert {TASKS[name].max_steps for name in GOOGLE_GRIDS} == {80, 113, 200}
    assert all(TASKS[name].control_rate_hz == 3.0 and TASKS[name].backend == "real2sim" for name in GOOGLE_GRIDS)
    assert all(TASKS[name].unnorm_key == "fractal20220817_data" and TASKS[name].ensemble_horizon == 2
               for name in GOOGLE_GRIDS)


def test_coke_can_positions_orientations_and_recolourings() -> None:
    episodes = GOOGLE_GRIDS["simplerenv/google_pick_coke_can"]()
    first, last_of_first_block, next_orientation = episodes[0], episodes[24], episodes[25]
    # --obj-init-x -0.35 -0.12 5 --obj-init-y -0.02 0.42 5: x outer, y inner
    assert first.obj_xy == (-0.35, -0.02) and episodes[1].obj_xy == pytest.approx((-0.35, 0.09))
    assert episodes[5].obj_xy == pytest.approx((-0.2925, -0.02))
    assert last_of_first_block.obj_xy == pytest.approx((-0.12, 0.42))
    assert dict(first.build) == {"lr_switch": True, "urdf_version": None}
    assert dict(next_orientation.build) == {"upright": True, "urdf_version": None}
    assert dict(episodes[75].build) == {"lr_switch": True, "urdf_version": "recolor_tabletop_visual_matching_1"}
    assert dict(episodes[299].build) == {"laid_vertically": True, "urdf_version": "recolor_cabinet_visual_matching_1"}
    assert first.robot_xy == (0.35, 0.20) and first.overlay == "google_coke_can_real_eval_1.png"
    assert first.reset_options()["obj_init_options"]["init_xy"].tolist() == [-0.35, -0.02]


def test_move_near_uses_episode_ids_and_the_rotated_robot() -> None:
    episodes = GOOGLE_GRIDS["simplerenv/google_move_near"]()
    assert [e.obj_episode for e in episodes[:60]] == list(range(60))
    assert episodes[60].obj_episode == 0 and dict(episodes[60].build)["urdf_version"] == \
        "recolor_tabletop_visual_matching_1"
    options = episodes[0].reset_options()
    assert options["obj_init_options"] == {"episode_id": 0}
    # euler2quat(0, 0, -0.09) * (0, 0, 0, 1), worked by hand: (-sin(-0.045), 0, 0, cos(-0.045))
    np.testing.assert_allclose(options["robot_init_options"]["init_rot_quat"],
                               [np.sin(0.045), 0.0, 0.0, np.cos(0.045)], atol=1e-12)
    np.testing.assert_allclose(options["robot_init_options"]["init_xy"], [0.35, 0.21])


def test_drawers_cycle_overlays_within_drawers_within_recolourings() -> None:
    opened = GOOGLE_GRIDS["simplerenv/google_open_drawer"]()
    closed = GOOGLE_GRIDS["simplerenv/google_close_drawer"]()
    assert opened[0].env_id == "OpenTopDrawerCustomInScene-v0"
    assert opened[9].env_id == "OpenMiddleDrawerCustomInScene-v0"
    assert opened[26].env_id == "OpenBottomDrawerCustomInScene-v0"
    assert closed[0].env_id == "CloseTopDrawerCustomInScene-v0"
    assert [e.overlay for e in opened[:9]] == [f"open_drawer_{k}.png" for k in
                                              ("a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2")]
    assert (opened[2].robot_xy, opened[2].robot_yaw) == ((0.889, -0.203), -0.06)
    assert (opened[7].robot_xy, opened[7].robot_yaw) == ((0.765, 0.222), -0.025)
    build = dict(opened[0].build)
    assert build["urdf_version"] == "recolor_cabinet_visual_matching_1" and dict(opened[27].build)["urdf_version"] \
        == "recolor_tabletop_visual_matching_1" and dict(opened[81].build)["urdf_version"] is None
    assert build["station_name"] == "mk_station_recolor" and build["light_mode"] == "simple"
    assert build["shader_dir"] == "ibl"  # the scripts' ray tracing, replaced on the CPU (module docstring)


def test_apple_goes_through_three_overlays_and_nine_positions() -> None:
    episodes = GOOGLE_GRIDS["simplerenv/google_place_apple_in_drawer"]()
    assert [e.overlay for e in episodes[:27:9]] == ["open_drawer_a0.png", "open_drawer_b0.png", "open_drawer_c0.png"]
    assert episodes[0].obj_xy == (-0.08, -0.02) and episodes[8].obj_xy == (-0.02, 0.08)
    assert episodes[4].obj_xy == pytest.approx((-0.05, 0.03))
    assert dict(episodes[0].build)["model_ids"] == "baked_apple_v2"
    assert (episodes[9].robot_xy, episodes[9].robot_yaw) == ((0.652, 0.009), 0.0)


def test_the_centre_orientation_turns_the_robot_half_way_round() -> None:
    quat = GOOGLE_GRIDS["simplerenv/google_pick_coke_can"]()[0].robot_quat()
    np.testing.assert_allclose(quat, [0.0, 0.0, 0.0, 1.0], atol=1e-12)
    # i * j = k, and a rotation composed with its inverse is the identity
    np.testing.assert_allclose(quaternion_multiply(np.array([0, 1.0, 0, 0]), np.array([0, 0, 1.0, 0])), [0, 0, 0, 1])
    q = np.array([np.cos(0.3), np.sin(0.3), 0, 0])
    np.testing.assert_allclose(quaternion_multiply(q, q * [1, -1, -1, -1]), [1, 0, 0, 0], atol=1e-12)
