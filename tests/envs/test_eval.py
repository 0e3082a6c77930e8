"""End-to-end evaluation through a real `vlart serve` process and the thin client."""

import json

import numpy as np
import pytest

from runtime.cli import main
from tests.conftest import TINY

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_eval_two_episodes_via_zmq_writes_results_and_videos(simpler_assets, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", "--suite", "simpler/widowx_carrot_on_plate", "--model", str(TINY), "--via", "zmq",
                 "--episodes", "2", "--max-steps", "6", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "simpler/widowx_carrot_on_plate" in printed and "official rule" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["via"] == "zmq" and result["endpoint"].startswith("tcp://127.0.0.1:")
    episodes = result["episodes"]
    assert [e["episode_id"] for e in episodes] == [0, 1]
    for episode in episodes:
        assert episode["steps"] == 6 and episode["failure"] is None
        assert episode["instruction"] == "put carrot on plate"
        assert episode["success_final"] is False  # random weights
        assert episode["grasped"] is False  # SIMPLER's partial success: nothing was held
        assert episode["policy_latency_ms"]["p50"] > 0 and episode["env_step_ms"]["p50"] > 0
        assert "__failure__put-carrot-on-plate.mp4" in episode["video"]
    task = result["tasks"]["simpler/widowx_carrot_on_plate"]
    assert task["episodes"] == 2 and task["success_final"]["ci95"] == [0.0, 0.6576]
    assert task["grasped"]["successes"] == 0
    import imageio.v2 as imageio

    reader = imageio.get_reader(episodes[0]["video"])
    frames = [frame for frame in reader]
    assert len(frames) == 7 and frames[0].shape == (480, 640, 3)
    assert np.asarray(frames[0]).std() > 10
    assert "ready on" in (out / "server.log").read_text()


def test_failing_env_step_is_a_failed_episode_and_the_run_continues(simpler_assets, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", "--suite", "simpler/widowx_spoon_on_towel", "--model", str(TINY), "--via", "inproc",
                 "--episodes", "3", "--max-steps", "4", "--inject-fault", "crash:1:2", "--no-video",
                 "--out", str(out)])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    by_id = {e["episode_id"]: e for e in result["episodes"]}
    assert by_id[1]["failure"] == "RuntimeError: injected env.step failure at step 2"
    assert by_id[1]["success_final"] is False and by_id[1]["steps"] == 2
    assert by_id[0]["failure"] is None and by_id[2]["failure"] is None and by_id[2]["steps"] == 4
    assert result["tasks"]["simpler/widowx_spoon_on_towel"]["failed_runs"] == 1


def test_hung_episode_is_stopped_by_the_watchdog(simpler_assets, tmp_path):
    out = tmp_path / "run"
    code = main(["eval", "--suite", "simpler/widowx_stack_cube", "--model", str(TINY), "--via", "inproc",
                 "--episodes", "2", "--max-steps", "3", "--inject-fault", "hang:0:1", "--episode-timeout", "25",
                 "--no-video", "--out", str(out)])
    assert code == 0
    by_id = {e["episode_id"]: e for e in json.loads((out / "results.json").read_text())["episodes"]}
    assert by_id[0]["failure"].startswith("timeout: no result after 25 s")
    assert by_id[1]["failure"] is None and by_id[1]["steps"] == 3
