"""Per-task episode and simulator-step times of two served runs, one in the ManiSkill3 twins and one in the original
SimplerEnv, read from their ``results.json``: the speed rows of docs/simpler.md's twin-against-original table.

    .venv/bin/python -m benchmarks.twin_vs_original_speed --twin RUN_DIR --original RUN_DIR
        [--out docs/results/twin_vs_original_speed.json]

The two runs are separate (not interleaved), so the numbers compare the simulators only roughly; each run's commit
and settings are kept beside its numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evidence import RESULTS, repo_relative, write_stamped


def speeds(run: Path) -> dict[str, Any]:
    results = json.loads((run / "results.json").read_text())
    tasks = {}
    for name in results["tasks"]:
        episodes = [e for e in results["episodes"] if e["task"] == name and e["env_step_ms"]]
        tasks[name] = {"episodes": len(episodes),
                       "mean_episode_s": round(float(np.mean([e["wall_time_s"] for e in episodes])), 1),
                       "env_step_ms_median_of_episode_p50": round(float(np.median(
                           [e["env_step_ms"]["p50"] for e in episodes])), 1)}
    return {"run": repo_relative(run), "suite": results["suite"], "workers": results["workers"],
            "model": results["model"], "eval_wall_time_s": results["wall_time_s"],
            "eval_git": results["provenance"]["git"], "tasks": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--twin", type=Path, required=True)
    parser.add_argument("--original", type=Path, required=True)
    parser.add_argument("--out", default=str(RESULTS / "twin_vs_original_speed.json"))
    args = parser.parse_args()
    runs = {"twin": speeds(args.twin), "original": speeds(args.original)}
    for side, run in runs.items():
        for name, row in run["tasks"].items():
            print(f"{side:9s} {name:42s} episode {row['mean_episode_s']:6.1f} s  step p50 "
                  f"{row['env_step_ms_median_of_episode_p50']:6.1f} ms")
    write_stamped(args.out, {"benchmark": "twin_vs_original_speed", "runs": runs},
                  sorted({runs["twin"]["model"], runs["original"]["model"]}))


if __name__ == "__main__":
    main()
