"""The original SimplerEnv's Bridge tasks: names that say the simulator, the official grids, old names."""

from __future__ import annotations

import numpy as np
import pytest

from envs.bridge_grids import BRIDGE_GRIDS
from envs.registry import SUITES, TASKS, current_name, resolve_suite

ORIGINAL = ("simplerenv/widowx_spoon_on_towel", "simplerenv/widowx_carrot_on_plate", "simplerenv/widowx_stack_cube",
            "simplerenv/widowx_put_eggplant_in_basket")


def test_the_four_original_bridge_tasks_have_simplerenvs_official_settings():
    assert SUITES["simplerenv_bridge"] == ORIGINAL == tuple(BRIDGE_GRIDS)
    specs = [TASKS[name] for name in ORIGINAL]
    assert [s.env_id for s in specs] == ["PutSpoonOnTableClothInScene-v0", "PutCarrotOnPlateInScene-v0",
                                         "StackGreenCubeOnYellowCubeBakedTexInScene-v0", "PutEggplantInBasketScene-v0"]
    assert [s.max_steps for s in specs] == [60, 60, 60, 120]
    for spec in specs:
        assert (spec.backend, spec.control_rate_hz, spec.sim_rate_hz, spec.camera, spec.adapter, spec.grid_size) == \
            ("real2sim", 5.0, 500, "3rd_view_camera", "widowx_bridge", 24)
        assert spec.control_mode == "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos"
        assert spec.unnorm_key is None and spec.ensemble_horizon is None  # the model's own: bridge_orig, K = 7
        assert spec.simulator.startswith("SimplerEnv")
    assert SUITES["simplerenv"] == ORIGINAL + SUITES["simplerenv_google_vm"]
    assert all(TASKS[name].simulator == "ManiSkill3 digital twin" for name in SUITES["ms3_twin_bridge"])


@pytest.mark.parametrize("task, robot, scene, overlay, xy", [
    ("simplerenv/widowx_spoon_on_towel", "widowx", "bridge_table_1_v1", "bridge_real_eval_1.png", (0.147, 0.028)),
    ("simplerenv/widowx_stack_cube", "widowx", "bridge_table_1_v1", "bridge_real_eval_1.png", (0.147, 0.028)),
    ("simplerenv/widowx_put_eggplant_in_basket", "widowx_sink_camera_setup", "bridge_table_1_v2", "bridge_sink.png",
     (0.127, 0.06)),
])
def test_episode_i_is_the_envs_own_episode_id_i_with_the_scripts_robot_and_scene(task, robot, scene, overlay, xy):
    episodes = BRIDGE_GRIDS[task]()
    assert len(episodes) == 24
    for i, episode in enumerate(episodes):
        options = episode.reset_options()
        assert options["obj_init_options"] == {"episode_id": i}
        assert (episode.robot, episode.scene, episode.overlay, episode.build) == (robot, scene, overlay, ())
        np.testing.assert_allclose(options["robot_init_options"]["init_xy"], xy)
        np.testing.assert_allclose(options["robot_init_options"]["init_rot_quat"], [0, 0, 0, 1], atol=1e-12)


def test_names_from_before_the_split_still_resolve_and_say_what_they_are_now():
    with pytest.warns(FutureWarning, match="'simpler_widowx' is now 'ms3_twin_bridge'.*twins"):
        assert [s.name for s in resolve_suite("simpler_widowx")] == list(SUITES["ms3_twin_bridge"])
    with pytest.warns(FutureWarning, match="now 'ms3_twin/widowx_spoon_on_towel'"):
        assert current_name("simpler/widowx_spoon_on_towel") == "ms3_twin/widowx_spoon_on_towel"
    with pytest.warns(FutureWarning, match="now 'simplerenv/google_move_near'"):
        assert resolve_suite("simpler/google_move_near")[0].name == "simplerenv/google_move_near"
    assert current_name("simplerenv_bridge") == "simplerenv_bridge"


def test_a_suite_may_join_suites_and_tasks_with_commas():
    names = [s.name for s in resolve_suite("simplerenv/widowx_stack_cube,ms3_twin_bridge,simplerenv/widowx_stack_cube")]
    assert names == ["simplerenv/widowx_stack_cube", *SUITES["ms3_twin_bridge"]]
    with pytest.raises(ValueError, match="unknown suite or task 'nope'"):
        resolve_suite("simplerenv_bridge,nope")
