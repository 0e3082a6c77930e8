"""The control loop on a virtual clock: a prediction's result is released when the virtual clock reaches its
submission time plus its latency, so ticks, stale counts and delays are exact whatever the machine's load."""

from typing import Callable, Optional

import numpy as np
import pytest

from policies.api.ensemble import adaptive_blend
from policies.api.interface import Observation
from runtime.robot.control_loop import ChunkRequest, ControlLoop, ControlLoopConfig
from runtime.core.virtual_time import VirtualTime


def run_virtual(predictor, config: ControlLoopConfig, ticks: int, latency: Callable[[int], float]):
    time_ = VirtualTime(latency)
    sink = Recorder()
    loop = ControlLoop(StaticCamera(), sink, predictor, config, clock=time_.clock, sleep=time_.sleep, executor=time_)
    report = loop.run(ticks=ticks)
    loop.close()
    assert report.ticks == ticks and len(sink.actions) == ticks
    return report, sink.actions


class StaticCamera:
    def observe(self):
        return Observation(np.zeros((8, 8, 3), np.uint8), "pick coke can")


class Recorder:
    def __init__(self):
        self.actions = []

    def act(self, action):
        self.actions.append(np.array(action))


class TracedPolicy:
    """Row k of the n-th chunk moves dx = 0.01 with dy = n and dz = k, so every executed row can be traced."""

    def __init__(self, chunk=16, gripper=0.0):
        self.chunk = chunk
        self.gripper = gripper
        self.calls = 0
        self.requests: list[ChunkRequest] = []

    def __call__(self, request):
        self.requests.append(request)
        self.calls += 1
        chunk = np.zeros((self.chunk, 7), np.float32)
        chunk[:, 0] = 0.01
        chunk[:, 1] = self.calls
        chunk[:, 2] = np.arange(self.chunk)
        chunk[:, 6] = self.gripper
        return chunk


def traced(actions) -> list[Optional[tuple[int, int]]]:
    """(chunk number, row) executed at each tick; None for the hold action."""
    return [(int(a[1]), int(a[2])) if a[0] != 0 else None for a in actions]


