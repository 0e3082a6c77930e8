"""What inference latency costs on a robot, and what each chunk-execution strategy and EfficientVLA buy back.

    MS_ASSET_DIR=... .venv/bin/python -m benchmarks.realtime [--model checkpoints/cogact-demo]
        [--tasks ms3_twin/widowx_spoon_on_towel ms3_twin/widowx_carrot_on_plate] [--delays 2 1 4 0]
        [--strategies hold ensemble blend rtc rtc-hard rtc-x0] [--accel hold rtc-hard] [--wallclock hold ensemble]
        [--workers 2] [--episodes N] [--grid official|heldout] [--out docs/results/realtime]
        [--runs runs/benchmarks/realtime]
        [--report-only]

Every cell is one ``vlart eval --timing delay`` run on the official grid (24 episodes per task, the same seeds in
every cell) with the policy in the simulator workers (``--via inproc``; through ``vlart serve`` for the original
SimplerEnv's tasks, ``simplerenv/widowx_*``): an inference started at tick t delivers its chunk at tick t + d, for d
= 0 (lockstep latency), 1, 2, 4 ticks at the task's 5 Hz (latency d x 200 ms), under each execution (``rtc`` by
RePaint inpainting with RTC's soft mask; ``rtc-hard``: only the frozen rows, ``--rtc-soft-rows 0``; ``rtc-x0``:
guidance through the predicted x0, ``sampler.continuation_method=x0_guidance``; ``rtc-repaint``: the hard mask by
RePaint, for a checkpoint whose own method is conditioning (``vlart train --max-committed-rows``); ``hold-sS``:
hold, asking for a chunk only every S ticks, the open-loop horizon). ``--accel`` adds "what acceleration buys on a
robot" with the EfficientVLA paper's A40 latencies: the baseline at 234 ms (d = 2) is a cell of the grid;
``efficientvla-l28-t112`` at 121 ms (d = 1) is added for the executions named. ``--wallclock`` adds one ``--timing
wallclock`` run per task and execution (real time, this CPU's latency, through ``vlart serve``); run it alone on the
machine, as its latency is whatever the machine gives.

``--grid heldout`` runs the cells on the held-out placements instead (24 per task, off SIMPLER's grid; defaults
``docs/results/realtime_heldout`` and ``runs/benchmarks/realtime_heldout``): the data that chooses a setting, such as
RTC's mask, before the official grid measures it.

Each cell's eval run (results, traces) goes under ``--runs``; cells already there are reused (the run resumes where
it stopped). ``--out`` gets what is built from them: the table (``realtime.md``), the JSON (``realtime.json``), the
plot (``realtime.png``: success vs delay, one line per strategy, 95 % Wilson intervals) and one episode's commanded
actions per task (``traces_TASK.png``); ``--report-only`` only rebuilds those. Delay mode depends on d only, never on
the machine's load, so cells may run next to anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.evidence import REPO, RESULTS, RUNS, repo_relative, write_stamped

TASKS = ["ms3_twin/widowx_spoon_on_towel", "ms3_twin/widowx_carrot_on_plate"]
STRATEGIES = ["hold", "ensemble", "blend", "rtc"]
# Each execution compared: the strategies, and rtc with RTC's hard mask (only the d frozen rows guide the new chunk)
# or with the other continuation method (guidance through the predicted x0).
EXECUTIONS = {
    **{strategy: ["--execution", strategy] for strategy in STRATEGIES},
    "rtc": ["--execution", "rtc", "--rtc-soft-rows", "all"],  # RTC's soft mask (the cells' name predates the default)
    "rtc-hard": ["--execution", "rtc", "--rtc-soft-rows", "0"],
    "rtc-x0": ["--execution", "rtc", "--set", "sampler.continuation_method=x0_guidance"],
    # On a checkpoint trained with committed rows (whose own method is conditioning): inference-time RTC instead
    "rtc-repaint": ["--execution", "rtc", "--rtc-soft-rows", "0", "--set", "sampler.continuation_method=repaint"],
    # The open-loop horizon: s rows of every chunk run before the next is asked for (hold at d = 0 is s = 1)
    **{f"hold-s{s}": ["--execution", "hold", "--replan-every", str(s)] for s in (2, 4, 8)},
}
LABELS = {"rtc": "rtc soft mask", "rtc-hard": "rtc hard mask (default)", "rtc-x0": "rtc x0 guidance",
          "rtc-repaint": "rtc hard mask by RePaint",
          **{f"hold-s{s}": f"hold, a chunk every {s} ticks" for s in (2, 4, 8)}}
PERIOD_MS = 200.0  # the Bridge tasks' 5 Hz
PAPER_LATENCY_MS = {"baseline": 234.0, "efficientvla-l28-t112": 121.0}  # CogACT-Base on an A40 (EfficientVLA paper)
PLAN = RUNS / "success_by_preset" / "plan.json"  # the demo model's calibration plan (success_by_preset.py's)


def via(task: str) -> str:
    """In the simulator workers, except for the original SimplerEnv's tasks, whose interpreter has no torch."""
    return "zmq" if task.startswith("simplerenv/") else "inproc"


