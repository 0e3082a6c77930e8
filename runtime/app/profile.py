"""``vlart profile``: per-stage latency of a policy under each preset, eager or compiled, against a latency budget,
and how far each stage is from the machine's limit.

Every variant's policy (a preset, eager or compiled: ``--compile both`` gives both of every preset) is built first
and the variants then take turns, round robin: each round runs one ``predict_action`` of every variant on the same
real camera frame with the same seed (the round's index) and a fresh ensemble, so a change of the machine's load
during the run hits every variant alike instead of turning into a "speedup". Warm-up rounds run the same way and are
not counted. All models are held in memory at once: for a model that fits only once (CogACT-Base on a small GPU),
profile one variant per run.

The roofline: the machine's matrix-multiply peak is measured before and after the rounds (``policies.roofline``), and
each stage's executed FLOPs (``policies.flops``) over its p50 give its achieved GFLOP/s and fraction of that peak.

Output: a table per variant (p50/p95/p99/max/mean ms, budget, violations, GFLOP, GFLOP/s, % of peak); the speedup of
each variant over the first from the p50 of the whole predict (``speedup_vs_first``) and from its mean
(``speedup_vs_first_mean``); JSON and an optional plot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from policies.api.interface import Observation, Policy, PolicyOutput
from runtime.core.budgets import BudgetConfig, LatencyBudget, load_budget

STAGE_ORDER = ["preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total"]
PROFILE_INSTRUCTION = "put the carrot on the plate"
COMPILE_MODES = {"off": (False,), "on": (True,), "both": (False, True)}


@dataclass(frozen=True)
class Variant:
    """One profiled policy: a preset, eager or compiled. ``label`` names it in tables, JSON and --latency-from."""

    preset: str
    compiled: bool

    @property
    def label(self) -> str:
        return f"{self.preset}+compiled" if self.compiled else self.preset

    def overrides(self, overrides: list[str]) -> list[str]:
        return [*overrides, f"runtime.compile={str(self.compiled).lower()}"]


def variants(presets: list[str], compile_mode: str) -> list[Variant]:
    """Every preset in every compile mode of ``compile_mode`` (off, on, both), eager first."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"--compile: expected one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    return [Variant(preset, compiled) for preset in presets for compiled in COMPILE_MODES[compile_mode]]


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
    return {run["label"]: round(first / run["stages"]["total"][statistic], 3) for run in runs}


def _roofline(policy: Any, stages: dict[str, Any], peak_gflops: float) -> dict[str, Any]:
    from policies.flops import StepShape, count_flops
    from policies.roofline import stage_rates

    text_tokens = int(policy.language_model.tokenize([PROFILE_INSTRUCTION]).lengths[0])
    gflop = count_flops(policy, StepShape(text_tokens=text_tokens))["executed_gflops_by_stage"]
    return stage_rates(gflop, {stage: s["p50_ms"] for stage, s in stages.items() if "p50_ms" in s}, peak_gflops)


