"""The scripted expert and the demonstrations it records (real simulator, shared SIMPLER assets)."""

import json

import numpy as np
import pytest

from envs.demos import compute_statistics, generate_demos
from policies.training.demo_dataset import read_episode
from envs.registry import TASKS

pytestmark = pytest.mark.sim

CARROT = "ms3_twin/widowx_carrot_on_plate"
# Official-grid episodes the expert solves (checked: carrot 23/24, spoon 24/24, stack 24/24, eggplant 11/16).
FIXED_EPISODES = {
    CARROT: 1,
    "ms3_twin/widowx_spoon_on_towel": 0,
    "ms3_twin/widowx_stack_cube": 5,
    "ms3_twin/widowx_eggplant_in_basket": 0,
}


def run_fixed_episode(name: str, *runs: dict) -> list[dict]:
    """The expert on the task's fixed episode, once per keyword set of ``run_expert_episode``, in one simulator."""
    from envs.scripted_expert import run_expert_episode
    from envs.sim_env import SimTask

    task = SimTask(TASKS[name])
    try:
        return [run_expert_episode(task, FIXED_EPISODES[name], FIXED_EPISODES[name], **run) for run in runs]
    finally:
        task.close()


@pytest.fixture(scope="module")
def carrot_episodes(simpler_assets):
    """The carrot's fixed episode noise-free, then with executed noise, in one simulator: (expert, clean, noisy)."""
    from envs.scripted_expert import ScriptedExpert

    expert = ScriptedExpert()
    clean, noisy = run_fixed_episode(CARROT, {"expert": expert}, {"action_noise": 0.015})
    return expert, clean, noisy


@pytest.mark.parametrize("name", list(FIXED_EPISODES))
def test_expert_solves_a_fixed_episode(simpler_assets, name, request):
    from envs.scripted_expert import ScriptedExpert

    if name == CARROT:  # the episode the noise test compares with: run once for both
        expert, episode, _ = request.getfixturevalue("carrot_episodes")
    else:
        expert = ScriptedExpert()
        (episode,) = run_fixed_episode(name, {"expert": expert})
    assert episode["success"] and expert.phase_name == "done"
    assert episode["grasped"] is True  # SIMPLER's partial success, read from the simulator
    actions = episode["actions"]
    assert actions.shape[1] == 7 and np.abs(actions[:, :3]).max() <= 0.03 + 1e-9
    assert set(np.unique(actions[:, 6])) == {0.0, 1.0}  # it closed and opened the gripper


def test_expert_corrects_executed_noise_and_records_clean_actions(carrot_episodes):
    _, clean, noisy = carrot_episodes
    assert noisy["success"] and noisy["grasped"]
    # the recorded actions are the expert's (steps of at most 3 cm), and they differ from the noise-free episode's
    # because each one corrects the previous step's perturbation
    assert np.abs(noisy["actions"][:, :3]).max() <= 0.03 + 1e-9
    steps = min(len(clean["actions"]), len(noisy["actions"]))
    assert np.abs(noisy["actions"][:steps, :3] - clean["actions"][:steps, :3]).max() > 0.005


def test_expert_retries_a_missed_grasp(simpler_assets):
    from envs.scripted_expert import ScriptedExpert

    class ClosesAboveFirst(ScriptedExpert):
        """Closes 5 cm above the object on its first try: the lift ends with empty fingers."""

        def _plan(self) -> None:
            super()._plan()
            if self.regrasps == 0:
                high = self.source_start + [0, 0, 0.05]
                self.waypoints[1] = ("descend", high, 1.0)
                self.waypoints[2] = ("close", high, 0.0)

    (episode,) = run_fixed_episode(CARROT, {"expert": ClosesAboveFirst()})
    assert episode["regrasps"] == 1 and episode["success"]
    gripper = episode["actions"][:, 6]
    assert np.count_nonzero(np.diff(gripper) < 0) == 2  # closed twice: the miss, then the grasp


@pytest.mark.slow
def test_demos_round_trip_and_statistics(simpler_assets, tmp_path):
    out = tmp_path / "demos"
    summary = generate_demos("ms3_twin/widowx_stack_cube", episodes=2, out=out, workers=1, image_size=64,
                             progress=False)
    assert summary["episodes"] == 2
    files = sorted((out / "episodes" / "ms3_twin__widowx_stack_cube").glob("*.h5"))
    assert len(files) == 2
    episode = read_episode(files[0])
    assert episode["attrs"]["instruction"] == "stack the green block on the yellow block"
    assert episode["images"].shape[1:] == (64, 64, 3) and episode["images"].dtype == np.uint8
    assert episode["actions"].shape == (episode["attrs"]["steps"], 7)
    assert len(episode["images"]) == len(episode["actions"])
    # Statistics by hand over both episodes' actions.
    actions = np.concatenate([read_episode(f)["actions"] for f in files]).astype(np.float64)
    stats = json.loads((out / "dataset_statistics.json").read_text())["vlart_simpler_bridge"]
    np.testing.assert_allclose(stats["action"]["q01"], np.quantile(actions, 0.01, axis=0))
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(actions, 0.99, axis=0))
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0))
    assert stats["action"]["mask"] == [True] * 6 + [False] and stats["num_trajectories"] == 2
    assert stats == compute_statistics(out)["vlart_simpler_bridge"]
    # Resuming with a larger target keeps the two and adds one.
    generate_demos("ms3_twin/widowx_stack_cube", episodes=3, out=out, workers=1, image_size=64, progress=False)
    assert len(list((out / "episodes" / "ms3_twin__widowx_stack_cube").glob("*.h5"))) == 3
    log = [json.loads(line) for line in (out / "attempts.jsonl").read_text().splitlines()]
    assert [r["attempt"] for r in log][:2] == [0, 1]


def test_demos_refuse_a_noise_level_the_folder_was_not_made_with(tmp_path):
    task = "ms3_twin/widowx_carrot_on_plate"
    (tmp_path / "meta.json").write_text(json.dumps({"layout_version": 1, "tasks": {task: {"action_noise": 0.0}}}))
    with pytest.raises(ValueError, match="--action-noise: .* made with 0.0"):
        generate_demos(task, episodes=1, out=tmp_path, action_noise=0.015, progress=False)
    with pytest.raises(ValueError, match="--action-noise: expected a standard deviation >= 0"):
        generate_demos(task, episodes=1, out=tmp_path / "new", action_noise=-0.01, progress=False)


def test_demos_name_the_widowx_tasks_they_make(tmp_path):
    with pytest.raises(ValueError, match=r"--task: expected a SIMPLER WidowX task \(ms3_twin/widowx_carrot_on_plate, "
                                         r".*simplerenv/widowx_carrot_on_plate"):
        generate_demos("simplerenv/google_pick_coke_can", episodes=1, out=tmp_path, progress=False)
