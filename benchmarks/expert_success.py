"""The scripted expert's own success on SIMPLER WidowX grids: the ceiling its demonstrations set for a learner.

    .venv/bin/python -m benchmarks.expert_success [--task ms3_twin/widowx_carrot_on_plate ...] [--grid official]
        [--episodes N] [--max-steps N] [--workers 2] [--action-noise 0] [--out docs/results/expert_success.json]

Each episode runs ``envs.scripted_expert`` (privileged object poses) in a simulator worker that keeps one environment
per task across its episodes, as ``vlart eval`` does, to the task's last step (``--max-steps``: another horizon), as
SIMPLER scores a policy. Twins (``ms3_twin/``) run in this interpreter, the original SimplerEnv's tasks
(``simplerenv/widowx_*``) in its own (``.venv-real2sim``; the command re-runs itself there). Prints success at the
final step, at any step and SIMPLER's partial success (grasped) per task with 95 % Wilson intervals and the time per
step, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from typing import Any

from benchmarks.evidence import RESULTS, rerun_in_simplerenv, write_stamped

_TASKS: dict[str, Any] = {}


def _run(args: tuple[str, str, int, float, int]) -> dict[str, Any]:
    from envs.registry import TASKS
    from envs.scripted_expert import run_expert_episode
    from envs.tasks import make_task

    name, grid, episode, action_noise, max_steps = args
    if name not in _TASKS:
        if TASKS[name].backend == "maniskill3":
            import torch

            torch.set_num_threads(1)
        _TASKS[name] = make_task(TASKS[name], grid=grid)
    started = time.perf_counter()
    result = run_expert_episode(_TASKS[name], episode_id=episode, seed=episode, max_steps=max_steps,
                                action_noise=action_noise, to_the_end=True)
    episode_s = time.perf_counter() - started
    return {"task": name, "episode": episode, "success": result["success"], "success_any": result["success_any"],
            "grasped": bool(result["grasped"]), "steps": result["steps"], "regrasps": result["regrasps"],
            "episode_s": round(episode_s, 2), "step_ms": round(1000 * episode_s / result["steps"], 1)}


def main() -> int:
    from envs.registry import SUITES, TASKS
    from envs.results import wilson_interval

    widowx = SUITES["simplerenv_bridge"] + SUITES["ms3_twin_bridge"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=widowx, help="default: the four ManiSkill3 twins")
    parser.add_argument("--grid", default="official", choices=["official", "heldout"])
    parser.add_argument("--episodes", type=int, help="episodes per task (default: the task's official grid size)")
    parser.add_argument("--max-steps", type=int, help="steps per episode (default: the task's SIMPLER horizon)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--action-noise", type=float, default=0.0)
    parser.add_argument("--out", default=str(RESULTS / "expert_success.json"))
    args = parser.parse_args()
    tasks = args.task or list(SUITES["ms3_twin_bridge"])
    backends = {TASKS[name].backend for name in tasks}
    if len(backends) > 1:
        parser.error("--task: the twins and the original SimplerEnv's tasks run in separate runs")
    if backends == {"real2sim"}:
        rerun_in_simplerenv("benchmarks.expert_success")
    jobs = [(name, args.grid, episode, args.action_noise, args.max_steps or TASKS[name].max_steps)
            for name in tasks for episode in range(args.episodes or TASKS[name].grid_size)]
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        records = list(pool.imap_unordered(_run, jobs))
    summary = {}
    print(f"| task ({args.grid} grid) | simulator | episodes | steps | success (final) | success (any step) | grasped "
          "| regrasp episodes | ms per step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in tasks:
        rows = [r for r in records if r["task"] == name]
        counts = {key: sum(r[key] for r in rows) for key in ("success", "success_any", "grasped")}
        low, high = wilson_interval(counts["success"], len(rows))
        step_ms = sum(r["episode_s"] for r in rows) * 1000 / sum(r["steps"] for r in rows)
        summary[name] = {"simulator": TASKS[name].simulator, "episodes": len(rows), "max_steps": rows[0]["steps"],
                         **counts, "success_interval": [low, high],
                         "regrasp_episodes": sum(1 for r in rows if r["regrasps"]),
                         "failed_episodes": sorted(r["episode"] for r in rows if not r["success"]),
                         "step_ms": round(step_ms, 1),
                         "episode_s": round(sum(r["episode_s"] for r in rows) / len(rows), 2)}
        print(f"| {name} | {TASKS[name].simulator} | {len(rows)} | {rows[0]['steps']} | "
              f"{counts['success']}/{len(rows)} [{100 * low:.1f}, {100 * high:.1f}] | "
              f"{counts['success_any']}/{len(rows)} | {counts['grasped']}/{len(rows)} | "
              f"{summary[name]['regrasp_episodes']} | {step_ms:.0f} |")
    write_stamped(args.out, {"benchmark": "expert_success", "grid": args.grid, "action_noise": args.action_noise,
                             "rule": "success at the last step of the full horizon (SIMPLER's)",
                             "workers": args.workers,
                             "tasks": summary, "episodes": sorted(records, key=lambda r: (r["task"], r["episode"])),
                             "wall_time_s": round(time.perf_counter() - started, 1)}, "envs/scripted_expert.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
