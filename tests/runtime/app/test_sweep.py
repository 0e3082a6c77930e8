"""``vlart sweep`` and ``vlart report``: the YAML's cells, the episode store's resume rules, the report (fast); the
smoke sweep on a local Ray runtime against ``vlart eval``, a killed sweep resumed, a hung episode (slow, sim)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from envs.results import EpisodeRecord
from runtime.app.sweep_config import SweepConfigError, load_sweep, parse_sweep
from runtime.app.sweep_store import EpisodeStore
from tests.conftest import REPO
from tests.faults import Fault, faulty_episode_actor

SMOKE = REPO / "configs" / "sweeps" / "smoke.yaml"
SPOON = "ms3_twin/widowx_spoon_on_towel"


def test_axes_expand_to_named_cells_with_eval_settings(tmp_path):
    config = parse_sweep("""
axes:
  suite: [ms3_twin/widowx_spoon_on_towel, ms3_twin/widowx_carrot_on_plate]
  preset: [baseline, efficientvla]
  seed: [0, 7]
model: checkpoints/cogact-demo
episodes: 3
timing: delay
latency_ms: 200
execution: rtc
""", default_name="grid")
    cells = config.cells(tmp_path)
    assert len(cells) == 8 and config.name == "grid"
    first = cells[0]
    assert first.name == "suite=widowx_spoon_on_towel,preset=baseline,seed=0"
    assert cells[-1].name == "suite=widowx_carrot_on_plate,preset=efficientvla,seed=7"
    c = cells[-1].eval_config
    assert (c.suite, c.preset, c.seed, c.model, c.episodes) == ("ms3_twin/widowx_carrot_on_plate", "efficientvla", 7,
                                                                 "checkpoints/cogact-demo", 3)
    assert (c.timing.mode, c.timing.execution, c.timing.latency_ms) == ("delay", "rtc", 200)
    assert c.out == tmp_path / "cells" / cells[-1].name
    assert first.server_key != cells[-1].server_key and first.server_key == cells[1].server_key  # seed: same server
    smoke = load_sweep(SMOKE)
    assert [cell.name for cell in smoke.cells(tmp_path)] == ["preset=baseline", "preset=cache-only"]
    assert smoke.resources == {"server": {"num_cpus": 0, "num_gpus": 0}, "episode": {"num_cpus": 1}}


@pytest.mark.parametrize("text, message", [
    ("axes: {preset: [baseline]}\nsuites: x", "suites: unknown key"),
    ("axes: {presets: [baseline]}\nsuite: x", "axes.presets: unknown setting"),
    ("axes: {preset: []}\nsuite: x", "axes.preset: expected a non-empty list"),
    ("axes: {preset: [a]}\npreset: b\nsuite: x", "preset: set both as an axis and as a fixed setting"),
    ("model: m\nepisodes: 2", "suite: every cell needs a suite"),
    ("suite: s\nmodel: m\ntiming: delay", "--latency-ms or --latency-from: --timing delay needs a latency"),
    ("suite: s\nmodel: m\nresources: {episode: {num_cpus: -1}}", "resources.episode.num_cpus: expected a number >= 0"),
    ("suite: s\nmodel: m\nresources: {gpu: {}}", "resources: expected a map with keys"),
    ("suite: s\nmodel: m\nparallel: 0", "parallel: expected an integer >= 1"),
    ("axes: {model: [a/m, b/m]}\nsuite: s", "two cells get this name"),
    ("[1, 2]", "expected a map of settings"),
])
def test_bad_sweep_files_name_the_key(tmp_path, text, message):
    with pytest.raises(SweepConfigError, match=message.replace("(", r"\(")):
        parse_sweep(text).cells(tmp_path)


def test_store_resumes_done_episodes_retries_a_failed_run_once_and_ignores_a_cut_line(tmp_path):
    store = EpisodeStore(tmp_path)
    store.add("a", EpisodeRecord(SPOON, 0, 0, steps=5))
    store.add("a", EpisodeRecord(SPOON, 1, 1, failure="RuntimeError: boom"))
    store.add("b", EpisodeRecord(SPOON, 0, 0, failure="timeout"))
    store.add("b", EpisodeRecord(SPOON, 0, 0, failure="timeout again"))
    with store.path.open("a") as out:
        out.write('{"cell": "a", "task": "ms3_twin/widowx_spoon_on_towel", "episode_id": 2, "se')  # killed mid-write
    again = EpisodeStore(tmp_path)
    assert again.is_done(("a", SPOON, 0)) and again.final(("a", SPOON, 0))["steps"] == 5
    assert not again.is_done(("a", SPOON, 1)) and again.attempt_count(("a", SPOON, 1)) == 1
    assert again.is_done(("b", SPOON, 0)) and again.final(("b", SPOON, 0))["failure"] == "timeout again"
    assert not again.is_done(("a", SPOON, 2)) and again.final(("a", SPOON, 2)) is None
    retry = again.add("a", EpisodeRecord(SPOON, 1, 1, steps=4))
    assert retry["attempt"] == 2 and again.is_done(("a", SPOON, 1))
    assert again.final(("a", SPOON, 1))["failure"] is None


def _results(tmp_path: Path) -> dict:
    """A sweep's results.json as vlart sweep writes it: two cells, one with a successful and a crashed episode."""
    video = tmp_path / "cells" / "preset=baseline" / "videos" / "ep1.mp4"
    episodes = [
        {"cell": "preset=baseline", "attempt": 1,
         **EpisodeRecord(SPOON, 0, 0, success_final=True, success_any=True, grasped=True,
                         policy_latency_ms={"p50": 40.0, "p95": 55.0}).to_dict()},
        {"cell": "preset=baseline", "attempt": 2, **EpisodeRecord(SPOON, 1, 1, failure="RuntimeError: boom",
                                                                 video=str(video)).to_dict()},
        {"cell": "preset=fast", "attempt": 1, **EpisodeRecord(SPOON, 0, 0, policy_latency_ms={"p50": 20.0,
                                                                                             "p95": 30.0}).to_dict()},
    ]
    from envs.results import SUCCESS_RULES, aggregate

    cells = {}
    for cell in ("preset=baseline", "preset=fast"):
        records = [EpisodeRecord(**{k: v for k, v in e.items() if k not in ("cell", "attempt")})
                   for e in episodes if e["cell"] == cell]
        cells[cell] = {"values": {"preset": cell.split("=")[1]}, "settings": {"preset": cell.split("=")[1]},
                       "episodes": len(records), "missing": 0, "tasks": aggregate(records), "model_config": None}
    return {"sweep": "demo", "success_rules": SUCCESS_RULES, "cells": cells, "episodes": episodes,
            "run": {"wall_time_s": 12.5, "episodes_run": 3, "retried": 1, "resumed_with_done": 0,
                    "ray": {"address": "local", "nodes": 1, "resources": {"CPU": 2.0}}},
            "provenance": {"git": {"commit": "abc123", "dirty": False}, "versions": {"python": "3.11.7"},
                           "machine": {"platform": "Linux", "cpus": 2}, "sweep_yaml": "name: demo\n"}}