def test_overlaps_inference_with_execution():
    # 120 ms at 20 Hz: a chunk asked for at tick s is ready at tick s + 3; the refill starts below 6 queued rows.
    config = ControlLoopConfig(rate_hz=20, refill_threshold=6, execution="hold")
    report, actions = run_virtual(TracedPolicy(), config, ticks=80, latency=lambda call: 0.12)
    # Chunks are asked for at ticks 0, 11, 22, ... and arrive at 3, 14, 25, ...; the arriving chunk's rows 0-2 are
    # for ticks already past, so it starts at row 3 and the robot never waits again.
    expected = [None] * 3 + [(1 + (t - 3) // 11, 3 + (t - 3) % 11) for t in range(3, 80)]
    assert traced(actions) == expected
    assert report.stale_ticks == 3 and report.stale_ratio == round(3 / 80, 4)
    assert report.inferences == 7 and report.watchdog_ticks == 0 and report.overruns == 0
    assert report.inference_delay_ticks_p50 == 3 and report.inference_delay_ticks_max == 3
    assert report.inference_latency_p50_ms == pytest.approx(120.0)
    assert report.effective_rate_hz == pytest.approx(20.0) and report.jitter_p99_ms == pytest.approx(0.0)
    assert report.duration_s == pytest.approx(79 / 20)


def test_hold_action_when_the_queue_runs_dry():
    config = ControlLoopConfig(rate_hz=20, refill_threshold=2, initial_gripper=1.0)
    report, actions = run_virtual(TracedPolicy(chunk=2), config, ticks=40, latency=lambda call: 0.12)
    # Each 2-row chunk arrives 3 ticks after its observation: both rows are already stale, nothing is executable.
    assert report.stale_ticks == 40 and report.stale_ratio == 1.0 and report.inferences == 13
    for action in actions:
        assert np.all(action[:6] == 0) and action[6] == 1.0  # zero motion, gripper unchanged (still open)


def test_hold_keeps_the_last_gripper_command():
    # 30 ms at 20 Hz: ready one tick later. A new chunk is asked for only when the plan is empty.
    config = ControlLoopConfig(rate_hz=20, refill_threshold=0, initial_gripper=1.0)
    report, actions = run_virtual(TracedPolicy(chunk=4, gripper=0.0), config, ticks=12, latency=lambda call: 0.03)
    assert traced(actions) == [None, (1, 1), (1, 2), (1, 3), None, (2, 1), (2, 2), (2, 3), None, (3, 1), (3, 2),
                               (3, 3)]
    assert [a[6] for a in actions] == [1.0] + [0.0] * 11  # the holds keep the gripper closed once it was closed
    assert report.stale_ticks == 3


def test_nan_chunks_are_never_emitted():
    policy = TracedPolicy()

    def flaky(request):
        chunk = policy(request)
        if policy.calls % 2 == 0:
            chunk[3, 2] = np.nan
        if policy.calls % 3 == 0:
            chunk[0, 0] = np.inf
        return chunk

    # 5 ms at 50 Hz: ready at the next tick; the refill starts below 14 queued rows, i.e. every 2 ticks.
    config = ControlLoopConfig(rate_hz=50, refill_threshold=14, execution="hold")
    report, actions = run_virtual(flaky, config, ticks=30, latency=lambda call: 0.005)
    # Chunks neither even nor a multiple of 3 are valid; an invalid one is replaced at the next tick.
    executed = {chunk for chunk, _ in filter(None, traced(actions))}
    assert executed == {1, 5, 7, 11, 13, 17}
    assert report.inferences == 17 and report.invalid_chunks == 11
    assert all(np.isfinite(a).all() for a in actions)


def test_wrong_shape_and_exceptions_are_counted_not_emitted():
    calls = {"n": 0}

    def broken(request):
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("camera unplugged")
        return np.zeros((16, 5), np.float32)

    # Every chunk is collected the tick after it was asked for and a new one is asked for at once: calls 1-19.
    report, actions = run_virtual(broken, ControlLoopConfig(rate_hz=50), ticks=20, latency=lambda call: 0.005)
    assert report.inference_errors == 10 and report.invalid_chunks == 9 and report.inferences == 9
    assert report.last_error == "RuntimeError: camera unplugged"
    assert report.stale_ticks == 20


def test_watchdog_stops_motion_when_chunks_stop_arriving():
    # The first chunk comes after 30 ms; then the server hangs.
    config = ControlLoopConfig(rate_hz=20, refill_threshold=16, watchdog_s=0.32)
    report, actions = run_virtual(TracedPolicy(), config, ticks=20,
                                  latency=lambda call: 0.03 if call == 1 else float("inf"))
    # The chunk arrives at tick 1 (t = 0.05 s); at tick 8 (t = 0.40 s) it is older than 0.32 s, though it planned
    # rows up to tick 15: motion stops.
    assert traced(actions) == [None] + [(1, k) for k in range(1, 8)] + [None] * 12
    assert report.watchdog_ticks == 12 and report.stale_ticks == 13


def test_ensemble_merge_blends_overlapping_plans():
    config = ControlLoopConfig(rate_hz=20, refill_threshold=14, execution="ensemble", ensemble_alpha=0.1)
    _, actions = run_virtual(TracedPolicy(), config, ticks=6, latency=lambda call: 0.03)
    # Chunk 1 (asked at tick 0) plans ticks 1-15, chunk 2 (asked at tick 3) ticks 4-18: tick 4 blends chunk 1's
    # row 4 with chunk 2's row 1, the newer one the reference.
    first, second = TracedPolicy()(None), TracedPolicy()(None)
    second[:, 1] = 2
    np.testing.assert_array_equal(actions[4], adaptive_blend([first[4], second[1]], 0.1).astype(np.float32))
    assert 1 < actions[4][1] < 2 and traced(actions[:4]) == [None, (1, 1), (1, 2), (1, 3)]


def test_config_validation():
    with pytest.raises(ValueError, match="execution: expected one of hold, ensemble, blend, rtc"):
        ControlLoopConfig(rate_hz=5, execution="average")
    with pytest.raises(ValueError, match="blend_old_weight"):
        ControlLoopConfig(rate_hz=5, blend_old_weight=1.5)
    with pytest.raises(ValueError, match="rate_hz"):
        ControlLoopConfig(rate_hz=0)


def test_real_time_smoke_through_the_thin_client(server):
    """The only test on the real clock, with a real inference thread and ZeroMQ; margins are 10x."""
    from bridge.client import PolicyClient, RemotePolicy
    from runtime.robot.control_loop import policy_predictor

    with PolicyClient(server.endpoint, timeout_s=10) as client:
        sink = Recorder()
        loop = ControlLoop(StaticCamera(), sink, policy_predictor(RemotePolicy(client)),
                           ControlLoopConfig(rate_hz=10, refill_threshold=4, watchdog_s=20))
        report = loop.run(ticks=25)
        loop.close()
    # 25 ticks at 10 Hz take 2.4 s at least; the tiny model answers in well under 0.24 s, a tenth of the run.
    assert report.ticks == 25 and 2.4 <= report.duration_s < 24
    assert report.inferences >= 1 and report.invalid_chunks == 0 and report.inference_errors == 0
    assert any(a[:6].any() for a in sink.actions), "a chunk was executed"
    assert all(np.isfinite(a).all() and a.shape == (7,) for a in sink.actions)


def test_zero_latency_is_lockstep_one_fresh_chunk_per_tick():
    # An inference ready within its own tick is used at once: every tick executes row 0 of a chunk of its own
    # observation, as SIMPLER's lockstep protocol does.
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="hold")
    policy = TracedPolicy()
    report, actions = run_virtual(policy, config, ticks=6, latency=lambda call: 0.0)
    assert traced(actions) == [(n, 0) for n in range(1, 7)]
    assert [r.tick for r in policy.requests] == list(range(6))
    assert report.stale_ticks == 0 and report.inference_delay_ticks_max == 0


def test_latency_of_whole_periods_lands_exactly_on_the_tick():
    # 0.4 s at 5 Hz is exactly 2 ticks (no float rounding makes it 3): the chunk asked for at tick s runs from
    # row 2 at tick s + 2; with continuous refills a new chunk replaces the plan every 2 ticks.
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="hold")
    report, actions = run_virtual(TracedPolicy(), config, ticks=9, latency=lambda call: 0.4)
    assert traced(actions) == [None, None, (1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3), (4, 2)]
    assert report.inference_delay_ticks_p50 == 2 and report.inference_delay_ticks_max == 2


