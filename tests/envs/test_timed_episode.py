"""Timing modes of `vlart eval`: the configuration, latencies from a profile, an episode under simulated latency on a
stand-in simulator (fast), and on SIMPLER with the tiny model: reproducible, lockstep-equivalent at d = 0, and the
same through the server as in process (slow)."""

import json

import numpy as np
import pytest

from envs.episodes import run_episode
from envs.eval_config import EpisodeJob, EvalConfig
from envs.timed_episode import TimingConfig, latency_from_profile, refill_threshold
from tests.conftest import TINY
from policies.api.interface import Conventions, PolicyOutput
from tests.runtime.app.test_evaluation import CARROT, StandInTask

SPOON = "ms3_twin/widowx_spoon_on_towel"


def test_timing_config_names_the_flag_that_is_wrong():
    assert TimingConfig().mode == "lockstep" and TimingConfig().execution == "ensemble"
    with pytest.raises(ValueError, match="--execution: lockstep runs CogACT's server-side ensemble only"):
        TimingConfig("lockstep", "rtc")
    with pytest.raises(ValueError, match="--latency-ms or --latency-from: --timing delay needs a latency"):
        TimingConfig("delay", "hold")
    with pytest.raises(ValueError, match="--latency-ms/--latency-from: only --timing delay"):
        TimingConfig("wallclock", "hold", latency_ms=100.0)
    with pytest.raises(ValueError, match="--timing: expected one of lockstep, delay, wallclock"):
        TimingConfig("realtime")
    with pytest.raises(ValueError, match=r"--rtc-soft-rows: expected rows >= 0 \(or all\) with --execution rtc"):
        TimingConfig("delay", "hold", latency_ms=0.0, rtc_soft_rows=3)
    assert TimingConfig("delay", "rtc", latency_ms=0.0).describe({})["rtc_soft_rows"] == 0  # the hard mask
    assert TimingConfig("delay", "rtc", latency_ms=0.0, rtc_soft_rows=None).describe({})["rtc_soft_rows"] == "all"
    assert "rtc_soft_rows" not in TimingConfig("delay", "hold", latency_ms=0.0).describe({})
    with pytest.raises(ValueError, match="--execution: expected one of hold, ensemble, blend, rtc"):
        TimingConfig("delay", "average", latency_ms=0.0)
    with pytest.raises(ValueError, match="--replan-every: expected ticks >= 1 with --timing delay or wallclock, got "
                                         "4 with --timing lockstep"):
        TimingConfig("lockstep", replan_every=4)
    with pytest.raises(ValueError, match="--replan-every: expected ticks >= 1"):
        TimingConfig("delay", "hold", latency_ms=0.0, replan_every=0)
    assert TimingConfig("delay", "hold", latency_ms=0.0, replan_every=4).describe({})["replan_every"] == 4
    assert "replan_every" not in TimingConfig("delay", "hold", latency_ms=0.0).describe({})
    with pytest.raises(ValueError, match="--replan-every: expected at most the chunk length, 16, got 17"):
        refill_threshold(16, 17)


@pytest.mark.parametrize("latency_ms, ticks", [(0.0, 0), (1.0, 1), (200.0, 1), (200.5, 2), (234.0, 2), (121.0, 1),
                                               (400.0, 2), (800.0, 4)])
def test_delay_ticks_is_the_ceiling_of_latency_over_period(latency_ms, ticks):
    assert TimingConfig("delay", "hold", latency_ms=latency_ms).delay_ticks(5.0) == ticks


def test_latency_from_a_profile_file(tmp_path):
    profile = tmp_path / "profile.json"
    runs = [{"preset": name, "model": "cogact-demo", "device": "cpu", "stages": {"total": {"p50_ms": p50}}}
            for name, p50 in (("baseline", 102.2), ("efficientvla", 47.6))]
    profile.write_text(json.dumps({"runs": runs}))
    assert latency_from_profile(str(profile))[0] == 102.2  # the first run without a preset
    latency, source = latency_from_profile(f"{profile}:efficientvla", scale=2.0)
    assert latency == 95.2 and source == f"{profile}:efficientvla p50 47.6 ms x 2 (cogact-demo on cpu)"
    with pytest.raises(ValueError, match="--latency-from: preset 'fastv' is not in .* it has: baseline, efficientvla"):
        latency_from_profile(f"{profile}:fastv")
    with pytest.raises(ValueError, match="--latency-from: no such profile file"):
        latency_from_profile(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="--latency-scale: expected > 0"):
        latency_from_profile(str(profile), scale=0)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a `vlart profile --json` file"):
        latency_from_profile(str(tmp_path / "other.json"))


class ChunkStandIn:
    """A policy whose n-th chunk moves dx = 0.01 with dy = n and dz = its row, so the executed rows can be traced."""

    conventions = Conventions(7, ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"), "euler_xyz_delta",
                              "absolute", 16, 5.0, 224, ("primary",), None, 7, 0.1)

    def __init__(self):
        self.requests = []

    def reset(self):
        pass

    def predict_action(self, obs, seed=None, continuation=None):
        self.requests.append((seed, continuation))
        chunk = np.zeros((16, 7), np.float32)
        chunk[:, 0], chunk[:, 1], chunk[:, 2] = 0.01, len(self.requests), np.arange(16)
        return PolicyOutput(chunk, chunk, chunk[0], {"total": 1.0})