def profile_policy(
    model: str,
    presets: list[str],
    steps: int,
    warmup: int,
    budget_path: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    device: Optional[str] = None,
    plan_path: Optional[str] = None,
    compile_mode: str = "off",
) -> dict[str, Any]:
    from envs.sample_frames import real_frame
    from policies.roofline import matmul_peak_gflops
    from runtime.app.policy_loader import load_policy_with_preset

    if steps < 1 or warmup < 0:
        raise ValueError("--steps must be >= 1 and --warmup >= 0")
    repeated = sorted({p for p in presets if presets.count(p) > 1})
    if repeated:
        raise ValueError(f"--preset: each preset once; given more than once: {', '.join(repeated)}")
    frame, source = real_frame()
    profiled = {variant.label: variant for variant in variants(presets, compile_mode)}
    policies = {label: load_policy_with_preset(model, variant.preset, plan_path=plan_path, device=device,
                                               overrides=variant.overrides(list(overrides or [])))
                for label, variant in profiled.items()}
    budgets = {label: _budget(budget_path, policy.conventions.control_rate_hz, warmup)
               for label, policy in policies.items()}
    first = next(iter(policies.values()))
    peak = {"before": matmul_peak_gflops(first.device, first.action_head.positional_embedding.dtype)}
    totals: dict[str, list[float]] = {label: [] for label in policies}
    obs = Observation(frame, PROFILE_INSTRUCTION)
    for round_index, label, output in round_robin(policies, ((obs, seed) for seed in range(warmup + steps))):
        budgets[label].observe(output.timings_ms)
        if round_index >= warmup:
            totals[label].append(round(output.timings_ms["total"], 3))
    peak["after"] = matmul_peak_gflops(first.device, first.action_head.positional_embedding.dtype)
    peak_gflops = max(peak.values())
    runs = []
    for label, policy in policies.items():
        summary = budgets[label].summary()
        stages = {s: summary["stages"][s] for s in _ordered(list(summary["stages"]))}
        compilation = policy.compilation.to_dict() if policy.compilation is not None else None
        runs.append({"label": label, "preset": profiled[label].preset, "compiled": bool(policy.compilation
                     and policy.compilation.compiled), "compilation": compilation, "model": policy.config.name,
                     "frame": source, "device": str(policy.device), "dtype": policy.config.runtime.dtype,
                     "steps": steps, "warmup": warmup, "budget": budgets[label].config.name, "stages": stages,
                     "roofline": _roofline(policy, stages, peak_gflops), "per_step_total_ms": totals[label]})
    return {"runs": runs, "matmul_peak_gflops": {**{k: round(v, 2) for k, v in peak.items()},
                                                 "peak": round(peak_gflops, 2)},
            "speedup_vs_first": _speedups(runs, "p50_ms"), "speedup_vs_first_mean": _speedups(runs, "mean_ms")}


def format_table(result: dict[str, Any]) -> str:
    lines = []
    peak = result["matmul_peak_gflops"]
    for run in result["runs"]:
        lines.append(f"{run['model']} [{run['label']}] on {run['device']} ({run['dtype']}): {run['steps']} steps after "
                     f"{run['warmup']} warm-up, budget {run['budget']}; frame: {run['frame']}")
        if run["compilation"] is not None and run["compilation"]["fallback"]:
            lines.append(f"  not compiled, ran eagerly: {run['compilation']['fallback']}")
        lines.append(f"  {'stage':<14}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'mean':>9}{'budget':>8}{'over':>5}"
                     f"{'GFLOP':>8}{'GFLOP/s':>9}{'%peak':>7}")
        for stage, s in run["stages"].items():
            if "mean_ms" not in s:
                continue
            budget = f"{s['budget_ms']:.1f}" if s["budget_ms"] is not None else "-"
            rate = run["roofline"].get(stage)
            roof = (f"{rate['gflop']:>8.3f}{rate['gflops_per_s']:>9.1f}{100 * rate['fraction_of_peak']:>6.1f}%"
                    if rate else "")
            lines.append(f"  {stage:<14}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                         f"{s['max_ms']:>9.2f}{s['mean_ms']:>9.2f}{budget:>8}{s['violations']:>5}{roof}")
    lines.append(f"matrix-multiply peak of this machine: {peak['peak']:.1f} GFLOP/s (before the rounds "
                 f"{peak['before']:.1f}, after {peak['after']:.1f}); GFLOP/s from each stage's p50")
    first = result["runs"][0]["label"]
    if len(result["runs"]) > 1:
        lines.append("variants interleaved round robin: one step of each per round, same frame and seed")
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
        bars.bar([r["label"] for r in runs], values, bottom=bottoms, label=stage)
        bottoms += values
    bars.set_ylabel("mean ms per step")
    bars.set_title(f"{runs[0]['model']}: time per stage")
    bars.legend(fontsize=8)
    for run in runs:
        timeline.plot(run["per_step_total_ms"], marker=".", label=run["label"])
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