def test_blend_weights_old_and_new_plans_as_lerobot():
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="blend", blend_old_weight=0.3)
    _, actions = run_virtual(TracedPolicy(), config, ticks=4, latency=lambda call: 0.2)
    # Chunk 1 (asked at tick 0) arrives at tick 1; chunk 2 (asked at tick 1) arrives at tick 2 and overlaps chunk 1
    # from tick 2 on: 0.3 * chunk 1 + 0.7 * chunk 2 there. Chunk 3 arrives at tick 3 onto that blend.
    first = TracedPolicy()(None)
    second = first.copy()
    second[:, 1] = 2
    third = first.copy()
    third[:, 1] = 3
    np.testing.assert_allclose(actions[1], first[1])
    np.testing.assert_allclose(actions[2], 0.3 * first[2] + 0.7 * second[1], rtol=1e-6)
    np.testing.assert_allclose(actions[3], 0.3 * (0.3 * first[3] + 0.7 * second[2]) + 0.7 * third[1], rtol=1e-6)


def test_rtc_sends_the_plan_with_its_delay_and_the_new_chunk_replaces_it():
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="rtc", rtc_delay_ticks=2, rtc_soft_rows=None)
    policy = TracedPolicy()
    report, actions = run_virtual(policy, config, ticks=7, latency=lambda call: 0.4)
    first, second = policy.requests[0], policy.requests[1]
    assert first.continuation is None  # nothing planned yet: an ordinary sample
    # Chunk 1 (asked at tick 0) arrives at tick 2, whose row 2 runs there; chunk 2 is asked for at tick 2 with the
    # plan from tick 2 on (chunk 1's rows 2..15) and d = 2 measured.
    assert second.tick == 2 and second.continuation.delay_ticks == 2
    np.testing.assert_array_equal(second.continuation.prefix, policy_rows(1, range(2, 16)))
    assert traced(actions) == [None, None, (1, 2), (1, 3), (2, 2), (2, 3), (3, 2)]


def test_rtc_pads_the_frozen_rows_with_holds_where_the_plan_runs_out():
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="rtc", initial_gripper=1.0)
    policy = TracedPolicy(chunk=3, gripper=0.0)
    run_virtual(policy, config, ticks=5, latency=lambda call: 0.4)
    # Chunk 1 (3 rows) arrives at tick 2 and plans only tick 2; chunk 2's delay is 2: one planned row, one hold.
    prefix = policy.requests[1].continuation.prefix
    assert policy.requests[1].continuation.delay_ticks == 2 and prefix.shape == (2, 7)
    np.testing.assert_array_equal(prefix[0], policy_rows(1, [2], chunk=3)[0])
    np.testing.assert_array_equal(prefix[1], np.array([0, 0, 0, 0, 0, 0, 0.0], np.float32))  # gripper closed by row 2


def policy_rows(number: int, rows, chunk: int = 16) -> np.ndarray:
    chunk_array = TracedPolicy(chunk=chunk)(None)
    chunk_array[:, 1] = number
    return chunk_array[list(rows)]


def test_stop_ends_the_loop_after_the_current_tick():
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16)
    time_ = VirtualTime(0.0)
    sink = Recorder()
    loop = None

    class StopAfterThree(Recorder):
        def act(self, action):
            super().act(action)
            if len(self.actions) == 3:
                loop.stop()

    sink = StopAfterThree()
    loop = ControlLoop(StaticCamera(), sink, TracedPolicy(), config, clock=time_.clock, sleep=time_.sleep,
                       executor=time_)
    assert loop.run(ticks=10).ticks == 3 and len(sink.actions) == 3


