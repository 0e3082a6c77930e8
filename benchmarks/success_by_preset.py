"""Task success of one trained policy under each EfficientVLA preset, on the same SIMPLER episodes.

    MS_ASSET_DIR=... .venv/bin/python -m benchmarks.success_by_preset --model CHECKPOINT_DIR
        [--tasks ms3_twin/widowx_carrot_on_plate ms3_twin/widowx_spoon_on_towel] [--episodes 24]
        [--presets baseline tokens-only ...] [--workers 2] [--out docs/results/success_by_preset.json]
        [--runs runs/benchmarks/success_by_preset]

Every (preset, task) pair is one ``vlart eval --via zmq`` run: a vlart server holding the preset's model, the thin
client in the simulator workers, the official episode grid (the first ``--episodes`` of it) with the same seeds for
every preset. The presets that prune the LLM share one calibration plan made first with ``vlart calibrate``. The table
has SIMPLER's success (final step) and success at any step with 95% Wilson intervals, and the policy's latency as the
simulator saw it (one control step through ZeroMQ: the median over episodes of each episode's p50); the JSON keeps
each run's results.json path. The runs and the plan stay in ``--runs``; the JSON is rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.evidence import RESULTS, RUNS, repo_relative, write_stamped
from envs.results import SUCCESS_RULES
from policies.presets import load_preset

PRESETS = ["baseline", "tokens-only", "cache-only", "layers-mlp", "efficientvla-l28-t112", "efficientvla"]
TASKS = ["ms3_twin/widowx_carrot_on_plate", "ms3_twin/widowx_spoon_on_towel"]


def vlart(*args: str) -> None:
    command = [str(Path(sys.executable).parent / "vlart"), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def evaluate(model: str, preset: str, task: str, plan: Path | None, args: argparse.Namespace, runs: Path) -> dict:
    run_dir = runs / preset / task.replace("/", "__")
    command = ["eval", "--suite", task, "--model", model, "--via", "zmq", "--episodes", str(args.episodes),
               "--workers", str(args.workers), "--seed", str(args.seed), "--no-video", "--out", str(run_dir)]
    if preset != "baseline":
        command += ["--preset", preset]
        if plan is not None and load_preset(preset).needs_calibration:
            command += ["--plan", str(plan)]
    vlart(*command)
    result = json.loads((run_dir / "results.json").read_text())
    entry = result["tasks"][task]
    latencies = [e["policy_latency_ms"]["p50"] for e in result["episodes"] if e["policy_latency_ms"]]
    return {"preset": preset, "task": task, "episodes": entry["episodes"], "failed_runs": entry["failed_runs"],
            **{rule: entry[rule] for rule in SUCCESS_RULES}, "grasped": entry.get("grasped"),
            "step_latency_ms_median_of_episode_p50s": round(float(np.median(latencies)), 2) if latencies else None,
            "results": repo_relative(run_dir / "results.json")}


def table(rows: list[dict]) -> str:
    lines = [f"{'preset':<24}{'task':<34}{'success (final)':>22}{'success (any)':>22}{'grasped':>22}"
             f"{'median ep. p50 ms':>19}"]
    for row in rows:
        cells = [f"{r['successes']:>2}/{row['episodes']} [{100 * r['ci95'][0]:3.0f},{100 * r['ci95'][1]:4.0f}]%"
                 if r is not None else "-" for r in (row["success_final"], row["success_any"], row.get("grasped"))]
        latency = row["step_latency_ms_median_of_episode_p50s"]
        cell = f"{latency:.1f}" if latency is not None else "-"
        lines.append(f"{row['preset']:<24}{row['task']:<34}{cells[0]:>22}{cells[1]:>22}{cells[2]:>22}{cell:>19}")
    lines.append("successes/episodes [95% Wilson interval]; success (final) is SIMPLER's official rule, grasped its "
                 "partial success; latency: the median over episodes of each episode's p50 step latency")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained checkpoint (success of random weights is 0)")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-frames", type=int, default=16)
    parser.add_argument("--out", default=str(RESULTS / "success_by_preset.json"))
    parser.add_argument("--runs", default=str(RUNS / "success_by_preset"), help="the eval runs and the plan")
    args = parser.parse_args()
    runs = Path(args.runs)
    plan = None
    if any(preset != "baseline" and load_preset(preset).needs_calibration for preset in args.presets):
        plan = runs / "plan.json"
        vlart("calibrate", "--model", args.model, "--frames", str(args.calibration_frames), "--tasks", *args.tasks,
              "--out", str(plan))
    rows = []
    for preset in args.presets:
        for task in args.tasks:
            rows.append(evaluate(args.model, preset, task, plan, args, runs))
            write_stamped(args.out, {"benchmark": "success_by_preset", "episodes": args.episodes, "seed": args.seed,
                                     "plan": repo_relative(plan) if plan else None, "rows": rows}, args.model)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
