import threading
import time

import numpy as np
import pytest

from policies.interface import Observation
from runtime.control_loop import ControlLoop, ControlLoopConfig, blend


class StaticCamera:
    def __init__(self):
        self.frames = 0

    def observe(self):
        self.frames += 1
        return Observation(np.zeros((8, 8, 3), np.uint8), "pick coke can")


class Recorder:
    def __init__(self):
        self.actions = []
        self.times = []

    def act(self, action):
        self.actions.append(np.array(action))
        self.times.append(time.monotonic())


class FakePolicy:
    """Takes ``latency_s`` per chunk; row k of every chunk moves by (call number, k) so rows can be traced."""

    def __init__(self, latency_s=0.12, chunk=16, gripper=0.0):
        self.latency_s = latency_s
        self.chunk = chunk
        self.gripper = gripper
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self, obs):
        with self.lock:
            self.calls += 1
            call = self.calls
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.latency_s)
        with self.lock:
            self.active -= 1
        chunk = np.zeros((self.chunk, 7), np.float32)
        chunk[:, 0] = 0.01
        chunk[:, 1] = call
        chunk[:, 2] = np.arange(self.chunk)
        chunk[:, 6] = self.gripper
        return chunk


def test_keeps_rate_and_overlaps_inference_with_execution():
    policy = FakePolicy(latency_s=0.12)
    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, policy, ControlLoopConfig(rate_hz=20, refill_threshold=6, merge="replace"))
    report = loop.run(ticks=80)
    loop.close()
    assert report.ticks == 80 and len(sink.actions) == 80
    assert report.effective_rate_hz == pytest.approx(20, rel=0.1)
    # 120 ms at 20 Hz is 3 ticks of delay: only the ticks before the first chunk hold.
    assert 2 <= report.inference_delay_ticks_p50 <= 4
    assert report.stale_ticks <= 5 and report.stale_ratio <= 0.07
    assert report.inferences >= 6 and policy.max_active == 1
    # After the first chunk the robot never waits: every later tick executes a planned action (dx = 0.01).
    first = next(i for i, a in enumerate(sink.actions) if a[0] != 0)
    assert all(a[0] == pytest.approx(0.01) for a in sink.actions[first:])
    # The rows executed right after a new chunk arrives skip the rows planned for ticks already past.
    rows_after_switch = [b[2] for a, b in zip(sink.actions[first:], sink.actions[first + 1:]) if b[1] != a[1]]
    assert rows_after_switch and all(r >= 2 for r in rows_after_switch)


def test_hold_action_when_the_queue_runs_dry():
    policy = FakePolicy(latency_s=0.12, chunk=2, gripper=0.0)
    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, policy, ControlLoopConfig(rate_hz=20, refill_threshold=2,
                                                                       initial_gripper=1.0))
    report = loop.run(ticks=40)
    loop.close()
    # Each 2-row chunk arrives 3 ticks after its observation: both rows are already stale, nothing is executable.
    assert report.stale_ticks == 40 and report.stale_ratio == 1.0
    for action in sink.actions:
        assert np.all(action[:6] == 0) and action[6] == 1.0  # zero motion, gripper unchanged (still open)


def test_hold_keeps_the_last_gripper_command():
    policy = FakePolicy(latency_s=0.05, chunk=4, gripper=0.0)  # closes the gripper
    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, policy, ControlLoopConfig(rate_hz=20, refill_threshold=0))
    loop.run(ticks=30)
    loop.close()
    holds_after_motion = [a for i, a in enumerate(sink.actions) if a[0] == 0 and any(b[0] != 0 for b in sink.actions[:i])]
    assert holds_after_motion and all(a[6] == 0.0 for a in holds_after_motion)


def test_nan_chunks_are_never_emitted():
    calls = {"n": 0}

    def flaky(obs):
        calls["n"] += 1
        time.sleep(0.02)
        chunk = np.full((16, 7), 0.01, np.float32)
        if calls["n"] % 2 == 0:
            chunk[3, 2] = np.nan
        if calls["n"] % 3 == 0:
            chunk[0, 0] = np.inf
        return chunk

    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, flaky, ControlLoopConfig(rate_hz=50, refill_threshold=14))
    report = loop.run(ticks=60)
    loop.close()
    assert report.invalid_chunks >= 10
    assert all(np.isfinite(a).all() for a in sink.actions)


def test_wrong_shape_and_exceptions_are_counted_not_emitted():
    calls = {"n": 0}

    def broken(obs):
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("camera unplugged")
        return np.zeros((16, 5), np.float32)

    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, broken, ControlLoopConfig(rate_hz=50))
    report = loop.run(ticks=20)
    loop.close()
    assert report.inference_errors >= 3 and report.invalid_chunks >= 3
    assert report.last_error == "RuntimeError: camera unplugged"
    assert report.stale_ticks == 20


def test_watchdog_stops_motion_when_chunks_stop_arriving():
    calls = {"n": 0}

    def stalls(obs):
        calls["n"] += 1
        if calls["n"] > 1:
            time.sleep(3.0)  # the server hangs after the first answer
        return np.full((16, 7), 0.01, np.float32)

    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, stalls, ControlLoopConfig(rate_hz=20, refill_threshold=16,
                                                                       watchdog_s=0.3))
    report = loop.run(ticks=20)
    loop.stop()
    moving = [i for i, a in enumerate(sink.actions) if a[0] != 0]
    assert moving, "the first chunk was executed"
    # Motion stops within the watchdog time (6 ticks at 20 Hz) of the last fresh chunk, though 16 rows were planned.
    assert max(moving) - min(moving) <= 8
    assert report.watchdog_ticks >= 8
    assert all(np.all(a[:6] == 0) for a in sink.actions[max(moving) + 1:])


def test_ensemble_merge_blends_overlapping_plans():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.0, 1.0, 0.0])
    w_old, w_new = np.exp(0.0), np.exp(0.1)  # cos(b, a) = 0, cos(b, b) = 1
    np.testing.assert_allclose(blend([a, b], 0.1), (w_old * a + w_new * b) / (w_old + w_new), atol=1e-7)
    policy = FakePolicy(latency_s=0.03)
    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, policy, ControlLoopConfig(rate_hz=20, refill_threshold=14,
                                                                       merge="ensemble"))
    loop.run(ticks=30)
    loop.close()
    # With plans overlapping, executed dy (the chunk's call number) is a blend between consecutive calls.
    assert any(abs(a[1] - round(a[1])) > 1e-3 for a in sink.actions if a[0] != 0)


def test_config_validation():
    with pytest.raises(ValueError, match="merge must be"):
        ControlLoopConfig(rate_hz=5, merge="average")
    with pytest.raises(ValueError, match="rate_hz"):
        ControlLoopConfig(rate_hz=0)


def test_control_loop_drives_a_robot_through_the_thin_client(tiny_policy):
    from bridge.client import PolicyClient
    from bridge.server import PolicyServer
    from runtime.control_loop import client_predictor

    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*").start()
    try:
        with PolicyClient(server.endpoint, timeout_s=10) as client:
            sink = Recorder()
            loop = ControlLoop(StaticCamera(), sink, client_predictor(client),
                               ControlLoopConfig(rate_hz=10, refill_threshold=4))
            report = loop.run(ticks=25)
            loop.close()
    finally:
        server.stop()
    assert report.inferences >= 2 and report.invalid_chunks == 0 and report.inference_errors == 0
    assert report.stale_ticks <= 4  # the tiny model answers within a tick or two of 100 ms
    assert all(np.isfinite(a).all() and a.shape == (7,) for a in sink.actions)
