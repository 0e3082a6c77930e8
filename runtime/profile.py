"""``vlart profile``: per-stage latency of a policy under each preset, against a latency budget.

Every step is one ``predict_action`` on the same real camera frame with a fresh ensemble and seed = step index, so
steps do equal work. Warm-up steps are run but not counted. Output: a table per preset (p50/p95/p99/max/mean ms,
budget, violations), the speedup of each preset over the first (mean total), JSON and an optional plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runtime.budgets import BudgetConfig, LatencyBudget, load_budget

REPO = Path(__file__).resolve().parents[1]
SAMPLE_FRAME = REPO / "configs" / "samples" / "bridge_table.png"
STAGE_ORDER = ["preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total"]
PROFILE_INSTRUCTION = "put the carrot on the plate"


def simpler_first_frame() -> Optional[np.ndarray]:
    """The first camera frame of SIMPLER's carrot task (episode 0) when the simulator and its assets are here."""
    import importlib.util
    import os

    if not os.environ.get("MS_ASSET_DIR") or importlib.util.find_spec("mani_skill") is None:
        return None
    from envs.registry import TASKS
    from envs.sim_env import SimTask

    task = SimTask(TASKS["simpler/widowx_carrot_on_plate"])
    try:
        return task.reset(episode_id=0, seed=0).image
    finally:
        task.close()


def profile_frame() -> tuple[np.ndarray, str]:
    """A real camera frame and where it came from: SIMPLER's first frame when available, else the Bridge table photo
    SIMPLER's WidowX tasks are composited on (640x480 RGB)."""
    frame = simpler_first_frame()
    if frame is not None:
        return frame, "SIMPLER PutCarrotOnPlateInScene-v1 episode 0, first frame"
    from PIL import Image

    with Image.open(SAMPLE_FRAME) as image:
        return np.asarray(image.convert("RGB")), f"{SAMPLE_FRAME.name} (set MS_ASSET_DIR for a SIMPLER frame)"


def _ordered(stages: list[str]) -> list[str]:
    known = [s for s in STAGE_ORDER if s in stages]
    steps = sorted((s for s in stages if s.startswith("ddim_step_")), key=lambda s: int(s.rsplit("_", 1)[1]))
    rest = sorted(s for s in stages if s not in known and s not in steps)
    return [*[s for s in known if s != "total"], *steps, *rest, *(["total"] if "total" in known else [])]


def profile_policy(
    model: str,
    presets: list[str],
    steps: int,
    warmup: int,
    budget_path: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    device: Optional[str] = None,
    frame: Optional[np.ndarray] = None,
    plan_path: Optional[str] = None,
) -> dict[str, Any]:
    from policies.interface import Observation
    from runtime.policy_loader import load_policy_with_preset

    if steps < 1 or warmup < 0:
        raise ValueError("--steps must be >= 1 and --warmup >= 0")
    source = "given frame"
    if frame is None:
        frame, source = profile_frame()
    runs = []
    for preset in presets:
        policy = load_policy_with_preset(model, preset, plan_path=plan_path, device=device, overrides=overrides)
        if budget_path:
            budget_config = load_budget(budget_path)
            budget_config.warmup_steps = warmup
        else:
            budget_config = BudgetConfig(name=f"{policy.conventions.control_rate_hz:g} Hz period",
                                         control_rate_hz=policy.conventions.control_rate_hz, warmup_steps=warmup)
        budget = LatencyBudget(budget_config)
        totals = []
        obs = Observation(frame, PROFILE_INSTRUCTION)
        for step in range(warmup + steps):
            policy.reset()
            output = policy.predict_action(obs, seed=step)
            budget.observe(output.timings_ms)
            if step >= warmup:
                totals.append(round(output.timings_ms["total"], 3))
        summary = budget.summary()
        stages = {s: summary["stages"][s] for s in _ordered(list(summary["stages"]))}
        runs.append({"preset": preset, "model": policy.config.name, "frame": source, "device": str(policy.device),
                     "dtype": policy.config.runtime.dtype, "steps": steps, "warmup": warmup,
                     "budget": budget_config.name, "stages": stages, "per_step_total_ms": totals})
        del policy
    first = runs[0]["stages"]["total"]["mean_ms"]
    return {"runs": runs, "speedup_vs_first": {r["preset"]: round(first / r["stages"]["total"]["mean_ms"], 3)
                                                for r in runs}}


def format_table(result: dict[str, Any]) -> str:
    lines = []
    for run in result["runs"]:
        lines.append(f"{run['model']} [{run['preset']}] on {run['device']} ({run['dtype']}): {run['steps']} steps after "
                     f"{run['warmup']} warm-up, budget {run['budget']}; frame: {run['frame']}")
        lines.append(f"  {'stage':<14}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}{'mean':>10}{'budget':>10}"
                     f"{'over':>6}")
        for stage, s in run["stages"].items():
            if "mean_ms" not in s:
                continue
            budget = f"{s['budget_ms']:.1f}" if s["budget_ms"] is not None else "-"
            lines.append(f"  {stage:<14}{s['p50_ms']:>10.2f}{s['p95_ms']:>10.2f}{s['p99_ms']:>10.2f}"
                         f"{s['max_ms']:>10.2f}{s['mean_ms']:>10.2f}{budget:>10}{s['violations']:>6}")
    lines.append("speedup vs " + result["runs"][0]["preset"] + ": "
                 + ", ".join(f"{p} {v:.2f}x" for p, v in result["speedup_vs_first"].items()))
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
    """A stacked bar of mean stage times per preset, and the per-step total of each preset over time."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'vlart[plot]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    stages = [s for s in STAGE_ORDER if s != "total" and any(s in r["stages"] for r in runs)]
    fig, (bars, timeline) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottoms = np.zeros(len(runs))
    for stage in stages:
        values = np.array([r["stages"].get(stage, {}).get("mean_ms", 0.0) for r in runs])
        bars.bar([r["preset"] for r in runs], values, bottom=bottoms, label=stage)
        bottoms += values
    bars.set_ylabel("mean ms per step")
    bars.set_title(f"{runs[0]['model']}: time per stage")
    bars.legend(fontsize=8)
    for run in runs:
        timeline.plot(run["per_step_total_ms"], marker=".", label=run["preset"])
    budget = runs[0]["stages"]["total"]["budget_ms"]
    if budget:
        timeline.axhline(budget, color="red", linestyle="--", label=f"budget {budget:.0f} ms")
    timeline.set_xlabel("step (after warm-up)")
    timeline.set_ylabel("total ms")
    timeline.set_title("per-step total")
    timeline.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(result: dict[str, Any], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
