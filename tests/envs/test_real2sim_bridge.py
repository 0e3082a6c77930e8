"""SIMPLER's Bridge tasks in the original SimplerEnv: faithful to SimplerEnv's own builder, run by vlart eval."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from envs.real2sim_workers import real2sim_python
from envs.registry import SUITES
from runtime.app.evaluation import EvalConfig, plan_eval, robot_parts, run_eval
from tests.conftest import REPO, TINY

CARROT = "simplerenv/widowx_carrot_on_plate"
# Two episodes per task, of different placements and orientations (eggplant: different positions and yaws).
FIRST_FRAME_EPISODES = {"simplerenv/widowx_spoon_on_towel": (0, 23), CARROT: (5, 18),
                        "simplerenv/widowx_stack_cube": (3, 20), "simplerenv/widowx_put_eggplant_in_basket": (1, 23)}


def test_max_steps_sets_the_horizon_beyond_the_registered_one(monkeypatch):
    monkeypatch.setenv("VLART_REAL2SIM_PYTHON", str(Path(os.sys.executable)))  # the plan checks it exists
    plan = plan_eval(EvalConfig(suite="simplerenv_bridge", model=str(TINY), max_steps=120, episodes=1))
    assert [(job.task, job.max_steps) for job in plan.jobs] == [(task, 120) for task in FIRST_FRAME_EPISODES]
    official = plan_eval(EvalConfig(suite="simplerenv_bridge", model=str(TINY), episodes=1))
    assert [job.max_steps for job in official.jobs] == [60, 60, 60, 120]


def test_the_nine_task_suite_runs_in_one_part_per_robot():
    assert robot_parts("simplerenv") == [",".join(SUITES["simplerenv_bridge"]),
                                         ",".join(SUITES["simplerenv_google_vm"])]
    assert robot_parts("simplerenv_bridge") == [",".join(SUITES["simplerenv_bridge"])]


def _pack_tools(data_dir: Path) -> Path:
    tools = data_dir.resolve().parents[1] / "tools"
    if not (tools / "cpu_env.py").is_file():
        pytest.skip(f"the asset pack's tools/cpu_env.py is not beside {data_dir}")
    return tools


@pytest.mark.sim
@pytest.mark.slow
def test_first_frames_match_simplerenvs_own_builder_episode_by_episode(real2sim_assets):
    """Each episode's first frame, instruction, robot and object poses from one reused ``Real2SimTask`` equal those
    of a new environment built per episode by the pack's ``tools/cpu_env.py`` (``simpler_env.make``'s prepackaged
    path: a different code path to the same official settings), as SimplerEnv's evaluator builds one per episode."""
    code = f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(_pack_tools(real2sim_assets))!r})
from envs.real2sim_env import Real2SimTask
from envs.registry import TASKS
import cpu_env

def state(env):
    u = env.unwrapped
    poses = [u.agent.robot.pose] + [obj.pose for obj in u.episode_objs]
    return np.concatenate([np.r_[p.p, p.q] for p in poses] + [u.agent.robot.get_qpos()])

rows = []
for name, episodes in {FIRST_FRAME_EPISODES!r}.items():
    task = Real2SimTask(TASKS[name])
    for episode in episodes:
        ours = task.reset(episode, seed=episode)
        ours_state = state(task.env)
        reference = cpu_env.make(TASKS[name].env_id)
        obs, info = reference.reset(options={{"obj_init_options": {{"episode_id": episode}}}})
        frame = obs["image"]["3rd_view_camera"]["rgb"]
        rows.append([name, episode, int(np.abs(ours.image.astype(int) - frame).max()), list(frame.shape),
                     ours.instruction == reference.unwrapped.get_language_instruction(), ours.instruction,
                     float(np.abs(ours_state - state(reference)).max()), int(info["episode_id"])])
        reference.close()
    task.close()
