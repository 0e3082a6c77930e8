import time

from runtime.timing import StageTimer


def test_cpu_stages_are_measured_and_summed():
    timer = StageTimer()
    with timer.stage("a"):
        time.sleep(0.01)
    with timer.stage("b"):
        pass
    with timer.stage("a"):
        time.sleep(0.01)
    results = timer.results_ms()
    assert set(results) == {"a", "b"}
    assert results["a"] >= 19.0
    assert 0 <= results["b"] < results["a"]


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
    from policies.interface import Observation

    timer = StageTimer()
    with timer.stage("outer"):
        with timer.stage("inner"):
            time.sleep(0.005)
    results = timer.results_ms()
    assert results["outer"] >= results["inner"] >= 4.0

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
