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
