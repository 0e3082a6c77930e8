"""Serving several robots from one policy process: dynamic batching off vs on, and the openpi endpoint's overhead.

    .venv/bin/python -m benchmarks.serving_scale [--models checkpoints/cogact-demo cogact-small]
        [--clients 1 2 4 8] [--requests 6] [--rounds 2] [--batch-wait-ms 0 5] [--compiled] [--openpi-requests 300]
        [--eval-episodes 24 --eval-workers 2 4 --eval-batch-wait-ms 0 100] [--out docs/results/serving_scale.json]

1. **Scaling.** Per model, ``vlart serve`` processes with batching off (``--max-batch 1``) and on (``--max-batch``
   the largest client count), one for each ``--batch-wait-ms`` (with ``--compiled``, also a compiled one). For each
   client count n, n client threads (one ``PolicyClient``, one ZeroMQ session each) start together and send
   ``--requests`` 224x224 infers each, back to back, as robots in lockstep would. Throughput = requests / wall
   time; latency = each request's round trip (p50, p99); batch = the mean ``batch_size`` of the replies. The
   configurations are interleaved: every round runs each (n, mode) once, in rotating order.
2. **openpi endpoint.** One client, the tiny model, ``vlart serve --protocol openpi`` vs ``vlart serve`` (ZeroMQ),
   requests alternating between the two. Overhead = round trip - the policy server's ``server_total_ms`` (what the
   transport and, for openpi, the translation cost), p50 / p99 per path.
3. **Evaluation** (with ``--eval-episodes``): ``vlart eval`` of that many episodes of the spoon task with cogact-demo,
   ``--workers`` each of ``--eval-workers``, batching off (``--max-batch 1``) and on (``--max-batch`` = workers, one
   run per ``--eval-batch-wait-ms``): episodes per minute. Long; run one after the other for each worker count.
   The runs' folders go under ``runs/benchmarks/serving_scale/``.

Prints tables, writes JSON and a plot (throughput and p99 latency against clients) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evidence import REPO, RESULTS, RUNS, hub_offline, repo_relative, write_stamped
from benchmarks.serve_process import ServeProcess
from runtime.core.stats import percentile

OPENPI_MODEL = "cogact-tiny"
EVAL_MODEL = str(REPO / "checkpoints" / "cogact-demo")
INSTRUCTIONS = ("put the spoon on the towel", "put carrot on plate", "stack the green block on the yellow block",
                "put eggplant into yellow basket")


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(count)]


def run_clients(endpoint: str, clients: int, requests: int, images: list[np.ndarray]) -> dict[str, Any]:
    """``clients`` threads, each a client sending ``requests`` infers back to back, started together."""
    from bridge.client import PolicyClient

    start = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    batch_sizes: list[int] = []

    def robot(index: int) -> None:
        with PolicyClient(endpoint, timeout_s=600) as client:
            client.hello()
            start.wait()
            for k in range(requests):
                result = client.infer({"primary": images[(index + k) % len(images)]},
                                      INSTRUCTIONS[index % len(INSTRUCTIONS)], seed=k)
                latencies[index].append(result.round_trip_ms)
                batch_sizes.append(result.batch_size)

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    flat = [ms for per_client in latencies for ms in per_client]
    return {"requests": len(flat), "wall_s": wall, "latencies_ms": flat, "batch_sizes": batch_sizes}


def scaling(models: list[str], client_counts: list[int], requests: int, rounds: int,
            waits_ms: list[float], compiled: bool = False) -> list[dict]:
    images = frames(8)
    rows = []
    for model in models:
        servers = {"off": ServeProcess(model, "--bind", "tcp://127.0.0.1:*", "--max-batch", "1")}
        for wait in waits_ms:
            for compile_flag in ([], ["--compile"]) if compiled else ([],):
                name = f"on, wait {wait:g} ms" + (", compiled" if compile_flag else "")
                servers[name] = ServeProcess(model, "--bind", "tcp://127.0.0.1:*", "--max-batch",
                                             str(max(client_counts)), "--batch-wait-ms", str(wait), *compile_flag)
        names = list(servers)
        results: dict[tuple[int, str], list[dict]] = {}
        try:
            for round_index in range(rounds):
                for clients in client_counts:
                    shift = (round_index + clients) % len(names)
                    for mode in names[shift:] + names[:shift]:
                        run = run_clients(servers[mode].url, clients, requests, images)
                        results.setdefault((clients, mode), []).append(run)
                        print(f"  {model} round {round_index} clients {clients} batching {mode}: "
                              f"{run['requests'] / run['wall_s']:.2f} inferences/s", flush=True)
        finally:
            for server in servers.values():
                server.stop()
        for (clients, mode), runs in sorted(results.items(), key=lambda item: (item[0][0], names.index(item[0][1]))):
            latencies = [ms for run in runs for ms in run["latencies_ms"]]
            rows.append({
                "model": repo_relative(model), "clients": clients, "batching": mode,
                "throughput_per_s": round(sum(r["requests"] for r in runs) / sum(r["wall_s"] for r in runs), 3),
                "latency_p50_ms": round(percentile(latencies, 50), 3),
                "latency_p99_ms": round(percentile(latencies, 99), 3),
                "requests": len(latencies),
                "mean_batch": round(float(np.mean([b for run in runs for b in run["batch_sizes"]])), 2),
            })
    return rows


def openpi_overhead(requests: int) -> dict[str, Any]:
    """Round trip minus the policy server's own time, ZeroMQ vs the openpi endpoint, alternating requests."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from bridge.client import PolicyClient

    zmq_server = ServeProcess(OPENPI_MODEL, "--bind", "tcp://127.0.0.1:*")
    openpi_server = ServeProcess(OPENPI_MODEL, "--protocol", "openpi", "--bind", "ws://127.0.0.1:0")
    image = frames(1)[0]
    overhead: dict[str, list[float]] = {"zmq": [], "openpi": []}
    round_trip: dict[str, list[float]] = {"zmq": [], "openpi": []}
    try:
        openpi = WebsocketClientPolicy(openpi_server.url)
        with PolicyClient(zmq_server.url, timeout_s=60) as client:
            for k in range(requests + 20):
                result = client.infer({"primary": image}, INSTRUCTIONS[0], seed=k)
                started = time.perf_counter()
                reply = openpi.infer({"observation/image": image, "prompt": INSTRUCTIONS[0], "seed": k})
                openpi_ms = (time.perf_counter() - started) * 1e3
                if k < 20:  # warm-up
                    continue
                round_trip["zmq"].append(result.round_trip_ms)
                overhead["zmq"].append(result.round_trip_ms - result.server_timing["server_total_ms"])
                round_trip["openpi"].append(openpi_ms)
                overhead["openpi"].append(openpi_ms - reply["server_timing"]["server_total_ms"])
    finally:
        zmq_server.stop()
        openpi_server.stop()
    summary = {path: {"overhead_p50_ms": round(percentile(values, 50), 3),
                      "overhead_p99_ms": round(percentile(values, 99), 3),
                      "round_trip_p50_ms": round(percentile(round_trip[path], 50), 3),
                      "round_trip_p99_ms": round(percentile(round_trip[path], 99), 3)}
               for path, values in overhead.items()}
    summary["openpi_extra_p99_ms"] = round(summary["openpi"]["overhead_p99_ms"] - summary["zmq"]["overhead_p99_ms"], 3)
    summary["requests"] = requests
    return summary


