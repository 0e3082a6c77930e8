"""Episode records, per-task aggregates with 95% Wilson intervals, results.json and the summary table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runtime.core.stats import percentiles

SUCCESS_RULES = {
    "success_final": "SIMPLER's official rule: the task is solved at the episode's last step",
    "success_any": "the task is solved at any step of the episode",
}


@dataclass
class EpisodeRecord:
    task: str
    episode_id: int
    seed: int
    instruction: str = ""
    success_final: bool = False
    success_any: bool = False
    # SIMPLER's partial success, as each simulator counts it: the source object grasped at any step (the original
    # SimplerEnv), held for 5+ consecutive steps (ManiSkill3's twins); None: the task has no such measure
    grasped: Optional[bool] = None
    steps: int = 0
    max_steps: int = 0  # the horizon the episode ran to (SIMPLER counts success at its last step)
    simulator: str = ""  # TaskSpec.simulator: the original SimplerEnv or ManiSkill3's twin
    grid: str = "official"  # the official episode grid, or held-out placements
    wall_time_s: float = 0.0
    failure: Optional[str] = None  # why the episode could not run to its end (crash, timeout); None if it did
    policy_latency_ms: dict[str, float] = field(default_factory=dict)
    env_step_ms: dict[str, float] = field(default_factory=dict)
    budget_violation_steps: int = 0
    video: Optional[str] = None
    video_error: Optional[str] = None  # why the video could not be written (the episode's outcome stands)
    trace: Optional[str] = None  # .npz of the executed actions (T, A), one row per step
    control: Optional[dict[str, Any]] = None  # the control loop's report (--timing delay / wallclock)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {**percentiles(array, (50, 95), 3), "max": round(float(array.max()), 3),
            "mean": round(float(array.mean()), 3)}


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials)
    return {"successes": successes, "rate": round(successes / trials, 4), "ci95": [round(low, 4), round(high, 4)]}


def aggregate(records: list[EpisodeRecord]) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(r.task for r in records):
        rows = [r for r in records if r.task == task]
        horizons = sorted({r.max_steps for r in rows})
        entry: dict[str, Any] = {"episodes": len(rows), "failed_runs": sum(r.failure is not None for r in rows),
                                 "simulator": rows[0].simulator, "grid": rows[0].grid,
                                 "max_steps": horizons[0] if len(horizons) == 1 else horizons}
        for rule in SUCCESS_RULES:
            entry[rule] = _rate(sum(getattr(r, rule) for r in rows), len(rows))
        if any(r.grasped is not None for r in rows):
            entry["grasped"] = _rate(sum(bool(r.grasped) for r in rows), len(rows))
        entry["mean_wall_time_s"] = round(float(np.mean([r.wall_time_s for r in rows])), 3)
        tasks[task] = entry
    return tasks


def write_results(path: Path, header: dict[str, Any], records: list[EpisodeRecord]) -> dict[str, Any]:
    ordered = sorted(records, key=lambda r: (r.task, r.episode_id))
    result = {**header, "success_rules": SUCCESS_RULES, "tasks": aggregate(ordered),
              "episodes": [r.to_dict() for r in ordered]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def _rate_cell(rate: Optional[dict[str, Any]]) -> str:
    if rate is None:
        return "-"
    return f"{100 * rate['rate']:5.1f}% [{100 * rate['ci95'][0]:4.1f}, {100 * rate['ci95'][1]:5.1f}]"


def summary_table(result: dict[str, Any]) -> str:
    lines = [f"{'task':<42}{'episodes':>9}{'steps':>6}{'success (final)':>24}{'success (any step)':>24}"
             f"{'grasped':>24}{'failed runs':>13}"]
    for task, entry in result["tasks"].items():
        cells = [_rate_cell(entry.get(rule)) for rule in (*SUCCESS_RULES, "grasped")]
        lines.append(f"{task:<42}{entry['episodes']:>9}{str(entry.get('max_steps', '')):>6}{cells[0]:>24}"
                     f"{cells[1]:>24}{cells[2]:>24}{entry['failed_runs']:>13}")
    lines.append("success (final) is SIMPLER's official rule (after the last of 'steps' steps); grasped is its partial "
                 "success; brackets hold the 95% Wilson interval")
    lines.append("simplerenv/ tasks run in the original SimplerEnv (comparable with published SIMPLER numbers); "
                 "ms3_twin/ tasks in ManiSkill3's twins (not comparable)")
    return "\n".join(lines)