def test_report_tables_intervals_failed_videos_and_provenance(tmp_path):
    from runtime.app.cli import main

    (tmp_path / "results.json").write_text(json.dumps(_results(tmp_path)))
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    # 1 of 2 with the Wilson interval [9.4, 90.5]; 0 of 1: [0, 79.3]
    assert ("| preset=baseline | ms3_twin/widowx_spoon_on_towel | 2 | 1 | 50.0% [9.4, 90.5] | 50.0% [9.4, 90.5] | "
            "50.0% [9.4, 90.5] | 40.0 |") in md
    assert "| preset=fast | ms3_twin/widowx_spoon_on_towel | 1 | 0 | 0.0% [0.0, 79.3]" in md
    assert ("- preset=baseline / ms3_twin/widowx_spoon_on_towel episode 1: run failed (RuntimeError: boom) "
            "[video](cells/preset=baseline/videos/ep1.mp4)") in md
    assert "git commit: abc123" in md and "name: demo" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2  # both charts inline: one self-contained file
    assert "50.0% [9.4, 90.5]" in page and 'href="cells/preset=baseline/videos/ep1.mp4"' in page
    assert (tmp_path / "report_success.png").stat().st_size > 1000


def test_report_of_a_folder_without_sweep_results_says_so(tmp_path, capsys):
    from runtime.app.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "no sweep results at" in capsys.readouterr().err


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


SWEEP_WITH_A_CRASH = """
import sys
from pathlib import Path
from runtime.app.sweep import run_sweep
from runtime.app.sweep_config import load_sweep
from tests.faults import Fault, faulty_episode_actor
crash = faulty_episode_actor(Fault("crash", episode=1, step=2))
run_sweep(load_sweep(sys.argv[1]), Path(sys.argv[2]), progress=False, episode_actor=crash)
"""


