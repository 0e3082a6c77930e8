"""The GPU check, prepared to run in one call on a lent GPU machine (``benchmarks/gpu_check.sh`` runs it):

    python3 -m benchmarks.gpu_check [--device cuda|cpu] [--model configs/models/cogact-base.yaml]
        [--presets baseline efficientvla] [--steps 20] [--warmup 3] [--clients 8] [--requests 4]
        [--budget-s 420] [--out docs/results/gpu_check/gpu_check.json]

1. **Profiles**: per preset, one interleaved ``vlart profile --compile both`` run (eager and compiled, round robin,
   same frame and seeds; on CUDA compiled means CUDA graphs, ``reduce-overhead``) in ``runtime.dtype`` bfloat16 on a
   GPU: per-stage p50/p99 from CUDA events, the roofline, the compiled speedup. Presets run one after the other, so
   only two copies of the model are in memory at once (the CogACT-Base shape is 15 GB each in bfloat16).
2. **Timer check**: the stage timers' total (CUDA events) against wall time around each predict, the device
   synchronised before and after: the median ratio and whether it is within 10 %.
3. **Serving**: ``vlart serve`` unbatched and eager (``--max-batch 1``) against batched and compiled (``--max-batch
   CLIENTS --compile``), CLIENTS robots sending REQUESTS infers each: throughput and p50/p99 round trip.

Without a GPU (``--device cpu``, the default when torch sees none) it is the CPU fallback CI runs: the tiny model in
float32 with a few steps, the same code path. Every part runs only while ``--budget-s`` lasts (a part that would
start after it is recorded as skipped), and the JSON is written, stamped, after each part, so a run that is cut off
still leaves what it measured. The base shape has no tokenizer in the repository; it uses ``vlart-tiny`` (a prompt
about 13 text tokens shorter than LLaMA-2's).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.evidence import REPO, RESULTS, hub_offline, repo_relative, write_stamped

GPU_MODEL = "configs/models/cogact-base.yaml"
CPU_MODEL = "configs/models/cogact-tiny.yaml"
TIMER_TOLERANCE = 0.10


def defaults(device: str) -> dict[str, Any]:
    """What a run on ``device`` measures unless told otherwise."""
    if device.startswith("cuda"):
        return {"model": GPU_MODEL, "dtype": "bfloat16", "overrides": ["llm.tokenizer=vlart-tiny"], "steps": 20,
                "warmup": 3}
    return {"model": CPU_MODEL, "dtype": "float32", "overrides": [], "steps": 3, "warmup": 1}


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def profiles(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One interleaved eager-and-compiled profile per preset: each run's p50 and p99 by stage, the speedups."""
    from runtime.app.profile import profile_policy

    rows = []
    for preset in args.presets:
        result = profile_policy(args.model, [preset], steps=args.steps, warmup=args.warmup, overrides=args.overrides,
                                device=args.device, compile_mode="both")
        for run in result["runs"]:
            rows.append({"label": run["label"], "preset": preset, "compiled": run["compiled"],
                         "compiled_parts": (run["compilation"] or {}).get("parts", []),
                         "stages_p50_ms": {stage: s["p50_ms"] for stage, s in run["stages"].items()},
                         "total_p99_ms": run["stages"]["total"]["p99_ms"], "roofline": run["roofline"],
                         "speedup_vs_eager": result["speedup_vs_first"].get(run["label"])})
        free_memory()
    return rows


def timer_check(args: argparse.Namespace) -> dict[str, Any]:
    """The stage timers' total against wall time around each predict (eager baseline)."""
    import torch

    from envs.sample_frames import real_frame
    from policies.api.interface import Observation
    from runtime.app.policy_loader import load_policy_with_preset

    policy = load_policy_with_preset(args.model, "baseline", device=args.device, overrides=args.overrides)
    cuda = policy.device.type == "cuda"
    obs = Observation(real_frame()[0], "put the spoon on the towel")
    ratios, walls = [], []
    for seed in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        output = policy.predict_action(obs, seed=seed)
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - started) * 1e3
        if seed >= args.warmup:
            walls.append(wall_ms)
            ratios.append(output.timings_ms["total"] / wall_ms)
    del policy
    free_memory()
    ratio = statistics.median(ratios)
    return {"timers": "CUDA events" if cuda else "monotonic clock", "steps": len(ratios),
            "wall_p50_ms": round(statistics.median(walls), 3), "timer_over_wall_median": round(ratio, 4),
            "timer_over_wall_min": round(min(ratios), 4), "timer_over_wall_max": round(max(ratios), 4),
            "within_tolerance": abs(ratio - 1.0) <= TIMER_TOLERANCE, "tolerance": TIMER_TOLERANCE}


