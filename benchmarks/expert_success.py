"""The scripted expert's own success on SIMPLER WidowX grids: the ceiling its demonstrations set for a learner.

    .venv/bin/python -m benchmarks.expert_success [--task simpler/widowx_carrot_on_plate ...] [--grid official]
        [--episodes N] [--workers 2] [--action-noise 0] [--out docs/results/expert_success.json]

Each episode runs ``envs.scripted_expert`` (privileged object poses) in a simulator worker that keeps one environment
per task across its episodes, as ``vlart eval`` does. Prints success at the final step, at any step and SIMPLER's
partial success (grasped) per task with 95 % Wilson intervals, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from typing import Any

from benchmarks.evidence import RESULTS, write_stamped

WIDOWX = ("simpler/widowx_spoon_on_towel", "simpler/widowx_carrot_on_plate", "simpler/widowx_stack_cube",
          "simpler/widowx_eggplant_in_basket")
_TASKS: dict[str, Any] = {}


def _run(args: tuple[str, str, int, float]) -> dict[str, Any]:
    import torch

    from envs.registry import TASKS
    from envs.scripted_expert import run_expert_episode
    from envs.sim_env import SimTask

    torch.set_num_threads(1)
    name, grid, episode, action_noise = args
    if name not in _TASKS:
        _TASKS[name] = SimTask(TASKS[name], grid=grid)
    result = run_expert_episode(_TASKS[name], episode_id=episode, seed=episode, action_noise=action_noise)
    return {"task": name, "episode": episode, "success": result["success"], "success_any": result["success_any"],
            "grasped": bool(result["grasped"]), "steps": result["steps"], "regrasps": result["regrasps"]}


def main() -> int:
    from envs.registry import TASKS
    from envs.results import wilson_interval

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=WIDOWX, help="default: the four WidowX tasks")
    parser.add_argument("--grid", default="official", choices=["official", "heldout"])
    parser.add_argument("--episodes", type=int, help="episodes per task (default: the task's official grid size)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--action-noise", type=float, default=0.0)
    parser.add_argument("--out", default=str(RESULTS / "expert_success.json"))
    args = parser.parse_args()
    tasks = args.task or list(WIDOWX)
    jobs = [(name, args.grid, episode, args.action_noise)
            for name in tasks for episode in range(args.episodes or TASKS[name].grid_size)]
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        records = list(pool.imap_unordered(_run, jobs))
    summary = {}
    print(f"| task ({args.grid} grid) | episodes | success (final) | success (any step) | grasped | regrasp episodes |")
    print("|---|---|---|---|---|---|")
    for name in tasks:
        rows = [r for r in records if r["task"] == name]
        counts = {key: sum(r[key] for r in rows) for key in ("success", "success_any", "grasped")}
        low, high = wilson_interval(counts["success"], len(rows))
        summary[name] = {"episodes": len(rows), **counts, "success_interval": [low, high],
                         "regrasp_episodes": sum(1 for r in rows if r["regrasps"]),
                         "failed_episodes": sorted(r["episode"] for r in rows if not r["success"])}
        print(f"| {name} | {len(rows)} | {counts['success']}/{len(rows)} [{100 * low:.1f}, {100 * high:.1f}] | "
              f"{counts['success_any']}/{len(rows)} | {counts['grasped']}/{len(rows)} | "
              f"{summary[name]['regrasp_episodes']} |")
    write_stamped(args.out, {"benchmark": "expert_success", "grid": args.grid, "action_noise": args.action_noise,
                             "tasks": summary, "episodes": sorted(records, key=lambda r: (r["task"], r["episode"])),
                             "wall_time_s": round(time.perf_counter() - started, 1)}, "envs/scripted_expert.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
