"""``vlart profile``: per-stage latency of a policy under each preset, against a latency budget.

Every preset's policy is built first and the presets then take turns, round robin: each round runs one
``predict_action`` of every preset on the same real camera frame with the same seed (the round's index) and a fresh
ensemble, so a change of the machine's load during the run hits every preset alike instead of turning into a
"speedup". Warm-up rounds run the same way and are not counted. All presets' models are held in memory at once: for
a model that fits only once (CogACT-Base on a small GPU), profile one preset per run.

Output: a table per preset (p50/p95/p99/max/mean ms, budget, violations); the speedup of each preset over the first
from the p50 of the whole predict (``speedup_vs_first``) and from its mean (``speedup_vs_first_mean``); JSON and an
optional plot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np

from policies.api.interface import Observation, Policy, PolicyOutput
from runtime.core.budgets import BudgetConfig, LatencyBudget, load_budget

STAGE_ORDER = ["preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total"]
PROFILE_INSTRUCTION = "put the carrot on the plate"


def round_robin(policies: Mapping[str, Policy],
                rounds: Iterable[tuple[Observation, int]]) -> Iterator[tuple[int, str, PolicyOutput]]:
    """Per round (an observation and a seed), one step of every policy in turn, each with a fresh ensemble; yields
    (round index, policy name, output). Taking turns keeps the machine's drift out of the comparison."""
    for index, (obs, seed) in enumerate(rounds):
        for name, policy in policies.items():
            policy.reset()
            yield index, name, policy.predict_action(obs, seed=seed)


def _ordered(stages: list[str]) -> list[str]:
    known = [s for s in STAGE_ORDER if s in stages]
    steps = sorted((s for s in stages if s.startswith("ddim_step_")), key=lambda s: int(s.rsplit("_", 1)[1]))
    rest = sorted(s for s in stages if s not in known and s not in steps)
    return [*[s for s in known if s != "total"], *steps, *rest, *(["total"] if "total" in known else [])]


def _budget(budget_path: Optional[str], control_rate_hz: float, warmup: int) -> LatencyBudget:
    if budget_path:
        config = load_budget(budget_path)
        config.warmup_steps = warmup
    else:
        config = BudgetConfig(name=f"{control_rate_hz:g} Hz period", control_rate_hz=control_rate_hz,
                              warmup_steps=warmup)
    return LatencyBudget(config)


def _speedups(runs: list[dict[str, Any]], statistic: str) -> dict[str, float]:
    """The first run's whole-predict ``statistic`` over each run's."""
    first = runs[0]["stages"]["total"][statistic]
    return {run["preset"]: round(first / run["stages"]["total"][statistic], 3) for run in runs}


def profile_policy(
    model: str,
    presets: list[str],
    steps: int,
    warmup: int,
    budget_path: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    device: Optional[str] = None,
    plan_path: Optional[str] = None,
) -> dict[str, Any]:
    from envs.sample_frames import real_frame
    from runtime.app.policy_loader import load_policy_with_preset

    if steps < 1 or warmup < 0:
        raise ValueError("--steps must be >= 1 and --warmup >= 0")
    repeated = sorted({p for p in presets if presets.count(p) > 1})
    if repeated:
        raise ValueError(f"--preset: each preset once; given more than once: {', '.join(repeated)}")
    frame, source = real_frame()
    policies = {preset: load_policy_with_preset(model, preset, plan_path=plan_path, device=device,
                                                overrides=overrides) for preset in presets}
    budgets = {preset: _budget(budget_path, policy.conventions.control_rate_hz, warmup)
               for preset, policy in policies.items()}
    totals: dict[str, list[float]] = {preset: [] for preset in presets}
    obs = Observation(frame, PROFILE_INSTRUCTION)
    for round_index, preset, output in round_robin(policies, ((obs, seed) for seed in range(warmup + steps))):
        budgets[preset].observe(output.timings_ms)
        if round_index >= warmup:
            totals[preset].append(round(output.timings_ms["total"], 3))
    runs = []
    for preset, policy in policies.items():
        summary = budgets[preset].summary()
        stages = {s: summary["stages"][s] for s in _ordered(list(summary["stages"]))}
        runs.append({"preset": preset, "model": policy.config.name, "frame": source, "device": str(policy.device),
                     "dtype": policy.config.runtime.dtype, "steps": steps, "warmup": warmup,
                     "budget": budgets[preset].config.name, "stages": stages, "per_step_total_ms": totals[preset]})
    return {"runs": runs, "speedup_vs_first": _speedups(runs, "p50_ms"),
            "speedup_vs_first_mean": _speedups(runs, "mean_ms")}


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
    first = result["runs"][0]["preset"]
    if len(result["runs"]) > 1:
        lines.append("presets interleaved round robin: one step of each per round, same frame and seed")
    for key, statistic in (("speedup_vs_first", "p50"), ("speedup_vs_first_mean", "mean")):
        lines.append(f"speedup vs {first} ({statistic} of total): "
                     + ", ".join(f"{p} {v:.2f}x" for p, v in result[key].items()))
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
