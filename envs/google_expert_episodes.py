"""Whole episodes of the Google-robot scripted expert (``envs.google_expert``), and its command line over a task's grid.

``python -m envs.google_expert_episodes --task TASK --out FILE`` runs the episodes (a range of them, one shard of
them), prints a line per episode and writes the per-episode results as JSON, with a video each if asked. It runs in
the SimplerEnv interpreter (``.venv-real2sim``), as ``Real2SimTask`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

from envs.google_expert import GoogleScriptedExpert


def run_expert_episode(task: Any, episode_id: int, seed: int, expert: Optional[GoogleScriptedExpert] = None,
                       keep_frames: bool = False) -> dict[str, Any]:
    """One expert episode run to the task's step limit, as SIMPLER runs a policy. ``success_final``: success at
    the last step (SIMPLER's rule); ``success_any``: at any step."""
    expert = expert or GoogleScriptedExpert()
    started = time.monotonic()
    obs = task.reset(episode_id, seed)
    expert.reset(task)
    reset_s = time.monotonic() - started
    frames, successes = [obs.image], []
    for _ in range(task.spec.max_steps):
        result = task.step(expert.act())
        successes.append(result.success)
        if keep_frames:
            frames.append(result.observation.image)
    record = {"episode_id": episode_id, "seed": seed, "instruction": obs.instruction,
              "success_final": bool(successes[-1]), "success_any": any(successes),
              "first_success_step": successes.index(True) + 1 if any(successes) else None,
              "steps": len(successes), "final_phase": expert.phase_name, "regrasps": expert.regrasps,
              "reset_s": round(reset_s, 2), "episode_s": round(time.monotonic() - started, 2)}
    if keep_frames:
        record["frames"] = frames
    return record


# -- command line ------------------------------------------------------------------------------------------------------


def parse_range(text: str) -> range:
    """"START:STOP[:STRIDE]" -> range."""
    parts = [int(p) for p in text.split(":")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--episodes: expected START:STOP[:STRIDE], got {text!r}")
    return range(*parts)


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N): this process runs the episodes i with i % N == K."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard: expected K/N, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard: expected 0 <= K < N, got {text!r}")
    return k, n


def episode_label(task: Any, episode_id: int) -> str:
    """What varies along the grid, for the table: robot recolouring and can orientation (or object-set episode)."""
    episode = task.episodes[episode_id]
    build = dict(episode.build)
    urdf = build.get("urdf_version") or "default"
    if episode.obj_episode is not None:
        return f"{urdf} set {episode.obj_episode}"
    orientation = next((k for k in ("lr_switch", "upright", "laid_vertically") if build.get(k)), "")
    return f"{urdf} {orientation} xy {episode.obj_xy[0]:+.3f},{episode.obj_xy[1]:+.3f}"


def main(argv: Optional[list[str]] = None) -> int:
    from envs.real2sim_env import Real2SimTask
    from envs.registry import TASKS
    from envs.video import write_video

    parser = argparse.ArgumentParser(prog="python -m envs.google_expert_episodes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="simplerenv/google_pick_coke_can",
                        choices=["simplerenv/google_pick_coke_can", "simplerenv/google_move_near"])
    parser.add_argument("--episodes", type=parse_range, default=None, help="START:STOP[:STRIDE] (default: all)")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), help="K/N: run episodes i with i %% N == K")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed SEED + i, as vlart eval")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the per-episode results")
    parser.add_argument("--video-dir", type=Path, default=None, help="write one mp4 per episode here")
    args = parser.parse_args(argv)

    task = Real2SimTask(TASKS[args.task])
    episodes = args.episodes or range(len(task.episodes))
    k, n = args.shard
    records = []
    try:
        for episode_id in (i for i in episodes if i % n == k):
            record = run_expert_episode(task, episode_id, args.seed + episode_id, keep_frames=bool(args.video_dir))
            record["label"] = episode_label(task, episode_id)
            frames = record.pop("frames", None)
            if frames is not None:
                outcome = "success" if record["success_final"] else "failure"
                record["video"] = str(write_video(args.video_dir / f"ep{episode_id:03d}_{outcome}.mp4", frames,
                                                  task.spec.control_rate_hz))
            records.append(record)
            print(f"{episode_id:4d}  {'ok  ' if record['success_final'] else 'FAIL'}  any={record['success_any']!s:5}"
                  f"  phase={record['final_phase']:8} regrasps={record['regrasps']}  {record['episode_s']:6.1f}s"
                  f"  {record['label']}", flush=True)
    finally:
        task.close()
    successes = sum(r["success_final"] for r in records)
    print(f"{args.task}: {successes}/{len(records)} episodes succeed at the last step")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"task": args.task, "shard": f"{k}/{n}", "episodes": records,
                                    "successes": successes, "count": len(records)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