def evaluation(episodes: int, worker_counts: list[int], waits_ms: list[float]) -> list[dict]:
    rows = []
    for workers in worker_counts:
        modes = [("off", 1, 0.0)] + [(f"on, wait {wait:g} ms", workers, wait) for wait in waits_ms]
        for mode, max_batch, wait in modes:
            out = RUNS / "serving_scale" / f"eval-w{workers}-b{max_batch}-w{wait:g}"
            command = [sys.executable, "-m", "runtime.app.cli", "eval", "--suite", "ms3_twin/widowx_spoon_on_towel",
                       "--model", EVAL_MODEL, "--episodes", str(episodes),
                       "--workers", str(workers), "--max-batch", str(max_batch), "--batch-wait-ms", str(wait),
                       "--no-video", "--out", str(out)]
            started = time.perf_counter()
            subprocess.run(command, check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            result = json.loads((out / "results.json").read_text())
            rows.append({"workers": workers, "batching": mode, "episodes": episodes, "wall_s": round(wall, 1),
                         "episodes_per_min": round(episodes / wall * 60, 2),
                         "eval_wall_time_s": result["wall_time_s"],
                         "success": sum(bool(e.get("success_final")) for e in result["episodes"])})
            print(f"  eval workers {workers} batching {mode}: {rows[-1]['episodes_per_min']} episodes/min",
                  flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({row["model"] for row in rows})
    figure, axes = plt.subplots(len(models), 2, figsize=(10, 3.6 * len(models)), squeeze=False)
    for model, (left, right) in zip(models, axes):
        modes = list(dict.fromkeys(row["batching"] for row in rows))
        for mode, style in zip(modes, ("o--", "s-", "^-", "v-", "d-")):
            picked = [row for row in rows if row["model"] == model and row["batching"] == mode]
            clients = [row["clients"] for row in picked]
            left.plot(clients, [row["throughput_per_s"] for row in picked], style, label=f"batching {mode}")
            right.plot(clients, [row["latency_p99_ms"] for row in picked], style, label=f"batching {mode}")
        left.set(title=f"{Path(model).name}: throughput", xlabel="concurrent clients", ylabel="inferences / s")
        right.set(title=f"{Path(model).name}: latency p99", xlabel="concurrent clients", ylabel="ms")
        for axis in (left, right):
            axis.grid(alpha=0.3)
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[EVAL_MODEL, "cogact-small"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--requests", type=int, default=6, help="infers per client per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-wait-ms", nargs="+", type=float, default=[0.0, 5.0],
                        help="one batching server per wait")
    parser.add_argument("--compiled", action="store_true",
                        help="also a compiled batching server (vlart serve --compile) per --batch-wait-ms")
    parser.add_argument("--openpi-requests", type=int, default=300, help="0: skip the openpi comparison")
    parser.add_argument("--eval-episodes", type=int, default=0, help="0: skip the evaluation runs")
    parser.add_argument("--eval-workers", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--eval-batch-wait-ms", nargs="+", type=float, default=[0.0, 100.0])
    parser.add_argument("--out", default=str(RESULTS / "serving_scale.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows = (scaling(args.models, args.clients, args.requests, args.rounds, args.batch_wait_ms, args.compiled)
            if args.models else [])
    openpi = openpi_overhead(args.openpi_requests) if args.openpi_requests else None
    eval_rows = (evaluation(args.eval_episodes, args.eval_workers, args.eval_batch_wait_ms) if args.eval_episodes
                 else [])

    if rows:
        print(f"\n{'model':<14} {'clients':>7} {'batching':>28} {'inf/s':>8} {'p50 ms':>9} {'p99 ms':>9} "
              f"{'x off':>6} {'batch':>6}")
        for row in rows:
            off = next(r for r in rows if r["model"] == row["model"] and r["clients"] == row["clients"]
                       and r["batching"] == "off")
            row["speedup_vs_off"] = round(row["throughput_per_s"] / off["throughput_per_s"], 2)
            print(f"{Path(row['model']).name:<14} {row['clients']:>7} {row['batching']:>28} "
                  f"{row['throughput_per_s']:>8.2f} {row['latency_p50_ms']:>9.1f} {row['latency_p99_ms']:>9.1f} "
                  f"{row['speedup_vs_off']:>6.2f} {row['mean_batch']:>6.2f}")
    if openpi:
        print(f"\nopenpi endpoint vs ZeroMQ, 1 client, tiny model, 224x224, {openpi['requests']} requests each:")
        for path in ("zmq", "openpi"):
            print(f"  {path:<7} overhead p50 {openpi[path]['overhead_p50_ms']:.3f} ms, "
                  f"p99 {openpi[path]['overhead_p99_ms']:.3f} ms "
                  f"(round trip p50 {openpi[path]['round_trip_p50_ms']:.1f})")
        print(f"  openpi extra at p99: {openpi['openpi_extra_p99_ms']:.3f} ms")
    for row in eval_rows:
        print(f"eval workers {row['workers']} batching {row['batching']}: {row['episodes_per_min']} episodes/min "
              f"(success {row['success']}/{row['episodes']})")

    models = [*args.models, *([OPENPI_MODEL] if openpi else []), *([EVAL_MODEL] if eval_rows else [])]
    report = {"benchmark": "serving_scale", "load_before": round(load_before, 2),
              "load_after": round(os.getloadavg()[0], 2), "batch_waits_ms": args.batch_wait_ms,
              "requests_per_client": args.requests, "rounds": args.rounds, "scaling": rows, "openpi": openpi,
              "evaluation": eval_rows}
    write_stamped(args.out, report, list(dict.fromkeys(models)))
    if rows:
        chart = Path(args.out).with_suffix(".png")
        plot(rows, chart)
        print(f"wrote {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
