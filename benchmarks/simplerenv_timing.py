"""How long SIMPLER's Google-robot tasks take to build, reset and step in the original SimplerEnv on this machine.

    .venv/bin/python -m benchmarks.simplerenv_timing [--tasks ...] [--resets 3] [--steps 10]

For each task (default: the five of ``simplerenv_google_vm``), one process of the SimplerEnv interpreter
(``.venv-real2sim``) builds the environment for the grid's episode 0 (the first reset: ``gym.make`` plus the reset),
resets it ``--resets`` more times on episodes that share that build, and steps it ``--steps`` times with the hold
action (no motion, gripper open). Medians, with the load average before and after (the machine's other work slows
every number). Prints a table and writes ``docs/results/simplerenv_timing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from typing import Any

from benchmarks.evidence import REPO, RESULTS, write_stamped

OUT = RESULTS / "simplerenv_timing.json"


def measure_in_simplerenv(task: str, resets: int, steps: int) -> dict[str, Any]:
    """Runs in the SimplerEnv interpreter."""
    import numpy as np

    from envs.real2sim_env import Real2SimTask
    from envs.registry import TASKS
    from runtime.core.stats import percentile

    spec = TASKS[task]
    sim = Real2SimTask(spec)
    first = sim.episodes[0]
    same_build = [i for i, e in enumerate(sim.episodes)  # episodes the first one's environment serves unrebuilt
                  if i > 0 and (e.env_id, e.scene, e.build) == (first.env_id, first.scene, first.build)][:resets]
    started = time.perf_counter()
    sim.reset(0, seed=0)
    first_reset_s = time.perf_counter() - started
    reset_s = []
    for episode in same_build:
        started = time.perf_counter()
        sim.reset(episode, seed=episode)
        reset_s.append(time.perf_counter() - started)
    hold = np.array([0, 0, 0, 0, 0, 0, 1.0])
    step_s = []
    for _ in range(steps):
        started = time.perf_counter()
        sim.step(hold)
        step_s.append(time.perf_counter() - started)
    sim.close()
    return {"task": task, "make_and_first_reset_s": round(first_reset_s, 3),
            "reset_median_s": round(float(np.median(reset_s)), 3) if reset_s else None,
            "step_median_s": round(float(np.median(step_s)), 3),
            "step_p90_s": round(percentile(step_s, 90), 3), "resets": len(reset_s), "steps": steps}


def main() -> None:
    from envs.real2sim_workers import real2sim_python
    from envs.registry import SUITES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(SUITES["simplerenv_google_vm"]))
    parser.add_argument("--resets", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--side", choices=["parent", "simplerenv"], default="parent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "simplerenv":
        print(json.dumps(measure_in_simplerenv(args.tasks[0], args.resets, args.steps)))
        return
    rows = []
    for task in args.tasks:
        load_before = os.getloadavg()[0]
        result = subprocess.run(
            [str(real2sim_python()), "-m", "benchmarks.simplerenv_timing", "--side", "simplerenv", "--tasks", task,
             "--resets", str(args.resets), "--steps", str(args.steps)],
            capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["load_before"], row["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
        rows.append(row)
        print(f"{task:40s} make+reset {row['make_and_first_reset_s']:6.1f} s  reset {row['reset_median_s']} s  "
              f"step {row['step_median_s']} s (p90 {row['step_p90_s']})  load {row['load_before']}->"
              f"{row['load_after']}", flush=True)
    write_stamped(OUT, {"benchmark": "simplerenv_timing", "rows": rows}, None)  # the hold action: no policy runs


if __name__ == "__main__":
    main()
