"""Latency budgets: per-stage and whole-step limits, checked on every step.

A budget file (``configs/budgets/*.yaml``) names a control rate and stage limits in milliseconds; ``total`` is the
whole step and defaults to one control period. ``LatencyBudget.observe`` takes one step's stage timings, counts
violations per stage and keeps a rolling window for p50/p95/p99; the first ``warmup_steps`` steps are not counted.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runtime.core.stats import percentile
from runtime.core.yaml_config import ConfigError, from_dict, read_mapping

TOTAL = "total"


@dataclass
class BudgetConfig:
    name: str
    control_rate_hz: float
    stages_ms: dict[str, float] = field(default_factory=dict)
    warmup_steps: int = 3
    window: int = 1000

    def __post_init__(self) -> None:
        if self.control_rate_hz <= 0:
            raise ConfigError("control_rate_hz must be > 0")
        if self.warmup_steps < 0 or self.window < 1:
            raise ConfigError("warmup_steps must be >= 0 and window >= 1")
        for stage, limit in self.stages_ms.items():
            if limit <= 0:
                raise ConfigError(f"stages_ms.{stage} must be > 0 ms, got {limit}")
        self.stages_ms.setdefault(TOTAL, 1000.0 / self.control_rate_hz)


def load_budget(path: str | Path) -> BudgetConfig:
    path = Path(path)
    try:
        return from_dict(BudgetConfig, read_mapping(path, "config file"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def budget_from_file(path: Optional[str | Path]) -> Optional["LatencyBudget"]:
    """The budget a ``--budget`` file describes, ready to observe; None without a file."""
    return LatencyBudget(load_budget(path)) if path else None


class LatencyBudget:
    """Counts budget violations per stage and keeps rolling latency percentiles of every stage seen. Safe to observe
    from one thread while another reads the summary (a server's worker and its socket thread)."""

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.steps_seen = 0
        self.violations = {stage: 0 for stage in config.stages_ms}
        self._history: dict[str, deque[float]] = {}

    @property
    def counted_steps(self) -> int:
        return max(0, self.steps_seen - self.config.warmup_steps)

    def observe(self, timings_ms: dict[str, float]) -> list[str]:
        """One step's stage timings (ms) -> the stages over budget in this step (none during warm-up)."""
        with self._lock:
            self.steps_seen += 1
            if self.steps_seen <= self.config.warmup_steps:
                return []
            for stage, value in timings_ms.items():
                self._history.setdefault(stage, deque(maxlen=self.config.window)).append(float(value))
            over = [s for s, limit in self.config.stages_ms.items() if s in timings_ms and timings_ms[s] > limit]
            for stage in over:
                self.violations[stage] += 1
            return over

    def _stage_summary(self, stage: str) -> dict[str, Any]:
        values = np.asarray(self._history.get(stage, ()), dtype=np.float64)
        summary: dict[str, Any] = {
            "budget_ms": self.config.stages_ms.get(stage),
            "violations": self.violations.get(stage, 0),
        }
        if values.size:
            p50, p95, p99 = (round(percentile(values, q), 3) for q in (50, 95, 99))
            summary.update(p50_ms=p50, p95_ms=p95, p99_ms=p99,
                           max_ms=round(float(values.max()), 3), mean_ms=round(float(values.mean()), 3))
        return summary

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        stages = list(dict.fromkeys([*self._history, *self.config.stages_ms]))
        return {
            "budget": self.config.name,
            "control_rate_hz": self.config.control_rate_hz,
            "steps": self.counted_steps,
            "warmup_steps_excluded": min(self.steps_seen, self.config.warmup_steps),
            "stages": {stage: self._stage_summary(stage) for stage in stages},
        }
