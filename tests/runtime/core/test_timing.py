import time

import pytest

from runtime.core.timing import StageTimer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_cpu_stages_are_measured_and_summed():
    clock = FakeClock()
    timer = StageTimer(clock=clock)
    with timer.stage("a"):
        clock.advance(0.010)
    with timer.stage("b"):
        pass
    with timer.stage("a"):
        clock.advance(0.0125)
    assert timer.results_ms() == {"a": pytest.approx(22.5), "b": 0.0}


def test_the_default_clock_is_the_monotonic_one():
    timer = StageTimer()
    with timer.stage("a"):
        time.sleep(0.01)
    assert timer.results_ms()["a"] >= 10.0  # a sleep lasts at least its length, however loaded the machine


def test_disabled_timer_records_nothing():
    timer = StageTimer(enabled=False)
    with timer.stage("a"):
        pass
    assert timer.results_ms() == {}


def test_stage_is_recorded_when_the_body_raises():
    timer = StageTimer()
    try:
        with timer.stage("failing"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "failing" in timer.results_ms()


def test_nested_stages_and_ddim_step_detail(tiny_policy, frame):
    from policies.api.interface import Observation

    clock = FakeClock()
    timer = StageTimer(clock=clock)
    with timer.stage("outer"):
        clock.advance(0.001)
        with timer.stage("inner"):
            clock.advance(0.005)
    assert timer.results_ms() == {"outer": pytest.approx(6.0), "inner": pytest.approx(5.0)}

    tiny_policy.config.runtime.timing = "steps"
    try:
        out = tiny_policy.predict_action(Observation(frame, "pick coke can"), seed=0)
    finally:
        tiny_policy.config.runtime.timing = "stages"
    steps = [out.timings_ms[f"ddim_step_{k}"] for k in range(10)]
    assert sum(steps) <= out.timings_ms["action_head"]
    tiny_policy.config.runtime.timing = "off"
    try:
        assert tiny_policy.predict_action(Observation(frame, "pick coke can"), seed=0).timings_ms == {}
    finally:
        tiny_policy.config.runtime.timing = "stages"
