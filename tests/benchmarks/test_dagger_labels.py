"""``benchmarks.dagger_labels``: gripper agreement between DAgger's labels and the executed actions, per folder."""

import json

import numpy as np

from benchmarks import dagger_labels
from envs.demos import episode_path, write_episode
from envs.placements import Placement
from envs.registry import TASKS

TASK = "simplerenv/widowx_carrot_on_plate"


def write(out, attempt, labels, executed, success):
    steps = len(labels)
    actions, done = np.zeros((steps, 7)), np.zeros((steps, 7))
    actions[:, 6], done[:, 6] = labels, executed
    write_episode(episode_path(out, f"{TASK}@dagger", attempt), TASKS[TASK], attempt, 7,
                  Placement(np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 1))), "put carrot on plate",
                  np.zeros((steps, 8, 8, 3), np.uint8), actions, success=success, executed=done,
                  expert_steps=np.zeros(steps, bool))


def test_agreement_over_all_and_over_solved_episodes(tmp_path, capsys):
    write(tmp_path, 0, [1, 1, 0, 0], [1, 1, 0, 0], success=True)   # 4 of 4 agree
    write(tmp_path, 1, [1, 1, 1, 1], [1, 0, 0, 0], success=False)  # 1 of 4
    (tmp_path / "meta.json").write_text(json.dumps({"tasks": {f"{TASK}@dagger": {"policy": "pilot"}}}))
    out = tmp_path / "labels.json"
    dagger_labels.main([str(tmp_path), "--out", str(out)])
    row = json.loads(out.read_text())["folders"]["simplerenv__widowx_carrot_on_plate@dagger"]
    assert row == {"episodes": 2, "solved": 1, "steps": 8, "gripper_agreement": 0.625,
                   "gripper_agreement_solved": 1.0}
    assert "| 62.5 % | 100.0 % |" in capsys.readouterr().out
    assert json.loads(out.read_text())["model"] == ["pilot"]
