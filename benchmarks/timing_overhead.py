"""What per-stage timing costs: wall-clock predict time of the tiny policy with ``runtime.timing`` stages, steps
and off, interleaved so the machine's noise hits all three alike. Prints a table and writes JSON.

    .venv/bin/python -m benchmarks.timing_overhead [--rounds 200] [--out docs/results/timing_overhead.json]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped

TINY = REPO / "configs" / "models" / "cogact-tiny.yaml"
MODES = ("off", "stages", "steps")


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "timing_overhead.json"))
    args = parser.parse_args()

    from envs.sample_frames import real_frame
    from policies.api.interface import Observation
    from policies.loading import load_policy

    policy = load_policy(TINY)
    obs = Observation(real_frame()[0], "put the carrot on the plate")
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    for round_ in range(args.rounds + 10):
        for mode in MODES:
            policy.config.runtime.timing = mode
            started = time.perf_counter()
            policy.predict_action(obs, seed=round_)
            if round_ >= 10:
                wall[mode].append((time.perf_counter() - started) * 1e3)
    base = float(np.median(wall["off"]))
    rows = {m: {"median_ms": round(float(np.median(v)), 4), "mean_ms": round(float(np.mean(v)), 4),
                "vs_off": round(float(np.median(v)) / base, 4)} for m, v in wall.items()}
    print(f"tiny predict wall time by timing mode ({args.rounds} interleaved rounds)")
    print(f"{'mode':<8}{'median ms':>11}{'mean ms':>10}{'vs off':>9}")
    for mode, row in rows.items():
        print(f"{mode:<8}{row['median_ms']:>11.3f}{row['mean_ms']:>10.3f}{row['vs_off']:>9.3f}")
    write_stamped(args.out, {"benchmark": "timing_overhead", "rounds": args.rounds, "results": rows}, str(TINY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
