"""Predict latency per model config, per stage: prints a table and writes JSON.

    .venv/bin/python -m benchmarks.predict_latency [--models tiny small] [--steps 10] [--warmup 2]
        [--threads N] [--out docs/results/predict_latency.json]

Each step is one ``predict_action`` on the sample Bridge frame (640x480), seeds 0..steps-1, the ensemble reset each
step so every step does the same work. Times are wall-clock milliseconds of the policy's own stage timer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped
from runtime.core.stats import percentile

STAGES = ["preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total"]


def config_path(name: str) -> Path:
    return REPO / "configs" / "models" / f"cogact-{name}.yaml"


def bench_model(name: str, steps: int, warmup: int, device: str | None) -> dict:
    from envs.sample_frames import sample_frame
    from policies.api.interface import Observation
    from policies.loading import load_policy

    t0 = time.perf_counter()
    policy = load_policy(config_path(name), device=device)
    build_s = time.perf_counter() - t0
    obs = Observation(sample_frame(), "put the carrot on the plate")
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for step in range(warmup + steps):
        policy.reset()
        out = policy.predict_action(obs, seed=step)
        if step >= warmup:
            for stage in STAGES:
                per_stage[stage].append(out.timings_ms.get(stage, 0.0))
    counts = policy.parameter_counts()
    return {
        "model": f"cogact-{name}",
        "parameters_m": round(counts["total"] / 1e6, 2),
        "build_s": round(build_s, 3),
        "steps": steps,
        "stage_mean_ms": {s: round(statistics.fmean(v), 3) for s, v in per_stage.items()},
        "total_p50_ms": round(percentile(per_stage["total"], 50), 3),
        "total_p95_ms": round(percentile(per_stage["total"], 95), 3),
        "llm_share": round(statistics.fmean(per_stage["llm"]) / statistics.fmean(per_stage["total"]), 3),
    }


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(RESULTS / "predict_latency.json"))
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench_model(name, args.steps, args.warmup, args.device) for name in args.models]
    header = f"{'model':<14}{'params M':>10}" + "".join(f"{s:>13}" for s in STAGES) + f"{'p95':>10}{'llm %':>8}"
    print(f"predict latency, mean ms over {args.steps} steps ({args.warmup} warm-up), torch threads "
          f"{torch.get_num_threads()}")
    print(header)
    for row in rows:
        print(f"{row['model']:<14}{row['parameters_m']:>10.1f}"
              + "".join(f"{row['stage_mean_ms'][s]:>13.1f}" for s in STAGES)
              + f"{row['total_p95_ms']:>10.1f}{100 * row['llm_share']:>7.0f}%")
    write_stamped(args.out, {"benchmark": "predict_latency", "torch_threads": torch.get_num_threads(), "results": rows},
                  [str(config_path(name)) for name in args.models])
    return 0


if __name__ == "__main__":
    sys.exit(main())