def test_an_episode_under_simulated_latency_executes_what_the_strategy_gives(tmp_path):
    timing = TimingConfig("delay", "hold", latency_ms=400.0, latency_source="--latency-ms")
    config = EvalConfig(suite=CARROT, model=str(TINY), via="inproc", out=tmp_path, video=False, timing=timing)
    policy = ChunkStandIn()
    record = run_episode(StandInTask(None), policy, EpisodeJob(CARROT, 3, 7, 8), config, None)
    assert record.failure is None and record.steps == 8 and record.success_final
    actions = np.load(record.trace)["actions"]
    # d = 2: two holds (gripper open), then rows 2-3 of each chunk; a new chunk is asked for as each one lands.
    assert [(int(a[1]), int(a[2])) if a[0] else None for a in actions] == [None, None, (1, 2), (1, 3), (2, 2),
                                                                            (2, 3), (3, 2), (3, 3)]
    assert actions[0].tolist() == [0, 0, 0, 0, 0, 0, 1.0]
    # episode seed * 1000 + tick; the inference asked for at tick 6 would land after the episode, so never runs
    assert [seed for seed, _ in policy.requests] == [7000, 7002, 7004]
    control = record.control
    assert control["inference_delay_ticks_max"] == 2 and control["stale_ticks"] == 2 and control["inferences"] == 3
    assert record.policy_latency_ms["p50"] == 400.0  # the simulated latency


def test_rtc_episode_sends_the_plan_it_continues(tmp_path):
    for soft_rows, rows in ((None, 14), (0, 2)):  # the soft mask sends the whole plan, the hard one (default) d rows
        timing = TimingConfig("delay", "rtc", latency_ms=400.0, rtc_soft_rows=soft_rows)
        config = EvalConfig(suite=CARROT, model=str(TINY), via="inproc", out=tmp_path, video=False, timing=timing)
        policy = ChunkStandIn()
        run_episode(StandInTask(None), policy, EpisodeJob(CARROT, 0, 0, 6), config, None)
        assert policy.requests[0][1] is None
        continuation = policy.requests[1][1]
        assert continuation.delay_ticks == 2 and continuation.prefix.shape == (rows, 7)
        assert continuation.prefix[:, 2].tolist() == list(range(2, 2 + rows))  # chunk 1's rows from tick 2 on


def eval_traces(out, *args):
    from runtime.app.cli import main

    assert main(["eval", "--suite", SPOON, "--model", str(TINY), "--episodes", "1", "--max-steps", "8",
                 "--no-video", "--out", str(out), *args]) == 0
    result = json.loads((out / "results.json").read_text())
    assert all(e["failure"] is None for e in result["episodes"])
    return result, np.load(result["episodes"][0]["trace"])["actions"]


@pytest.mark.sim
@pytest.mark.slow
def test_delay_mode_is_reproducible_and_the_same_through_the_server(simpler_assets, tmp_path):
    # Two runs, each in its own worker process: equal traces show the run reproducible and the path through the
    # server the same as the one in process.
    rtc = ["--timing", "delay", "--latency-ms", "400", "--execution", "rtc"]
    first, actions = eval_traces(tmp_path / "inproc", "--via", "inproc", *rtc)
    served, through_server = eval_traces(tmp_path / "zmq", "--via", "zmq", *rtc)
    assert actions.shape == (8, 7) and np.array_equal(actions, through_server)
    assert first["timing"] == {"mode": "delay", "execution": "rtc", "rtc_soft_rows": 0, "latency_ms": 400.0,
                               "latency_source": "--latency-ms", "delay_ticks": {SPOON: 2}}
    assert np.all(actions[:2, :6] == 0) and actions[2:, :6].any()  # held until the first chunk landed
    control = served["episodes"][0]["control"]
    assert control["inference_delay_ticks_max"] == 2 and control["inferences"] == 3


@pytest.mark.sim
@pytest.mark.slow
def test_zero_delay_with_the_ensemble_is_lockstep(simpler_assets, tmp_path):
    _, lockstep = eval_traces(tmp_path / "lockstep", "--via", "inproc")
    _, delay = eval_traces(tmp_path / "delay", "--via", "inproc", "--timing", "delay", "--latency-ms", "0")
    assert np.array_equal(lockstep, delay)


@pytest.mark.sim
@pytest.mark.slow
def test_wallclock_mode_paces_the_simulator_and_reports_the_loop(simpler_assets, tmp_path):
    result, actions = eval_traces(tmp_path / "wallclock", "--via", "zmq", "--timing", "wallclock",
                                  "--execution", "rtc")
    assert result["timing"] == {"mode": "wallclock", "execution": "rtc", "rtc_soft_rows": 0}
    control = result["episodes"][0]["control"]
    # Real time on a loaded machine: only what must hold whatever the load.
    assert control["ticks"] == 8 and actions.shape == (8, 7) and control["inferences"] >= 1
    assert control["inference_latency_p50_ms"] > 0 and control["inference_errors"] == 0
    assert np.isfinite(actions).all()