def test_hold_on_inference_error_drops_the_plan_at_once():
    policy = TracedPolicy()

    def dies_after_first(request):
        if policy.calls >= 1:
            raise ConnectionError("server gone")
        return policy(request)

    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="hold", hold_on_inference_error=True)
    report, actions = run_virtual(dies_after_first, config, ticks=5, latency=lambda call: 0.2)
    # Chunk 1 arrives at tick 1 and runs there; the next request fails at tick 2: hold from tick 2 on.
    assert traced(actions) == [None, (1, 1), None, None, None]
    assert report.inference_errors >= 1 and report.last_error == "ConnectionError: server gone"


def test_ensemble_blends_only_predictions_younger_than_its_horizon_in_ticks():
    # d = 2: a chunk lands every 2 ticks; chunk n is asked for at tick 2(n - 1). Tick 16 has predictions from
    # chunks asked at ticks 2..14, but only those made less than 7 ticks before it (ticks 10, 12, 14: chunks 6-8,
    # rows 6, 4, 2) are blended, as CogACT blends the last 7 steps' predictions.
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="ensemble", ensemble_horizon=7)
    _, actions = run_virtual(TracedPolicy(), config, ticks=17, latency=lambda call: 0.4)
    expected = adaptive_blend([policy_rows(6, [6])[0], policy_rows(7, [4])[0], policy_rows(8, [2])[0]], 0.1)
    np.testing.assert_array_equal(actions[16], expected.astype(np.float32))


def test_rtc_soft_rows_caps_the_overlap_sent_after_the_frozen_rows():
    for soft_rows, length in ((0, 2), (3, 5), (None, 14)):
        config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="rtc", rtc_soft_rows=soft_rows)
        policy = TracedPolicy()
        run_virtual(policy, config, ticks=5, latency=lambda call: 0.4)  # request 2 (tick 2) runs at tick 4
        continuation = policy.requests[1].continuation
        assert continuation.delay_ticks == 2 and continuation.prefix.shape == (length, 7)
        np.testing.assert_array_equal(continuation.prefix, policy_rows(1, range(2, 2 + length)))
    # In lockstep with a hard mask nothing is frozen and nothing is sent: a plain sample every tick.
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution="rtc", rtc_soft_rows=0)
    policy = TracedPolicy()
    run_virtual(policy, config, ticks=3, latency=lambda call: 0.0)
    assert [r.continuation for r in policy.requests] == [None, None, None]


class TickTargetPolicy:
    """Every row holds the tick it plans for (dx = 0.01, dy = request tick + row), so any prediction for a tick, and
    any blend of them, equals that tick: an execution that ran row 0 (or any row but d) of a chunk that arrived d
    ticks late would show dy = tick - d."""

    def __init__(self, chunk: int = 16) -> None:
        self.chunk = chunk
        self.ticks: list[int] = []

    def __call__(self, request):
        self.ticks.append(request.tick)
        chunk = np.zeros((self.chunk, 7), np.float32)
        chunk[:, 0] = 0.01
        chunk[:, 1] = request.tick + np.arange(self.chunk)
        return chunk


@pytest.mark.parametrize("execution", ["hold", "ensemble", "blend", "rtc"])
@pytest.mark.parametrize("delay", [0, 1, 2, 3, 4])
def test_at_delay_d_every_execution_runs_row_d_of_the_new_chunk(execution, delay):
    # At 5 Hz a latency of d x 0.2 s delivers the chunk asked for at tick t at tick t + d, where its row d runs:
    # the robot never replays the rows that were meant for the ticks spent inferring.
    config = ControlLoopConfig(rate_hz=5, refill_threshold=16, execution=execution, rtc_delay_ticks=delay)
    policy = TickTargetPolicy()
    report, actions = run_virtual(policy, config, ticks=24, latency=lambda call: 0.2 * delay)
    assert [a[0] == 0 for a in actions[:delay]] == [True] * delay  # nothing has arrived yet: hold
    assert [float(a[1]) for a in actions[delay:]] == [float(tick) for tick in range(delay, 24)]
    assert report.inference_delay_ticks_max == delay and report.stale_ticks == delay
    if delay:
        assert policy.ticks[:3] == [0, delay, 2 * delay]  # a new request as soon as the previous one delivered


@pytest.mark.parametrize("every", [1, 2, 4, 8, 16])
def test_replanning_every_s_ticks_runs_s_rows_of_each_chunk_blind(every):
    from envs.timed_episode import refill_threshold

    config = ControlLoopConfig(rate_hz=5, refill_threshold=refill_threshold(16, every), execution="hold",
                               watchdog_s=float("inf"))  # as `vlart eval --timing delay` runs it
    policy = TracedPolicy()
    _, actions = run_virtual(policy, config, ticks=32, latency=lambda call: 0.0)
    assert [r.tick for r in policy.requests] == list(range(0, 32, every))
    assert traced(actions) == [(tick // every + 1, tick % every) for tick in range(32)]