def cell_dir(runs: Path, task: str, name: str) -> Path:
    return runs / task.replace("/", "__") / name


def run_cell(args: argparse.Namespace, task: str, name: str, extra: list[str]) -> Optional[Path]:
    run_dir = cell_dir(args.runs, task, name)
    if (run_dir / "results.json").exists():
        return run_dir
    if args.report_only:
        return None
    command = [sys.executable, "-m", "runtime.app.cli", "eval", "--suite", task, "--model", args.model,
               "--workers", str(args.workers), "--grid", args.grid, "--no-video", "--out", str(run_dir), *extra]
    if args.episodes is not None:
        command += ["--episodes", str(args.episodes)]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    print(f"  {name} on {task}: {time.perf_counter() - started:.0f} s", flush=True)
    return run_dir


def summarize(run_dir: Path, task: str, **labels: Any) -> dict[str, Any]:
    result = json.loads((run_dir / "results.json").read_text())
    entry = result["tasks"][task]
    controls = [e["control"] for e in result["episodes"] if e.get("control")]
    row = {**labels, "task": task, "episodes": entry["episodes"], "failed_runs": entry["failed_runs"],
           "success_final": entry["success_final"], "success_any": entry["success_any"],
           "grasped": entry.get("grasped"), "timing": result["timing"],
           "results": repo_relative(run_dir / "results.json")}
    traces = [run_dir / "traces" / Path(e["trace"]).name for e in result["episodes"] if e.get("trace")]
    steps = [np.diff(np.load(trace)["actions"][:, :3], axis=0) for trace in traces]
    if steps:  # how much the commanded translation changes from one tick to the next, m per tick
        row["action_change_mm_mean"] = round(1e3 * float(np.mean([np.linalg.norm(s, axis=1).mean() for s in steps])), 3)
    if controls:
        row["stale_ratio_mean"] = round(sum(c["stale_ratio"] for c in controls) / len(controls), 4)
        row["inferences_mean"] = round(sum(c["inferences"] for c in controls) / len(controls), 2)
        row["inference_delay_ticks_p50_mean"] = round(
            sum(c["inference_delay_ticks_p50"] for c in controls) / len(controls), 2)
        if result["timing"]["mode"] == "wallclock":
            for key in ("effective_rate_hz", "jitter_p99_ms", "inference_latency_p50_ms"):
                row[f"{key}_mean"] = round(sum(c[key] for c in controls) / len(controls), 3)
    return row


def cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run (or reuse) every requested cell, in the order asked for."""
    rows = []
    for d in args.delays:
        for execution in args.strategies:
            for task in args.tasks:
                run_dir = run_cell(args, task, f"d{d}-{execution}", [
                    "--via", via(task), "--timing", "delay", "--latency-ms", f"{d * PERIOD_MS:g}",
                    *EXECUTIONS[execution]])
                if run_dir is not None:
                    rows.append(summarize(run_dir, task, preset="baseline", delay_ticks=d, execution=execution))
    latency = PAPER_LATENCY_MS["efficientvla-l28-t112"]
    for execution in args.accel:
        for task in args.tasks:
            run_dir = run_cell(args, task, f"l28t112-{latency:g}ms-{execution}", [
                "--via", via(task), "--preset", "efficientvla-l28-t112", "--plan", str(PLAN), "--timing", "delay",
                "--latency-ms", f"{latency:g}", *EXECUTIONS[execution]])
            if run_dir is not None:
                rows.append(summarize(run_dir, task, preset="efficientvla-l28-t112", latency_ms=latency,
                                      delay_ticks=1, execution=execution))
    for execution in args.wallclock:
        for task in args.tasks:
            run_dir = run_cell(args, task, f"wallclock-{execution}", ["--via", "zmq", "--timing", "wallclock",
                                                                      *EXECUTIONS[execution], "--workers", "1"])
            if run_dir is not None:
                rows.append(summarize(run_dir, task, preset="baseline", execution=execution, timing="wallclock"))
    return rows


def percent(rate: dict[str, Any], episodes: int) -> str:
    low, high = rate["ci95"]
    return f"{rate['successes']:>2}/{episodes} {100 * rate['rate']:5.1f}% [{100 * low:4.1f}, {100 * high:5.1f}]"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'task':<32}{'preset':<23}{'d':>3}{'execution':>10}{'success (final)':>31}{'grasped':>31}"
             f"{'stale':>7}{'change':>8}"]
    for row in rows:
        d = row.get("delay_ticks", "wc")
        grasped = percent(row["grasped"], row["episodes"]) if row.get("grasped") else "-"
        lines.append(f"{row['task']:<32}{row['preset']:<23}{d!s:>3}{row['execution']:>10}"
                     f"{percent(row['success_final'], row['episodes']):>31}{grasped:>31}"
                     f"{row.get('stale_ratio_mean', 0):>7.2f}{row.get('action_change_mm_mean', 0):>8.2f}")
    lines.append("d: ticks between an observation and its chunk (delay mode; wc = wallclock); stale: share of ticks "
                 "that held; change: mean change of the commanded translation from one tick to the next (mm); "
                 "brackets: 95% Wilson interval over the task's episodes")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    """Success (final) of the baseline preset per execution (rows) and delay (columns), one column group per task."""
    grid = [r for r in rows if r["preset"] == "baseline" and "delay_ticks" in r]
    tasks = list(dict.fromkeys(r["task"] for r in grid))
    delays = sorted({r["delay_ticks"] for r in grid})
    header = " | ".join(f"{task.split('_', 1)[-1].replace('_', ' ')} d={d}" for task in tasks for d in delays)
    lines = [f"| execution | {header} |", "|---|" + "---|" * (len(tasks) * len(delays))]
    for execution in [e for e in EXECUTIONS if any(r["execution"] == e for r in grid)]:
        cells = []
        for task in tasks:
            for d in delays:
                row = next((r for r in grid if (r["task"], r["delay_ticks"], r["execution"]) == (task, d, execution)),
                           None)
                cells.append(f"{row['success_final']['successes']}/{row['episodes']}" if row else "")
        lines.append(f"| {execution} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for offset, strategy in enumerate(EXECUTIONS):
            points = sorted((r["delay_ticks"], r["success_final"]) for r in rows if r["task"] == task
                            and r["preset"] == "baseline" and r["execution"] == strategy and "delay_ticks" in r)
            if not points:
                continue
            xs = [d + 0.06 * (offset - 2.5) for d, _ in points]  # side by side, so the intervals stay readable
            ys = [100 * s["rate"] for _, s in points]
            errors = [[100 * (s["rate"] - s["ci95"][0]) for _, s in points],
                      [100 * (s["ci95"][1] - s["rate"]) for _, s in points]]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=LABELS.get(strategy, strategy))
        lockstep = next((r["success_final"] for r in rows if r["task"] == task and r["preset"] == "baseline"
                         and r.get("delay_ticks") == 0 and r["execution"] == "ensemble"), None)
        if lockstep is not None:  # d = 0 with CogACT's ensemble is SIMPLER's lockstep protocol, bit for bit
            ax.axhline(100 * lockstep["rate"], color="grey", linestyle="--", linewidth=1, label="lockstep")
        for row in rows:
            if row["task"] == task and row["preset"] != "baseline":
                s = row["success_final"]
                ax.scatter([row["delay_ticks"] + 0.3], [100 * s["rate"]], marker="*", s=80,
                           label=f"l28-t112 {row['execution']}")
        ax.set_title(task.split("/")[-1])
        ax.set_xlabel("inference delay d (ticks at 5 Hz; 200 ms each)")
        ax.set_ylabel("success (final step), %")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_traces(runs: Path, task: str, d: int, executions: list[str], path: Path) -> Optional[str]:
    """The commanded translation over one episode under each execution at delay d: the first episode that ``hold``
    solves and ``rtc`` does not (else the first episode). Returns a description, None without the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {}
    for execution in executions:
        run_dir = cell_dir(runs, task, f"d{d}-{execution}")
        if (run_dir / "results.json").exists():
            results[execution] = (run_dir, json.loads((run_dir / "results.json").read_text())["episodes"])
    if "hold" not in results or "rtc" not in results:
        return None
    hold, rtc = results["hold"][1], results["rtc"][1]
    episode = next((i for i, (h, r) in enumerate(zip(hold, rtc)) if h["success_final"] and not r["success_final"]), 0)
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for execution, (run_dir, episodes) in results.items():
        record = episodes[episode]
        actions = np.load(run_dir / "traces" / Path(record["trace"]).name)["actions"]
        label = f"{execution} ({'success' if record['success_final'] else 'failure'})"
        for axis, name, values in zip(axes, ("dx", "dy", "dz"), actions[:, :3].T):
            axis.plot(1e3 * values, label=label)
            axis.set_ylabel(f"{name} (mm)")
    axes[0].set_title(f"{task.split('/')[-1]}, episode {episode}, d = {d}: commanded translation per tick")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("tick (5 Hz)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"{task} episode {episode} at d = {d}: {', '.join(results)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "cogact-demo"))
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--delays", nargs="*", type=int, default=[2, 1, 4, 0])
    parser.add_argument("--strategies", nargs="*", default=STRATEGIES, choices=list(EXECUTIONS),
                        help="executions to run at each delay (rtc-hard: --rtc-soft-rows 0; rtc-x0: x0 guidance)")
    parser.add_argument("--accel", nargs="*", default=[], choices=list(EXECUTIONS),
                        help="executions of efficientvla-l28-t112 at the paper's 121 ms (d = 1)")
    parser.add_argument("--wallclock", nargs="*", default=[], choices=list(EXECUTIONS),
                        help="executions of one real-time run per task (run it alone on the machine)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes per task and cell (default: the grid's 24; compare settings on >= 96 in all)")
    parser.add_argument("--grid", choices=["official", "heldout"], default="official",
                        help="official: SIMPLER's grid (the test set); heldout: placements off it (for choosing)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the table, JSON and plots (default docs/results/realtime, or realtime_heldout)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="the cells' eval runs (default runs/benchmarks/realtime, or realtime_heldout)")
    parser.add_argument("--report-only", action="store_true", help="only tabulate and plot the cells on disk")
    args = parser.parse_args()
    if any(d < 0 for d in args.delays):
        parser.error("--delays: expected ticks >= 0")
    name = "realtime" if args.grid == "official" else "realtime_heldout"
    args.out = args.out or RESULTS / name
    args.runs = args.runs or RUNS / name
    rows = cells(args)
    if not rows:
        print("no cells on disk yet")
        return 1
    print(table(rows))
    write_stamped(args.out / "realtime.json", {
        "benchmark": "realtime", "grid": args.grid, "period_ms": PERIOD_MS, "paper_latency_ms": PAPER_LATENCY_MS,
        "rows": rows}, args.model)
    plot(rows, args.out / "realtime.png")
    (args.out / "realtime.md").write_text(markdown(rows) + "\n")
    for task in args.tasks:
        traced = plot_traces(args.runs, task, 2, list(EXECUTIONS), args.out / f"traces_{task.split('/')[-1]}.png")
        if traced:
            print(f"traces: {traced}")
    print(f"wrote {args.out / 'realtime.png'} and {args.out / 'realtime.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
