"""What the original SimplerEnv's Bridge tasks cost per build, reset and step here, and what vlart leaves out.

    .venv/bin/python -m benchmarks.simplerenv_bridge_timing [--tasks ...] [--episodes A B]
        [--out docs/results/simplerenv_bridge_timing.json]

SimplerEnv's evaluator builds a new environment for every episode and renders an unused 128x128 ``base_camera`` at
every step; vlart reuses one environment per task and renders only the policy's camera. For each task (in the
SimplerEnv interpreter; the command re-runs itself there) this measures both and shows that neither changes what the
policy sees:

1. two new environments, one with every camera (as SimplerEnv builds it) and one with the policy's camera only, run
   the scripted expert on episode B in lockstep, alternating which steps first (round robin), to the task's horizon:
   build, reset and per-step times, and the largest pixel difference between their frames at every step;
2. the second environment, reused, runs episode A and then B again: B's frames against its first run.

Prints a table and writes the JSON.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.evidence import RESULTS, rerun_in_simplerenv, write_stamped

OUT = RESULTS / "simplerenv_bridge_timing.json"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _timed(call: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call(*args)
    return result, time.perf_counter() - started


def measure(name: str, first: int, second: int) -> dict[str, Any]:
    import numpy as np

    from envs.real2sim_env import Real2SimTask
    from envs.registry import TASKS
    from envs.scripted_expert import ScriptedExpert

    spec = TASKS[name]
    setups = {"all_cameras": Real2SimTask(spec, policy_camera_only=False), "policy_camera": Real2SimTask(spec)}
    row: dict[str, Any] = {"task": name, "episodes": [first, second], "steps": spec.max_steps}
    frames: dict[str, list[np.ndarray]] = {key: [] for key in setups}
    step_s: dict[str, list[float]] = {key: [] for key in setups}
    experts = {key: ScriptedExpert() for key in setups}
    for key, task in setups.items():
        observation, seconds = _timed(task.reset, second, second)
        row[f"{key}_build_and_reset_s"] = round(seconds, 3)
        experts[key].reset(task)
        frames[key].append(observation.image)
    successes = {}
    for step in range(spec.max_steps):
        order = list(setups) if step % 2 == 0 else list(setups)[::-1]
        for key in order:
            result, seconds = _timed(setups[key].step, experts[key].act())
            step_s[key].append(seconds)
            frames[key].append(result.observation.image)
            successes[key] = result.success
    row["frame_diff_policy_camera_vs_all"] = max(int(np.abs(a.astype(int) - b).max())
                                                 for a, b in zip(frames["all_cameras"], frames["policy_camera"]))
    for key in setups:
        row[f"{key}_step_ms"] = round(1000 * _median(step_s[key]), 1)
        row[f"{key}_success"] = successes[key]
    setups["all_cameras"].close()
    reused = setups["policy_camera"]
    for episode in (first, second):
        observation, reset_s = _timed(reused.reset, episode, episode)
        expert = ScriptedExpert()
        expert.reset(reused)
        replay = [observation.image] + [reused.step(expert.act()).observation.image for _ in range(spec.max_steps)]
    row["reset_s"] = round(reset_s, 3)
    row["frame_diff_reused_vs_new"] = max(int(np.abs(a.astype(int) - b).max())
                                          for a, b in zip(replay, frames["policy_camera"]))
    reused.close()
    return row


def main() -> None:
    from envs.registry import SUITES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(SUITES["simplerenv_bridge"]))
    parser.add_argument("--episodes", nargs=2, type=int, default=[0, 13], metavar=("A", "B"))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    rerun_in_simplerenv("benchmarks.simplerenv_bridge_timing")
    rows = [measure(name, *args.episodes) for name in args.tasks]
    print("| task | steps | build + reset (s) | reset, reused (s) | step, every camera (ms) | step, policy camera (ms) "
          "| frames: policy camera vs every camera | frames: reused vs new |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['steps']} | {row['all_cameras_build_and_reset_s']} | {row['reset_s']} | "
              f"{row['all_cameras_step_ms']} | {row['policy_camera_step_ms']} | "
              f"max diff {row['frame_diff_policy_camera_vs_all']} | max diff {row['frame_diff_reused_vs_new']} |")
    write_stamped(args.out, {"benchmark": "simplerenv_bridge_timing", "rows": rows,
                             "expert": "envs/scripted_expert.py (no policy runs)"}, None)


if __name__ == "__main__":
    main()