print(json.dumps(rows))
"""
    result = subprocess.run([str(real2sim_python()), "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(name, episode) for name, episode, *_ in rows] == [(n, e) for n, es in FIRST_FRAME_EPISODES.items()
                                                               for e in es]
    for name, episode, frame_diff, shape, same_instruction, instruction, state_diff, env_episode in rows:
        assert (frame_diff, shape, same_instruction, state_diff, env_episode) == (0, [480, 640, 3], True, 0.0,
                                                                                   episode), (name, episode)
    assert {row[5] for row in rows} == {"put the spoon on the towel", "put carrot on plate",
                                        "stack the green block on the yellow block", "put eggplant into yellow basket"}


@pytest.mark.sim
@pytest.mark.slow
def test_a_bridge_episode_through_vlart_serve_records_simulator_horizon_and_grid(real2sim_assets, tmp_path):
    steps = 4
    result = run_eval(EvalConfig(suite=CARROT, model=str(TINY), episodes=1, max_steps=steps, out=tmp_path),
                      progress=False)
    record = result["episodes"][0]
    assert record["failure"] is None and record["instruction"] == "put carrot on plate"
    assert (record["steps"], record["max_steps"], record["grid"]) == (steps, steps, "official")
    assert record["simulator"] == "SimplerEnv (ManiSkill2_real2sim, SAPIEN 2.2.2)"
    assert record["grasped"] is False and record["success_final"] is False  # random weights
    assert result["tasks"][CARROT]["max_steps"] == steps
    assert result["tasks"][CARROT]["simulator"] == record["simulator"]
    served = result["provenance"]["model_config"]["actions"]
    assert served["ensemble_horizon"] == 7  # the model's own WidowX conventions (CogACT's widowx_bridge: K = 7)
    actions = np.load(record["trace"])["actions"]
    assert actions.shape == (steps, 7) and np.isfinite(actions).all()


@pytest.mark.sim
@pytest.mark.slow
def test_both_robots_in_one_run_each_part_with_its_own_conventions(real2sim_assets, tmp_path):
    suite = "simplerenv/widowx_carrot_on_plate,simplerenv/google_pick_coke_can"
    result = run_eval(EvalConfig(suite=suite, model=str(TINY), episodes=1, max_steps=2, out=tmp_path, video=False),
                      progress=False)
    assert list(result["tasks"]) == ["simplerenv/google_pick_coke_can", CARROT]
    assert all(record["failure"] is None and record["steps"] == 2 for record in result["episodes"])
    horizons = [part["provenance"]["model_config"]["actions"]["ensemble_horizon"] for part in result["parts"]]
    assert horizons == [7, 2] and [part["suite"] for part in result["parts"]] == suite.split(",")
    assert json.loads((tmp_path / "results.json").read_text())["suite"] == suite
    assert (tmp_path / "part1" / "results.json").is_file() and (tmp_path / "part2" / "results.json").is_file()


@pytest.mark.sim
@pytest.mark.slow
def test_heldout_placements_and_demonstrations_in_the_original_simplerenv(real2sim_assets, tmp_path):
    """The Bridge tasks' held-out grid: the source object where the sampler put it, source and target as far apart
    as on the official grid, the same frame for the same episode whatever ran before, the official grid untouched;
    and ``vlart demos`` of an original task (re-run in SimplerEnv's interpreter)."""
    code = """
import json
import numpy as np
from envs.real2sim_env import Real2SimTask
from envs.registry import TASKS

task = Real2SimTask(TASKS["simplerenv/widowx_spoon_on_towel"], grid="heldout")
first = task.reset(5, 5).image
source = task.env.unwrapped.episode_objs[0].pose.p[:2].tolist()
for _ in range(3):
    task.step(np.array([0.02, 0, 0, 0, 0, 0, 0.0]))
task.reset(6, 6)
again = task.reset(5, 5).image
placement = task.placements.heldout(5, 5)
official = Real2SimTask(TASKS["simplerenv/widowx_spoon_on_towel"])
official_first = official.reset(3, 3).image
official.place(placement)
placed = official.reset(3, 3).image
print(json.dumps({"source": source, "placed": placement.xyz[0, :2].tolist(),
                  "gap": float(np.linalg.norm(placement.xyz[0, :2] - placement.xyz[1, :2])),
                  "min_gap": task.placements.min_source_target_distance,
                  "repeat_diff": int(np.abs(first.astype(int) - again).max()),
                  "placed_diff": int(np.abs(placed.astype(int) - first).max()),
                  "official_diff": int(np.abs(official_first.astype(int) - placed).max())}))
"""
    result = subprocess.run([str(real2sim_python()), "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(found["source"], found["placed"], atol=0.003)  # where it settled
    assert found["min_gap"] == pytest.approx(0.15) and found["gap"] >= found["min_gap"]
    assert found["repeat_diff"] == 0 and found["placed_diff"] == 0 and found["official_diff"] > 50

    from envs.demos import generate_demos
    from policies.training.demo_dataset import episode_files, read_episode

    summary = generate_demos(CARROT, 1, tmp_path, workers=1, image_size=64, progress=False)
    assert summary["episodes"] == 1 and summary["expert_success_rate"] > 0
    [path] = episode_files(tmp_path)
    episode = read_episode(path)
    assert path.parent.name == "simplerenv__widowx_carrot_on_plate" and episode["actions"].shape[1] == 7
    assert (tmp_path / "dataset_statistics.json").is_file()
