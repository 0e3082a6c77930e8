import pytest

from runtime.core.budgets import LatencyBudget, load_budget
from runtime.core.yaml_config import ConfigError
from tests.conftest import REPO


def test_shipped_budgets_load():
    widowx = load_budget(REPO / "configs/budgets/widowx-5hz.yaml")
    google = load_budget(REPO / "configs/budgets/google-robot-3hz.yaml")
    assert widowx.stages_ms["total"] == 200.0 and widowx.control_rate_hz == 5.0
    assert google.stages_ms["total"] == 333.0


def test_violations_counted_per_stage_after_warmup(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("name: t\ncontrol_rate_hz: 10\nwarmup_steps: 2\nstages_ms: {llm: 50}\n")
    budget = LatencyBudget(load_budget(path))
    assert budget.config.stages_ms["total"] == 100.0  # one period by default
    # A synthetic slow stage: llm takes 80 ms on every third step.
    results = [budget.observe({"llm": 80.0 if i % 3 == 0 else 20.0, "total": 90.0 + (i == 7) * 20}) for i in range(12)]
    assert results[0] == [] and results[1] == []  # warm-up steps (one of them slow) are not counted
    assert budget.violations == {"llm": 3, "total": 1}
    assert results[7] == ["total"] and results[3] == ["llm"]
    summary = budget.summary()
    assert summary["steps"] == 10 and summary["warmup_steps_excluded"] == 2
    llm = summary["stages"]["llm"]
    assert llm["budget_ms"] == 50.0 and llm["violations"] == 3 and llm["max_ms"] == 80.0
    assert llm["p50_ms"] == 20.0 and llm["mean_ms"] == pytest.approx((3 * 80 + 7 * 20) / 10)


def test_bad_budget_files(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("name: t\ncontrol_rate_hz: 10\nstages_ms: {llm: -5}\n")
    with pytest.raises(ConfigError, match="stages_ms.llm must be > 0"):
        load_budget(path)
    path.write_text("name: t\ncontrol_rate_hz: 10\nstage_ms: {}\n")
    with pytest.raises(ConfigError, match="unknown config key.*stage_ms"):
        load_budget(path)
    path.write_text("name: t\ncontrol_rate_hz: 10\nstages_ms: {llm: fast}\n")
    with pytest.raises(ConfigError, match="stages_ms.llm must be float"):
        load_budget(path)
