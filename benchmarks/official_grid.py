"""A shipped policy on SIMPLER's official grids, as the README's main job runs it: the evidence of its results table.

    MS_ASSET_DIR=... .venv/bin/python -m benchmarks.official_grid --model checkpoints/cogact-demo-2task
        --suite ms3_twin/widowx_spoon_on_towel [--workers 2] [--out docs/results/official_cogact-demo-2task_spoon.json]
        [--frame docs/results/main_job_frame.png] [--figure docs/results/main_job.png --profile PROFILE.json]

Runs ``vlart eval --via zmq`` (the server in its own process, the simulators through the thin client) on the official
grid and times the whole command, start-up included, as a user meets it. The run folder (videos, traces) stays under
``runs/benchmarks/official_grid/``; the JSON under docs/results keeps what the docs cite: per task the success at the
final step (SIMPLER's rule), at any step and grasped, with 95 % Wilson intervals, the average over tasks, the
policy's step latency as the simulator saw it, every episode's outcome, and the eval's own provenance. ``--frame``
saves the last frame of the first successful episode's video; ``--figure`` puts that frame beside the policy's stage
latencies from a ``vlart profile --json`` file: the README's picture.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evidence import REPO, RESULTS, RUNS, repo_relative, write_stamped


def run_eval(model: str, suite: str, workers: int, run_dir: Path) -> float:
    """Seconds the whole ``vlart eval`` command took."""
    command = [str(Path(sys.executable).parent / "vlart"), "eval", "--suite", suite, "--model", model,
               "--workers", str(workers), "--out", str(run_dir)]
    print("$", " ".join(command), flush=True)
    started = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - started


def summarise(results: dict[str, Any], command_s: float) -> dict[str, Any]:
    episodes = results["episodes"]
    keys = ("simulator", "max_steps", "episodes", "failed_runs", "success_final", "success_any", "grasped")
    tasks = {name: {key: task[key] for key in keys if key in task} for name, task in results["tasks"].items()}
    for name, task in tasks.items():
        p50s = [e["policy_latency_ms"]["p50"] for e in episodes if e["task"] == name and e["policy_latency_ms"]]
        task["step_latency_ms_median_of_episode_p50"] = round(float(np.median(p50s)), 1) if p50s else None
    return {
        "suite": results["suite"], "grid": results["grid"], "via": results["via"], "workers": results["workers"],
        "preset": results["preset"], "timing": results["timing"],
        "tasks": tasks,
        "average_success_final": round(float(np.mean([t["success_final"]["rate"] for t in tasks.values()])), 4),
        "eval_wall_time_s": results["wall_time_s"],
        "command_wall_time_s": round(command_s, 1),
        "episodes": [{key: e[key] for key in ("task", "episode_id", "success_final", "success_any", "grasped",
                                              "steps", "failure")} for e in episodes],
        "eval_provenance": {"git": results["provenance"]["git"], "versions": results["provenance"]["versions"]},
    }


def last_frame_of_first_success(results: dict[str, Any]) -> np.ndarray:
    import imageio.v3 as iio

    video = next(e["video"] for e in results["episodes"] if e["success_final"] and e["video"])
    return iio.imread(REPO / video)[-1]  # the ffmpeg reader cannot seek to the last frame; a video is 60-120


def draw_figure(frame: np.ndarray, profile: dict[str, Any], task: dict[str, Any], model: str, out: Path) -> None:
    """The frame of a success beside the baseline's per-stage p50 latency (what the policy did, and how fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = profile["runs"][0]
    stages = [name for name in run["stages"] if name != "total"]
    p50 = [run["stages"][name]["p50_ms"] for name in stages]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.1, 1]})
    left.imshow(frame)
    left.set_axis_off()
    rate = task["success_final"]
    left.set_title(f"{model}: {rate['successes']} of {task['episodes']} official episodes succeed", fontsize=10)
    right.barh(stages[::-1], p50[::-1], color="#4c72b0")
    for y, value in enumerate(p50[::-1]):
        right.text(value, y, f" {value:.1f}", va="center", fontsize=8)
    right.set_xlabel("p50 latency per stage (ms), 2 CPU cores")
    right.set_title(f"one predict: {run['stages']['total']['p50_ms']:.0f} ms p50 (budget {run['budget']})",
                    fontsize=10)
    right.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="default docs/results/official_<model>_<suite>.json")
    parser.add_argument("--frame", type=Path, help="PNG: the last frame of the first successful episode")
    parser.add_argument("--figure", type=Path, help="PNG: that frame beside --profile's stage latencies")
    parser.add_argument("--profile", type=Path, help="a `vlart profile --json` file of the same model")
    args = parser.parse_args()
    if args.figure and not args.profile:
        parser.error("--figure needs --profile")
    name = f"{Path(args.model).name}_{args.suite.split('/')[-1]}"
    run_dir = RUNS / "official_grid" / name
    command_s = run_eval(args.model, args.suite, args.workers, run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    summary = summarise(results, command_s)
    summary["run"] = repo_relative(run_dir)
    write_stamped(args.out or RESULTS / f"official_{name}.json", summary, args.model)
    if args.frame or args.figure:
        frame = last_frame_of_first_success(results)
        if args.frame:
            import imageio.v3 as iio

            args.frame.parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(args.frame, frame)
            print(f"wrote {args.frame}")
        if args.figure:
            draw_figure(frame, json.loads(args.profile.read_text()), next(iter(summary["tasks"].values())),
                        Path(args.model).name, args.figure)


if __name__ == "__main__":
    main()