@pytest.mark.sim
@pytest.mark.slow
def test_smoke_sweep_on_local_ray_matches_vlart_eval_and_resumes_with_nothing_to_do(simpler_assets, tmp_path):
    from runtime.app.evaluation import run_eval
    from runtime.app.sweep import run_sweep

    out = tmp_path / "sweep"
    config = load_sweep(SMOKE)
    result = run_sweep(config, out, progress=False)
    assert list(result["cells"]) == ["preset=baseline", "preset=cache-only"]
    episodes = result["episodes"]
    assert [(e["cell"], e["episode_id"], e["attempt"]) for e in episodes] == [
        ("preset=baseline", 0, 1), ("preset=baseline", 1, 1), ("preset=cache-only", 0, 1), ("preset=cache-only", 1, 1)]
    for episode in episodes:
        assert episode["failure"] is None and episode["steps"] == 8 and episode["task"] == SPOON
        assert Path(episode["video"]).is_file() and Path(episode["video"]).is_relative_to(out / "cells")
    cell = result["cells"]["preset=cache-only"]
    assert cell["tasks"][SPOON]["episodes"] == 2 and cell["tasks"][SPOON]["success_final"]["ci95"] == [0.0, 0.6576]
    assert cell["model_config"]["name"] == "cogact-tiny" and cell["settings"]["preset"] == "cache-only"
    assert result["run"]["server_counters"]["cogact-tiny / cache-only"]["inferences"] == 16
    assert json.loads((out / "results.json").read_text())["episodes"] == episodes
    from runtime.app.cli import main

    assert main(["report", str(out)]) == 0  # the report of a real sweep: its videos linked relative to it
    md = (out / "report.md").read_text()
    assert "| preset=cache-only | ms3_twin/widowx_spoon_on_towel | 2 | 0 | 0.0% [0.0, 65.8]" in md
    assert "[video](cells/preset=baseline/videos/" in md

    # The same cell through vlart eval with the policy in process: the same episodes, step for step.
    cells = {c.name: c for c in config.cells(out)}
    eval_config = cells["preset=cache-only"].eval_config
    import dataclasses

    reference = run_eval(dataclasses.replace(eval_config, via="inproc", out=tmp_path / "eval", video=False),
                         progress=False)
    for ours, theirs in zip(episodes[2:], reference["episodes"], strict=True):
        assert (ours["episode_id"], ours["success_final"], ours["steps"]) == (
            theirs["episode_id"], theirs["success_final"], theirs["steps"])
        np.testing.assert_allclose(np.load(ours["trace"])["actions"], np.load(theirs["trace"])["actions"],
                                   atol=1e-5, rtol=0)

    again = run_sweep(config, out, progress=False)
    assert again["run"]["episodes_run"] == 0 and again["run"]["resumed_with_done"] == 4
    assert again["episodes"] == episodes