def serving(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Unbatched eager against batched compiled ``vlart serve``, ``args.clients`` robots, interleaved twice."""
    from benchmarks.serve_process import ServeProcess
    from benchmarks.serving_scale import frames, run_clients
    from runtime.core.stats import percentile

    common = ["--bind", "tcp://127.0.0.1:*", "--device", args.device,
              *[arg for override in args.overrides for arg in ("--set", override)]]
    modes = {"unbatched, eager": ["--max-batch", "1"],
             "batched, compiled": ["--max-batch", str(args.clients), "--compile"]}
    servers: dict[str, ServeProcess] = {}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    images = frames(8)
    try:
        for mode, extra in modes.items():
            servers[mode] = ServeProcess(args.model, *common, *extra, ready_timeout_s=args.budget_s)
        for round_index in range(2):
            for mode in (list(modes) if round_index == 0 else list(modes)[::-1]):
                runs[mode].append(run_clients(servers[mode].url, args.clients, args.requests, images))
    finally:
        for server in servers.values():
            server.stop()
    rows = []
    for mode, done in runs.items():
        latencies = [ms for run in done for ms in run["latencies_ms"]]
        rows.append({"mode": mode, "clients": args.clients, "requests": len(latencies),
                     "throughput_per_s": round(sum(r["requests"] for r in done) / sum(r["wall_s"] for r in done), 3),
                     "latency_p50_ms": round(percentile(latencies, 50), 3),
                     "latency_p99_ms": round(percentile(latencies, 99), 3),
                     "mean_batch": round(statistics.mean(b for r in done for b in r["batch_sizes"]), 2)})
    rows[1]["throughput_vs_unbatched_eager"] = round(rows[1]["throughput_per_s"] / rows[0]["throughput_per_s"], 3)
    return rows


PARTS: dict[str, Callable[[argparse.Namespace], Any]] = {"profiles": profiles, "timer_check": timer_check,
                                                         "serving": serving}


def run_parts(args: argparse.Namespace, write: Callable[[dict[str, Any]], None],
              clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Each part in turn while the budget lasts; the result written after each."""
    started = clock()
    result: dict[str, Any] = {"benchmark": "gpu_check", "device": args.device, "dtype": args.dtype,
                              "presets": args.presets, "budget_s": args.budget_s, "parts": {}}
    for name, part in PARTS.items():
        elapsed = clock() - started
        if elapsed >= args.budget_s:
            result["parts"][name] = {"skipped": f"the budget of {args.budget_s:g} s was spent ({elapsed:.0f} s)"}
        else:
            part_started = clock()
            result["parts"][name] = part(args)
            result.setdefault("seconds", {})[name] = round(clock() - part_started, 1)
        write(result)
    return result


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help=f"default {GPU_MODEL} on a GPU, {CPU_MODEL} on the CPU")
    parser.add_argument("--presets", nargs="+", default=["baseline", "efficientvla"])
    parser.add_argument("--steps", type=int, default=None, help="counted predicts per profile (GPU 20, CPU 3)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up predicts (GPU 3, CPU 1)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4, help="infers per client and round")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no part starts after this many seconds")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check" / "gpu_check.json")
    args = parser.parse_args(argv)
    chosen = defaults(args.device)
    args.model = args.model or str(REPO / chosen["model"])
    args.dtype = chosen["dtype"]
    args.overrides = [f"runtime.dtype={args.dtype}", *chosen["overrides"]]
    args.steps = args.steps or chosen["steps"]
    args.warmup = chosen["warmup"] if args.warmup is None else args.warmup
    return args


def main(argv: Optional[list[str]] = None) -> int:
    hub_offline()
    args = parse(argv)
    result = run_parts(args, lambda result: write_stamped(args.out, result, args.model))
    print(f"wrote {repo_relative(args.out)}: " + ", ".join(
        f"{name} {'skipped' if isinstance(part, dict) and 'skipped' in part else 'done'}"
        for name, part in result["parts"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
