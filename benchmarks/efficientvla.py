"""EfficientVLA presets on one model: latency, speedup, FLOPs and action fidelity, measured in one run.

    .venv/bin/python -m benchmarks.efficientvla [--model configs/models/cogact-small.yaml] [--frames 8]
        [--repeats 2] [--calibration-frames 16] [--out docs/results/efficientvla.json]
        [--plan runs/benchmarks/efficientvla/plan.json]

Frames are real SIMPLER observations when MS_ASSET_DIR is set (first frames of spread-out episodes of the four WidowX
tasks, disjoint from the calibration frames), else the sample Bridge frame. The model is calibrated once on its own
frames and every preset uses that plan. For each preset and frame: ``predict_action`` with the same seeds as the
baseline, latency from the policy's stage timers, and fidelity of the unnormalised 16x7 chunk against the
baseline's (cosine similarity and L2 distance, mean over frames). All presets' models are held at once and take
turns on each frame. With random weights the fidelity numbers say nothing about task success. The roofline: the
machine's matrix-multiply peak, measured before and after the rounds (``policies.roofline``), and each preset's
executed GFLOPs over its p50 as achieved GFLOP/s and a fraction of that peak.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.evidence import REPO, RESULTS, RUNS, hub_offline, repo_relative, write_stamped
from runtime.core.stats import percentile

PRESETS = ["baseline", "tokens-only", "cache-only", "layers-mlp", "fastv", "efficientvla-l28-t112", "efficientvla"]


def evaluation_observations(count: int) -> tuple[list, str]:
    from envs.sample_frames import simpler_available
    from runtime.app.calibration_data import sample_observations

    if not simpler_available():
        return sample_observations(count), "sample Bridge frame"
    from envs.registry import SUITES, TASKS
    from envs.sim_env import SimTask

    observations = []
    names = list(SUITES["ms3_twin_bridge"])
    for i in range(count):
        task = SimTask(TASKS[names[i % len(names)]])
        try:
            episode = (task.spec.grid_size or 1) - 1 - i // len(names)  # from the end of the grid: not calibration's
            observations.append(task.reset(episode_id=episode, seed=episode))
        finally:
            task.close()
    return observations, "SIMPLER WidowX first frames"


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "configs" / "models" / "cogact-small.yaml"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--calibration-frames", type=int, default=16)
    parser.add_argument("--presets", nargs="+", default=PRESETS, help="the first must be baseline")
    parser.add_argument("--out", default=str(RESULTS / "efficientvla.json"))
    parser.add_argument("--plan", default=str(RUNS / "efficientvla" / "plan.json"),
                        help="where the calibration plan goes (remade every run from the frames: not evidence)")
    args = parser.parse_args()

    from policies.acceleration.calibration import calibrate
    from policies.flops import StepShape, count_flops
    from policies.loading import load_policy
    from policies.roofline import matmul_peak_gflops
    from runtime.app.calibration_data import calibration_observations
    from runtime.app.policy_loader import load_policy_with_preset
    from runtime.app.profile import round_robin

    observations, source = evaluation_observations(args.frames)
    baseline_model = load_policy(args.model)
    calibration, calibration_source = calibration_observations(args.calibration_frames, baseline_model)
    plan = calibrate(baseline_model, calibration)
    plan.save(args.plan)
    text_tokens = int(np.mean([int(baseline_model.language_model.tokenize([o.instruction]).lengths[0])
                               for o in observations]))
    del baseline_model

    # Every preset's model is held at once and the presets take turns on each frame, so the machine's drift (these
    # machines are shared) hits all of them alike.
    policies = {name: load_policy_with_preset(args.model, name, args.plan) for name in args.presets}
    for _ in round_robin(policies, ((observations[0], step) for step in range(args.warmup))):
        pass  # warm-up rounds: not counted
    first = policies[args.presets[0]]
    peaks = [matmul_peak_gflops(first.device, first.action_head.positional_embedding.dtype)]
    totals = {name: [] for name in policies}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in policies}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in policies}
    rounds = ((obs, 1000 * repeat + index) for repeat in range(args.repeats) for index, obs in enumerate(observations))
    for round_index, name, out in round_robin(policies, rounds):
        totals[name].append(out.timings_ms["total"])
        for stage, ms in out.timings_ms.items():
            stages[name].setdefault(stage, []).append(ms)
        if round_index < len(observations):  # the first repeat: one chunk per frame for fidelity
            chunks[name].append(out.actions.astype(np.float64))
    peaks.append(matmul_peak_gflops(first.device, first.action_head.positional_embedding.dtype))
    peak = max(peaks)
    rows = []
    reference = chunks["baseline"]
    for name, policy in policies.items():
        cosines = [float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
                   for a, b in zip(chunks[name], reference)]
        distances = [float(np.linalg.norm(a - b)) for a, b in zip(chunks[name], reference)]
        flops = count_flops(policy, StepShape(text_tokens=text_tokens))
        rows.append({
            "preset": name,
            "llm_layers": len(policy.language_model.llm.model.layers),
            "mlp_width": policy.language_model.llm.model.layers[0].mlp.gate_proj.out_features,
            "latency_p50_ms": round(percentile(totals[name], 50), 2),
            "latency_p95_ms": round(percentile(totals[name], 95), 2),
            "stage_mean_ms": {s: round(float(np.mean(v)), 2) for s, v in stages[name].items()},
            "gflops": flops["gflops"]["total"],
            "executed_gflops": flops["executed_gflops"],
            "achieved_gflops_per_s": round(flops["executed_gflops"] / (percentile(totals[name], 50) / 1e3), 2),
            "fidelity_cosine": round(float(np.mean(cosines)), 4),
            "fidelity_l2": round(float(np.mean(distances)), 5),
        })
    base = rows[0]
    for row in rows:
        row["speedup"] = round(base["latency_p50_ms"] / row["latency_p50_ms"], 3)
        row["flops_ratio"] = round(row["gflops"] / base["gflops"], 4)
        row["fraction_of_peak"] = round(row["achieved_gflops_per_s"] / peak, 4)

    print(f"{Path(args.model).stem}: {len(observations)} frames ({source}) x {args.repeats}, calibration on "
          f"{len(calibration)} ({calibration_source}); {text_tokens} text tokens")
    print(f"{'preset':<24}{'layers':>7}{'mlp':>6}{'p50 ms':>10}{'p95 ms':>10}{'speedup':>9}{'FLOPs':>8}"
          f"{'cos vs base':>12}{'L2 vs base':>12}{'GFLOP/s':>9}{'%peak':>7}")
    for row in rows:
        print(f"{row['preset']:<24}{row['llm_layers']:>7}{row['mlp_width']:>6}{row['latency_p50_ms']:>10.1f}"
              f"{row['latency_p95_ms']:>10.1f}{row['speedup']:>8.2f}x{100 * row['flops_ratio']:>7.1f}%"
              f"{row['fidelity_cosine']:>12.4f}{row['fidelity_l2']:>12.5f}{row['achieved_gflops_per_s']:>9.1f}"
              f"{100 * row['fraction_of_peak']:>6.1f}%")
    print(f"matrix-multiply peak: {peak:.1f} GFLOP/s (before the rounds {peaks[0]:.1f}, after {peaks[1]:.1f})")
    write_stamped(args.out, {"benchmark": "efficientvla", "frames": source, "calibration": calibration_source,
                             "plan": repo_relative(args.plan), "matmul_peak_gflops": round(peak, 2),
                             "results": rows}, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
