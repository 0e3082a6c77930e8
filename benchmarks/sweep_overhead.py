"""What running an evaluation as a Ray sweep costs, and what a kill costs a sweep.

    .venv/bin/python -m benchmarks.sweep_overhead [--episodes 24] [--workers 2] [--rounds 1] [--kill-at 12]
        [--model checkpoints/cogact-demo] [--work runs/benchmarks/sweep_overhead]
        [--out docs/results/sweep_overhead.json]

1. **Overhead.** The same cell, ``--episodes`` of the spoon task with ``--model``, as ``vlart eval --workers W``
   (its own server process, W worker processes) and as ``vlart sweep`` of a one-cell YAML (a local Ray runtime, a
   policy-server actor, W episode-worker actors, ``workers: W`` shards): wall time of each command, start-up
   included, alternating ``--rounds`` times; and whether the episodes' outcomes agree.
2. **Resume.** The sweep killed (SIGKILL to its process group) once ``--kill-at`` episodes are on disk, then the
   same command again: episodes run again that had finished (should be 0), and the total wall time of both parts.

Prints a table and writes JSON; the runs (eval and sweep output folders) stay in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.evidence import REPO, RESULTS, RUNS, write_stamped

TASK = "ms3_twin/widowx_spoon_on_towel"


def vlart(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.app.cli", *args]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def sweep_yaml(path: Path, model: str, episodes: int, workers: int) -> Path:
    path.write_text(f"""name: overhead
suite: {TASK}
model: {model}
episodes: {episodes}
workers: {workers}
video: false
parallel: {workers}
resources: {{server: {{num_cpus: 0}}, episode: {{num_cpus: 1}}}}
""")
    return path


def outcomes(results: Path) -> dict[int, bool]:
    return {e["episode_id"]: bool(e["success_final"]) for e in json.loads(results.read_text())["episodes"]}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def overhead(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    rows = []
    spec = sweep_yaml(work / "overhead.yaml", args.model, args.episodes, args.workers)
    for round_index in range(args.rounds):
        order = ["eval", "sweep"] if round_index % 2 == 0 else ["sweep", "eval"]
        for kind in order:
            out = work / f"{kind}-{round_index}"
            if kind == "eval":
                command = vlart("eval", "--suite", TASK, "--model", args.model, "--episodes", str(args.episodes),
                                "--workers", str(args.workers), "--no-video", "--out", str(out))
            else:
                command = vlart("sweep", str(spec), "--out", str(out))
            wall = timed(command)
            results = out / "results.json"
            rows.append({"round": round_index, "kind": kind, "wall_s": round(wall, 1),
                         "successes": sum(outcomes(results).values()), "outcomes": outcomes(results)})
            print(f"  round {round_index} {kind}: {wall:.1f} s, success {rows[-1]['successes']}/{args.episodes}",
                  flush=True)
    return rows


def resume(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spec = sweep_yaml(work / "resume.yaml", args.model, args.episodes, args.workers)
    out = work / "resume"
    lines = out / "episodes.jsonl"
    started = time.perf_counter()
    process = subprocess.Popen(vlart("sweep", str(spec), "--out", str(out)), cwd=REPO, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not (lines.exists() and lines.read_text().count("\n") >= args.kill_at):
        if process.poll() is not None:
            raise RuntimeError("the sweep finished before it was killed")
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first_wall = time.perf_counter() - started
    before = [json.loads(line) for line in lines.read_text().splitlines() if line.strip()]
    time.sleep(5)  # Ray's helper processes of the killed run go away on their own
    second_wall = timed(vlart("sweep", str(spec), "--out", str(out)))
    after = [json.loads(line) for line in lines.read_text().splitlines()]
    finished_before = {(e["episode_id"]) for e in before if e["failure"] is None}
    rerun = [e for e in after[len(before):] if e["episode_id"] in finished_before]
    return {"killed_after_episodes": len(before), "killed_at_s": round(first_wall, 1),
            "resume_wall_s": round(second_wall, 1), "episodes_after_resume": len(after),
            "finished_episodes_run_again": len(rerun),
            "success": sum(bool(e["success_final"]) for e in json.loads((out / "results.json").read_text())
                           ["episodes"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--kill-at", type=int, default=12, help="0: skip the resume measurement")
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "cogact-demo"))
    parser.add_argument("--work", default=str(RUNS / "sweep_overhead"))
    parser.add_argument("--out", default=str(RESULTS / "sweep_overhead.json"))
    args = parser.parse_args()
    work = Path(args.work)
    if work.exists():
        raise SystemExit(f"--work: {work} exists; remove it (results there would be resumed, not measured)")
    work.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    rows = overhead(args, work) if args.rounds else []
    resumed = resume(args, work) if args.kill_at else None

    print(f"\n{'round':>5} {'command':>8} {'wall s':>8} {'success':>8}")
    for row in rows:
        print(f"{row['round']:>5} {row['kind']:>8} {row['wall_s']:>8.1f} {row['successes']:>5}/{args.episodes}")
    summary: dict[str, Any] = {}
    if rows:
        mean = {kind: sum(r["wall_s"] for r in rows if r["kind"] == kind) / args.rounds for kind in ("eval", "sweep")}
        summary = {"eval_mean_wall_s": round(mean["eval"], 1), "sweep_mean_wall_s": round(mean["sweep"], 1),
                   "sweep_over_eval": round(mean["sweep"] / mean["eval"], 3),
                   "same_outcomes": all(r["outcomes"] == rows[0]["outcomes"] for r in rows)}
        print(f"sweep / eval wall time: {summary['sweep_over_eval']:.3f} ({mean['sweep']:.1f} s vs "
              f"{mean['eval']:.1f} s); outcomes identical in every run: {summary['same_outcomes']}")
    if resumed:
        print(f"resume: killed after {resumed['killed_after_episodes']} episodes ({resumed['killed_at_s']} s); "
              f"the rerun took {resumed['resume_wall_s']} s and ran {resumed['finished_episodes_run_again']} "
              "finished episodes again")
    write_stamped(args.out, {"benchmark": "sweep_overhead", "load_before": round(load_before, 2),
                             "load_after": round(os.getloadavg()[0], 2), "episodes": args.episodes,
                             "workers": args.workers, "runs": rows, "summary": summary, "resume": resumed}, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
