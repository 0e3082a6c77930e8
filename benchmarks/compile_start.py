"""Start time of ``vlart serve``: eager, compiled with an empty compile cache (cold), compiled from the cache (warm).

    .venv/bin/python -m benchmarks.compile_start [--model checkpoints/cogact-demo] [--preset baseline] [--rounds 2]
        [--out docs/results/compile_start.json]

Each start is a new ``vlart serve`` process (two warm-up predictions, as by default), timed from its spawn to its
"ready" line, then stopped. A round starts the three in turn, so that the machine's drift hits all alike. Cold: new,
empty caches (``XDG_CACHE_HOME``, where vlart keeps its compiled packages, and ``TORCHINDUCTOR_CACHE_DIR``, where
inductor keeps its kernels); warm: ones that an uncounted compiled start filled first. A compiled server compiles and
checks everything it will need before it says ready (``policies.compilation``), so the time to ready is the whole
cost of compiling.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped
from benchmarks.serve_process import ServeProcess

MODES = ("eager", "compiled, cold cache", "compiled, warm cache")


CACHE_VARIABLES = {"XDG_CACHE_HOME": "", "TORCHINDUCTOR_CACHE_DIR": "inductor"}  # variable -> folder in the cache


def start_seconds(model: str, preset: str, compiled: bool, cache_dir: str) -> float:
    """Seconds from spawning ``vlart serve`` to its "ready" line, with compiled code cached under ``cache_dir``."""
    previous = {variable: os.environ.get(variable) for variable in CACHE_VARIABLES}
    os.environ.update({variable: os.path.join(cache_dir, folder) for variable, folder in CACHE_VARIABLES.items()})
    try:
        start = time.perf_counter()
        server = ServeProcess(model, "--bind", "tcp://127.0.0.1:*", "--preset", preset, *(["--compile"] * compiled))
        seconds = time.perf_counter() - start
        server.stop()
    finally:
        for variable, value in previous.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
    return seconds


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "cogact-demo"))
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "compile_start.json"))
    args = parser.parse_args()

    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="vlart-compile-cache-") as root:
        warm = os.path.join(root, "warm")
        start_seconds(args.model, args.preset, True, warm)  # fills the warm cache; not counted
        for index in range(args.rounds):
            for mode in MODES:
                cache = warm if mode != "compiled, cold cache" else os.path.join(root, f"cold-{index}")
                times[mode].append(round(start_seconds(args.model, args.preset, mode != "eager", cache), 2))
                print(f"round {index} {mode}: ready after {times[mode][-1]:.1f} s", flush=True)
    rows = [{"mode": mode, "seconds": times[mode], "median_s": round(float(np.median(times[mode])), 2)}
            for mode in MODES]
    eager = rows[0]["median_s"]
    print(f"\n{'vlart serve':<24}{'median s':>10}{'x eager':>9}  each start")
    for row in rows:
        row["ratio_vs_eager"] = round(row["median_s"] / eager, 2)
        print(f"{row['mode']:<24}{row['median_s']:>10.1f}{row['ratio_vs_eager']:>9.2f}  {row['seconds']}")
    write_stamped(args.out, {"benchmark": "compile_start", "preset": args.preset, "rounds": args.rounds,
                             "starts": rows}, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
