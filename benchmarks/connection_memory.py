"""Peak memory of a server flooded with maximum-size frames on many connections; prints a table and writes JSON.

    .venv/bin/python -m benchmarks.connection_memory [--model configs/models/cogact-small.yaml] [--connections 64]
        [--frames 4] [--protocols zmq,openpi,vla-eval] [--out docs/results/connection_memory.json]

For each protocol, `vlart serve` runs with its default limits (16 MiB messages, 256 MiB of requests in flight, 64
websocket connections) and a model whose forward pass is long (cogact-small: seconds on a CPU), so that frames pile
up while it runs. Then ``--connections`` clients each send ``--frames`` valid requests padded to the message limit,
all at once, and read what comes back; a probe client sends a small valid request every half second throughout. The
server's resident memory is sampled every 50 ms and its peak (VmHWM) read at the end; the baseline is the RSS once
the server is ready, before the flood.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped
from benchmarks.serve_process import ServeProcess

MAX_MESSAGE = 16 * 2**20  # vlart serve's default --max-message-mb
HEADROOM = 256 * 1024  # the envelope and the 224x224 image (147 KiB) beside the padding
INSTRUCTION = "put the carrot on the plate"


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def frame_bytes(protocol: str, seq: int, padded: bool) -> bytes:
    """A valid request: a 224x224 frame, padded with an ignored field up to just under the message limit."""
    image = np.random.default_rng(seq).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    padding = np.zeros(MAX_MESSAGE - HEADROOM if padded else 1, np.uint8)
    if protocol == "zmq":
        from bridge import protocol as vlart

        return vlart.pack(vlart.INFER, seq, {"images": {"primary": image}, "instruction": INSTRUCTION, "seed": seq,
                                             "padding": padding})
    if protocol == "openpi":
        from bridge.server.openpi import encode

        return encode({"observation/image": image, "prompt": INSTRUCTION, "seed": seq, "observation/state": padding})
    from bridge import codec

    return codec.encode({"type": "observation", "seq": seq, "timestamp": 0.0, "payload": {
        "images": {"primary": image}, "task_description": INSTRUCTION, "seed": seq, "padding": padding}})


def classify(protocol: str, reply) -> str:
    import msgpack

    if protocol == "openpi":
        return "ok" if isinstance(reply, bytes) else reply.split(":", 1)[0].split(" ", 1)[0]
    message = msgpack.unpackb(reply, strict_map_key=False)
    if message["type"] == "error":
        return message["payload"]["code"]
    return "ok"


def client(protocol: str, endpoint: str, index: int, frames: int, padded: bool, outcomes: list, go: threading.Event,
           timeout_s: float = 300.0) -> None:
    """Sends ``frames`` requests at once on one connection, then reads every reply."""
    bodies = [frame_bytes(protocol, index * 1000 + k, padded) for k in range(frames)]
    go.wait()
    try:
        if protocol == "zmq":
            import zmq

            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(endpoint)
            for body in bodies:
                sock.send(body, copy=False)
            del bodies
            for _ in range(frames):
                if not sock.poll(int(timeout_s * 1000)):
                    outcomes.append("no reply")
                    continue
                outcomes.append(classify(protocol, sock.recv()))
            sock.close()
            return
        from websockets.sync.client import connect

        with connect(endpoint, compression=None, max_size=None, open_timeout=timeout_s,
                     close_timeout=timeout_s) as ws:
            if protocol == "openpi":
                ws.recv(timeout=timeout_s)
            for body in bodies:
                ws.send(body)
            del bodies
            for _ in range(frames):
                outcomes.append(classify(protocol, ws.recv(timeout=timeout_s)))
    except Exception as exc:  # a refused handshake, a close: recorded, not raised
        outcomes.append(f"{type(exc).__name__}: {str(exc)[:80]}")


def run(model: str, protocol: str, connections: int, frames: int) -> dict:
    bind = "tcp://127.0.0.1:*" if protocol == "zmq" else "ws://127.0.0.1:0"
    server = ServeProcess(model, "--protocol", protocol, "--bind", bind, warmup=1)
    endpoint = server.url
    try:
        time.sleep(2.0)
        baseline_kib = memory_kib(server.pid, "VmRSS")
        outcomes: list[str] = []
        probes: list[str] = []
        go, done = threading.Event(), threading.Event()
        threads = [threading.Thread(target=client, args=(protocol, endpoint, i, frames, True, outcomes, go))
                   for i in range(connections)]
        for thread in threads:
            thread.start()

        def probe() -> None:
            while not done.is_set():
                client(protocol, endpoint, 10_000, 1, False, probes, go)
                time.sleep(0.5)

        prober = threading.Thread(target=probe)
        samples = []
        started = time.perf_counter()
        go.set()
        prober.start()
        while any(thread.is_alive() for thread in threads):
            samples.append(memory_kib(server.pid, "VmRSS"))
            time.sleep(0.05)
        wall_s = time.perf_counter() - started
        done.set()
        prober.join()
        after = []
        client(protocol, endpoint, 20_000, 1, False, after, go)
        peak_kib = memory_kib(server.pid, "VmHWM")
        alive = server.alive()
    finally:
        server.stop()
    count = lambda items: {k: items.count(k) for k in sorted(set(items))}  # noqa: E731
    return {"protocol": protocol, "connections": connections, "frames_per_connection": frames,
            "frame_bytes": MAX_MESSAGE - HEADROOM, "sent_mib": round(connections * frames * MAX_MESSAGE / 2**20),
            "baseline_rss_mib": round(baseline_kib / 1024), "peak_rss_mib": round(peak_kib / 1024),
            "peak_over_baseline_mib": round((peak_kib - baseline_kib) / 1024),
            "max_sampled_rss_mib": round(max(samples) / 1024) if samples else None,
            "outcomes": count(outcomes), "probe_outcomes": count(probes), "valid_request_after": after,
            "alive_after": alive, "wall_s": round(wall_s, 1)}


def main() -> None:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "configs" / "models" / "cogact-small.yaml"))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4, help="maximum-size frames each connection sends at once")
    parser.add_argument("--protocols", default="zmq,openpi,vla-eval")
    parser.add_argument("--out", default=str(RESULTS / "connection_memory.json"))
    args = parser.parse_args()

    rows = [run(args.model, protocol, args.connections, args.frames) for protocol in args.protocols.split(",")]
    print(f"\n{'protocol':<9} {'sent MiB':>8} {'baseline':>9} {'peak':>6} {'over':>6} {'alive':>6}  outcomes | probe")
    for row in rows:
        print(f"{row['protocol']:<9} {row['sent_mib']:>8} {row['baseline_rss_mib']:>9} {row['peak_rss_mib']:>6} "
              f"{row['peak_over_baseline_mib']:>6} {str(row['alive_after']):>6}  {row['outcomes']} | "
              f"{row['probe_outcomes']} | after: {row['valid_request_after']}")
    write_stamped(args.out, {
        "benchmark": "connection_memory",
        "limits": {"max_message_mib": 16, "max_inflight_mib": 256, "max_connections": 64,
                   "websocket_frame_limit_mib": 32, "websocket_frames_buffered_per_connection": 1,
                   "zmq_messages_buffered_per_peer": 8},
        "rows": rows}, args.model)

if __name__ == "__main__":
    main()
