"""SIMPLER's Google-robot tasks: run in the SimplerEnv interpreter (.venv-real2sim), reached through vlart serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from runtime.app.evaluation import EpisodeJob, EvalConfig, plan_eval, run_eval
from envs.real2sim_workers import config_from_dict, encode, payload_from_dict, real2sim_python
from envs.results import EpisodeRecord
from envs.timed_episode import TimingConfig
from tests.conftest import REPO, TINY

COKE = "simplerenv/google_pick_coke_can"
OPEN_DRAWER = "simplerenv/google_open_drawer"


def test_a_missing_simplerenv_environment_says_run_setup(monkeypatch, tmp_path):
    monkeypatch.setenv("VLART_REAL2SIM_PYTHON", str(tmp_path / "no-such-venv" / "bin" / "python"))
    with pytest.raises(RuntimeError, match=r"run \./setup\.sh"):
        run_eval(EvalConfig(suite=COKE, model=str(TINY), out=tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "server.log").exists()  # refused before a server was started


def test_google_tasks_need_a_policy_server(tmp_path):
    with pytest.raises(ValueError, match="--via"):
        run_eval(EvalConfig(suite=COKE, model=str(TINY), via="inproc", out=tmp_path), progress=False)


def test_the_suite_sets_the_google_robots_action_conventions_unless_the_user_did(monkeypatch):
    monkeypatch.setenv("VLART_REAL2SIM_PYTHON", sys.executable)  # the plan checks that an interpreter is there

    def with_task_conventions(config):
        return plan_eval(config).config

    google = with_task_conventions(EvalConfig(suite="simplerenv_google_vm", model=str(TINY)))
    assert google.unnorm_key == "fractal20220817_data" and google.overrides == ["actions.ensemble_horizon=2"]
    mine = with_task_conventions(EvalConfig(suite=COKE, model=str(TINY), unnorm_key="mine",
                                            overrides=["actions.ensemble_horizon=5"]))
    assert mine.unnorm_key == "mine" and mine.overrides == ["actions.ensemble_horizon=5"]
    widowx = with_task_conventions(EvalConfig(suite="ms3_twin_bridge", model=str(TINY)))
    assert widowx.unnorm_key is None and widowx.overrides == []  # the model's own (WidowX) conventions


def test_settings_jobs_and_records_cross_the_pipe_unchanged(tmp_path):
    config = EvalConfig(suite=COKE, model=str(TINY), out=tmp_path, workers=2, overrides=["a=1"],
                        timing=TimingConfig(mode="delay", execution="rtc", latency_ms=250.0))
    assert config_from_dict(json.loads(encode(config))) == config
    job = EpisodeJob(COKE, 7, 7, 80)
    assert payload_from_dict("start", json.loads(encode(job))) == job
    record = EpisodeRecord(COKE, 7, 7, success_final=True, steps=80, control={"delay_ticks": np.int64(1)},
                           policy_latency_ms={"p50": np.float32(1.5)})
    back = payload_from_dict("done", json.loads(encode(record)))
    assert back.control == {"delay_ticks": 1} and back.policy_latency_ms == {"p50": 1.5} and back.steps == 80


@pytest.mark.sim
def test_the_simulator_side_imports_neither_torch_nor_transformers(real2sim_assets):
    code = ("import sys, envs.real2sim_env, envs.real2sim_workers, runtime.app.evaluation, bridge.client; "
            "heavy = [m for m in ('torch', 'transformers', 'mani_skill') if m in sys.modules]; "
            "import numpy, sapien; print(numpy.__version__, sapien.__version__, heavy)")
    result = subprocess.run([str(real2sim_python()), "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert result.returncode == 0, result.stderr
    numpy_version, sapien_version, heavy = result.stdout.split(maxsplit=2)
    assert numpy_version.startswith("1.") and sapien_version == "2.2.2" and heavy.strip() == "[]"


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("task, task_steps, instruction, episode", [
    (COKE, 80, "pick coke can", 0),
    (OPEN_DRAWER, 113, "open top drawer", 0),
])
def test_a_google_episode_through_vlart_serve(real2sim_assets, tmp_path, task, task_steps, instruction, episode):
    assert plan_eval(EvalConfig(suite=task, model=str(TINY), episodes=1)).jobs[0].max_steps == task_steps
    steps = 6  # the episode's first steps: every step takes the same path
    result = run_eval(EvalConfig(suite=task, model=str(TINY), episodes=1, max_steps=steps, out=tmp_path),
                      progress=False)
    record = result["episodes"][0]
    assert record["failure"] is None and record["episode_id"] == episode
    assert record["steps"] == steps and record["instruction"] == instruction
    assert record["success_final"] is False  # random weights
    assert record["policy_latency_ms"]["p50"] > 0 and record["env_step_ms"]["p50"] > 0
    # The server was started with the Google robot's conventions (CogACT's SIMPLER wrapper: fractal statistics,
    # ensemble horizon 2).
    served = result["provenance"]["model_config"]["actions"]
    assert served["unnorm_key"] == "fractal20220817_data" and served["ensemble_horizon"] == 2
    import imageio.v2 as imageio

    frames = [frame for frame in imageio.get_reader(record["video"])]  # list() would ask its len(): inf
    assert len(frames) == steps + 1 and frames[0].shape == (512, 640, 3) and np.asarray(frames[0]).std() > 10
    actions = np.load(record["trace"])["actions"]
    assert actions.shape == (steps, 7) and np.isfinite(actions).all()


@pytest.mark.sim
@pytest.mark.slow
def test_an_overlay_swapped_in_place_renders_as_a_fresh_build(real2sim_assets):
    """Drawer episodes 0 and 1 differ only in the overlay photo (and the robot's pose): the env built for episode 0
    serves episode 1 without a rebuild, and its first frame is the one a fresh build gives."""
    code = """
import numpy as np
from envs.real2sim_env import Real2SimTask
from envs.registry import TASKS
spec = TASKS["simplerenv/google_open_drawer"]
reused = Real2SimTask(spec)
reused.reset(0, seed=0)
built = reused.built
swapped = reused.reset(1, seed=1).image.astype(int)
assert reused.built == built  # no rebuild
fresh = Real2SimTask(spec).reset(1, seed=1).image.astype(int)
first = Real2SimTask(spec).reset(0, seed=0).image.astype(int)
print(np.abs(swapped - fresh).mean(), np.abs(first - fresh).mean())
"""
    result = subprocess.run([str(real2sim_python()), "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    swapped_vs_fresh, other_episode = map(float, result.stdout.split()[-2:])
    assert swapped_vs_fresh == 0.0 and other_episode > 5.0