@pytest.mark.sim
@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_episodes(simpler_assets, tmp_path):
    """Killed (SIGKILL) once an episode is on disk; the same command finishes the rest, and the crashing episode is
    tried twice in all, its failure recorded with the reason. The sweep runs as ``vlart sweep`` does (``run_sweep`` in
    a process of its own) with a fault in episode 1."""
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(f"""name: kill
suite: {SPOON}
model: cogact-tiny
episodes: 3
max_steps: 5
video: false
parallel: 1
resources: {{server: {{num_cpus: 0}}, episode: {{num_cpus: 1}}}}
""")
    out = tmp_path / "sweep"
    lines = out / "episodes.jsonl"
    command = [sys.executable, "-c", SWEEP_WITH_A_CRASH, str(sweep), str(out)]
    process = subprocess.Popen(command, env=_env(), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not (lines.exists() and lines.read_text().count("\n") >= 1):
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no episode finished"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)
    first = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(first) < 4  # killed part way: 3 episodes take 4 runs in all
    finished = subprocess.run(command, env=_env(), cwd=REPO,
                              capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    runs = [json.loads(line) for line in lines.read_text().splitlines()]
    assert runs[:len(first)] == first  # what was on disk stays
    attempts = [(r["episode_id"], r["attempt"]) for r in runs]
    assert sorted(attempts) == [(0, 1), (1, 1), (1, 2), (2, 1)]  # nothing finished ran again; the crash twice
    result = json.loads((out / "results.json").read_text())
    by_id = {e["episode_id"]: e for e in result["episodes"]}
    assert by_id[1]["failure"] == "RuntimeError: injected env.step failure at step 2" and by_id[1]["attempt"] == 2
    assert by_id[0]["failure"] is None and by_id[2]["failure"] is None
    assert result["cells"]["kill"]["tasks"][SPOON]["failed_runs"] == 1


@pytest.mark.sim
@pytest.mark.slow
def test_a_hung_episode_is_stopped_its_worker_replaced_and_it_is_retried_once(simpler_assets, tmp_path):
    from runtime.app.sweep import run_sweep

    config = parse_sweep(f"""name: hang
suite: {SPOON}
model: cogact-tiny
via: inproc
episodes: 2
max_steps: 3
video: false
episode_timeout: 8
parallel: 1
""")
    # The watchdog starts once the simulator is built: the healthy episode (3 steps of the tiny model, about a second
    # alone) has 8 s even with both cores busy.
    result = run_sweep(config, tmp_path / "sweep", progress=False,
                       episode_actor=faulty_episode_actor(Fault("hang", episode=0, step=1)))
    by_id = {e["episode_id"]: e for e in result["episodes"]}
    assert by_id[0]["failure"] == "timeout: no result after 8 s (episode watchdog)" and by_id[0]["attempt"] == 2
    assert by_id[1]["failure"] is None and by_id[1]["steps"] == 3
    assert result["run"]["replaced_workers"] == 2 and result["run"]["retried"] == 1


@pytest.mark.sim
@pytest.mark.slow
def test_a_sweep_on_a_two_node_cluster_places_server_and_episodes_by_resources(simpler_assets, tmp_path):
    """Two Ray nodes on this machine (a head and a second node, as `ray start --head` and `ray start --address`
    make them; Ray's own test cluster), one CPU each: the server actor takes one node's CPU, the episode worker the
    other's, and reaches the server at its node's address."""
    from ray.cluster_utils import Cluster

    from runtime.app.sweep import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "_system_config": {"worker_niceness": 0}})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        config = parse_sweep(f"""name: two-nodes
suite: {SPOON}
model: cogact-tiny
episodes: 1
max_steps: 3
video: false
resources: {{server: {{num_cpus: 1}}, episode: {{num_cpus: 1}}}}
""")
        result = run_sweep(config, tmp_path / "sweep", address=cluster.address, progress=False)
    finally:
        cluster.shutdown()
    assert result["run"]["ray"]["nodes"] == 2 and result["run"]["ray"]["resources"]["CPU"] == 2.0
    (episode,) = result["episodes"]
    assert episode["failure"] is None and episode["steps"] == 3
    assert result["run"]["server_counters"]["cogact-tiny / baseline"]["inferences"] == 3


@pytest.mark.slow
def test_a_model_that_cannot_load_stops_the_sweep_naming_the_cell(tmp_path, capsys):
    from runtime.app.cli import main

    sweep = tmp_path / "bad.yaml"
    sweep.write_text(f"suite: {SPOON}\nmodel: {tmp_path / 'no-such-model'}\nepisodes: 1\nparallel: 1\n"
                     "resources: {server: {num_cpus: 0}}\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "vlart sweep: error: cell bad: the policy server" in error and "did not start" in error
    assert "no-such-model" in error


@pytest.mark.sim
@pytest.mark.slow
def test_a_google_robot_cell_runs_in_simplerenvs_interpreter(real2sim_assets, tmp_path):
    """A Google-robot task's episodes run in a worker of SimplerEnv's interpreter inside the episode actor, against
    a server with the Google robot's conventions, as vlart eval runs them."""
    from runtime.app.sweep import run_sweep

    config = parse_sweep("""name: google
suite: simplerenv/google_pick_coke_can
model: cogact-tiny
episodes: 2
max_steps: 4
video: false
parallel: 1
resources: {server: {num_cpus: 0}, episode: {num_cpus: 1}}
""")
    result = run_sweep(config, tmp_path / "sweep", progress=False)
    assert [(e["episode_id"], e["failure"], e["steps"]) for e in result["episodes"]] == [(0, None, 4), (1, None, 4)]
    assert result["episodes"][0]["instruction"] == "pick coke can"
    served = result["cells"]["google"]["model_config"]["actions"]
    assert served["unnorm_key"] == "fractal20220817_data" and served["ensemble_horizon"] == 2
