"""Round-trip cost of the vlart bridge on loopback: prints a table and writes JSON.

    .venv/bin/python -m benchmarks.bridge_overhead [--requests 500] [--warmup 50]
        [--out docs/results/bridge_overhead.json]

For a 224x224 and a 640x480 frame it measures, with the server in its own process:
- ``raw REQ/REP``: a bare pyzmq REQ/REP echo of the same msgpack-encoded observation (the floor: what the transport
  costs with nothing of vlart's around it);
- ``vlart no-op``: the vlart server and client around a policy that returns a zero chunk at once;
- ``vlart tiny``: the same around the tiny CogACT policy.
Transport overhead = client round trip - the server's ``server_total_ms`` (receipt to reply encoding).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped
from runtime.core.stats import percentiles

TINY = REPO / "configs" / "models" / "cogact-tiny.yaml"
SIZES = {"224x224": (224, 224), "640x480": (480, 640)}
QUANTILES = (50, 95, 99)


class NoOpPolicy:
    """Answers every observation with a zero chunk immediately: isolates what the bridge costs."""

    def __init__(self) -> None:
        from policies.api.interface import Conventions

        self.conventions = Conventions(
            action_dim=7, action_names=("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
            rotation="euler_xyz_delta", gripper="absolute: 1 = open, 0 = close", chunk_length=16,
            control_rate_hz=5.0, image_size=224, image_keys=("primary",), unnorm_key=None, ensemble_horizon=None,
        )
        self.metadata = {"name": "no-op", "family": "benchmark"}

    def session(self) -> "NoOpPolicy":
        return self

    def reset(self) -> None:
        pass

    def predict_action(self, obs, seed=None):
        from policies.api.interface import PolicyOutput

        chunk = np.zeros((16, 7), np.float32)
        return PolicyOutput(actions=chunk, normalized_actions=chunk, action=chunk[0], timings_ms={})


def serve(kind: str, port_queue: "mp.Queue", stop: "mp.Event") -> None:
    import zmq

    if kind == "raw":
        sock = zmq.Context.instance().socket(zmq.REP)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        port_queue.put(f"tcp://127.0.0.1:{port}")
        from bridge.codec import decode, encode

        reply = encode({"actions": np.zeros((16, 7), np.float32)})
        while not stop.is_set():
            if sock.poll(100):
                decode(sock.recv())
                sock.send(reply)
        return
    from bridge.server.policy_server import PolicyServer

    if kind == "noop":
        policy = NoOpPolicy()
    else:
        from policies.loading import load_policy

        policy = load_policy(TINY)
    server = PolicyServer(policy, bind="tcp://127.0.0.1:*").start()
    port_queue.put(server.endpoint)
    stop.wait()
    server.stop()


def measure(kind: str, endpoint: str, frame: np.ndarray, requests: int, warmup: int) -> dict:
    import zmq

    if kind == "raw":
        from bridge.codec import decode, encode

        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.connect(endpoint)
        rtts = []
        for i in range(warmup + requests):
            started = time.perf_counter()
            sock.send(encode({"images": {"primary": frame}, "instruction": "put the carrot on the plate"}))
            decode(sock.recv())
            if i >= warmup:
                rtts.append((time.perf_counter() - started) * 1e3)
        sock.close()
        return {"round_trip_ms": percentiles(rtts, QUANTILES, 4), "transport_ms": percentiles(rtts, QUANTILES, 4)}
    from bridge.client import PolicyClient

    rtts, overheads, server_ms = [], [], []
    with PolicyClient(endpoint, timeout_s=30) as client:
        client.hello()
        for i in range(warmup + requests):
            result = client.infer({"primary": frame}, "put the carrot on the plate", seed=i)
            if i >= warmup:
                rtts.append(result.round_trip_ms)
                server_ms.append(result.server_timing["server_total_ms"])
                overheads.append(result.round_trip_ms - result.server_timing["server_total_ms"])
    return {"round_trip_ms": percentiles(rtts, QUANTILES, 4),
            "server_total_ms": percentiles(server_ms, QUANTILES, 4),
            "transport_ms": percentiles(overheads, QUANTILES, 4)}


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", default=str(RESULTS / "bridge_overhead.json"))
    args = parser.parse_args()

    rows = []
    context = mp.get_context("spawn")
    for kind, label in (("raw", "raw REQ/REP"), ("noop", "vlart no-op"), ("tiny", "vlart tiny")):
        port_queue, stop = context.Queue(), context.Event()
        process = context.Process(target=serve, args=(kind, port_queue, stop), daemon=True)
        process.start()
        endpoint = port_queue.get(timeout=120)
        try:
            for size_name, (h, w) in SIZES.items():
                frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
                requests = args.requests if kind != "tiny" else max(50, args.requests // 5)
                result = measure(kind, endpoint, frame, requests, args.warmup)
                rows.append({"server": label, "image": size_name, "requests": requests, **result})
        finally:
            stop.set()
            process.join(30)

    print(f"bridge round trip on loopback, ms ({args.warmup} warm-up requests; server in its own process)")
    print(f"{'server':<14}{'image':<10}{'n':>6}{'rtt p50':>10}{'rtt p95':>10}{'rtt p99':>10}"
          f"{'server p50':>12}{'transport p50':>15}{'p95':>8}{'p99':>8}")
    for row in rows:
        rtt, tr = row["round_trip_ms"], row["transport_ms"]
        srv = row.get("server_total_ms", {}).get("p50", 0.0)
        print(f"{row['server']:<14}{row['image']:<10}{row['requests']:>6}{rtt['p50']:>10.3f}{rtt['p95']:>10.3f}"
              f"{rtt['p99']:>10.3f}{srv:>12.3f}{tr['p50']:>15.3f}{tr['p95']:>8.3f}{tr['p99']:>8.3f}")
    write_stamped(args.out, {"benchmark": "bridge_overhead", "results": rows}, str(TINY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
