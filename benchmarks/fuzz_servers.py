"""Fuzz the three real servers with Hypothesis-generated hostile input; prints a table and writes JSON.

    .venv/bin/python -m benchmarks.fuzz_servers [--zmq 4000] [--openpi 3000] [--vla-eval 3000] [--seed 0]
        [--out docs/results/fuzz_servers.json]

Starts `vlart serve` (tiny model) three times, as a user would: ZeroMQ, `--protocol openpi`, `--protocol vla-eval`,
each in its own process. Then sends each one its share of generated inputs (tests/bridge/hostile.py: hostile
msgpack values, numpy markers, envelopes, images, vla-eval message sequences), asserting for every input a typed
error or a valid reply and never a silent close. Afterwards: each process must still run, answer its health check and
give a valid request the chunk the tiny policy computes in process; its log must hold no traceback (an exception
that reached a thread or a handler). Any failed assertion stops the run with Hypothesis's smallest failing input.
"""

from __future__ import annotations

import argparse
import time
import urllib.request

import numpy as np
from hypothesis import HealthCheck, given, seed, settings

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped
from benchmarks.serve_process import ServeProcess
from tests.bridge import hostile

TINY = REPO / "configs" / "models" / "cogact-tiny.yaml"
BINDS = {"zmq": "tcp://127.0.0.1:*", "openpi": "ws://127.0.0.1:0", "vla-eval": "ws://127.0.0.1:0"}


def expected_chunk(frame: np.ndarray, instruction: str, sample_seed: int) -> np.ndarray:
    from policies.api.interface import Observation
    from policies.loading import load_policy

    return load_policy(TINY).session().predict_action(Observation(frame, instruction), seed=sample_seed).actions


def fuzz(protocol: str, endpoint: str, examples: int, run_seed: int) -> dict:
    """Runs ``examples`` generated inputs against the server at ``endpoint``; returns the outcome counts."""
    counts: dict[str, int] = {}
    strict = settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    if protocol == "zmq":
        import zmq

        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(endpoint)

        @seed(run_seed)
        @strict
        @given(body=hostile.zmq_bodies)
        def check(body):
            reply = hostile.send_zmq(sock, body)
            key = f"error:{reply.payload['code']}" if reply.type == "error" else reply.type
            counts[key] = counts.get(key, 0) + 1
            counts["inputs"] = counts.get("inputs", 0) + 1
    elif protocol == "openpi":
        @seed(run_seed)
        @strict
        @given(frame=hostile.openpi_frames)
        def check(frame):
            outcome = hostile.send_openpi(endpoint, frame)
            counts[outcome] = counts.get(outcome, 0) + 1
            counts["inputs"] = counts.get("inputs", 0) + 1
    else:
        @seed(run_seed)
        @strict
        @given(frames=hostile.vla_eval_sequences)
        def check(frames):
            outcomes = hostile.send_vla_eval(endpoint, frames)
            for outcome in outcomes:
                counts[outcome] = counts.get(outcome, 0) + 1
            counts["inputs"] = counts.get("inputs", 0) + len(frames)
            counts["connections"] = counts.get("connections", 0) + 1
    check()
    return counts


def valid_request(protocol: str, endpoint: str) -> dict:
    """A valid request after the fuzzing: answered, and equal to the in-process chunk (seeded)."""
    frame = np.random.default_rng(7).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    instruction, sample_seed = "put the carrot on the plate", 11
    if protocol == "zmq":
        from bridge.client import PolicyClient

        with PolicyClient(endpoint, timeout_s=60) as client:
            health = client.ping()["status"]
            actions = client.infer(frame, instruction, seed=sample_seed).actions
    else:
        port = endpoint.rsplit(":", 1)[1]
        path = "/healthz" if protocol == "openpi" else "/health"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            health = "ok" if response.status == 200 else str(response.status)
        from websockets.sync.client import connect

        with connect(endpoint, compression=None, max_size=None) as ws:
            if protocol == "openpi":
                from bridge.server.openpi import decode, encode

                ws.recv(timeout=60)
                ws.send(encode({"observation/image": frame, "prompt": instruction, "seed": sample_seed}))
                actions = decode(ws.recv(timeout=60))["actions"]
            else:
                from bridge import codec

                ws.send(codec.encode({"type": "observation", "seq": 1, "timestamp": 0.0, "payload": {
                    "images": {"primary": frame}, "task_description": instruction, "seed": sample_seed}}))
                actions = codec.decode(ws.recv(timeout=60))["payload"]["chunk"]
    error = float(np.abs(np.asarray(actions) - expected_chunk(frame, instruction, sample_seed)).max())
    return {"health": health, "max_abs_error": error, "correct": error < 1e-5}


def main() -> None:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zmq", type=int, default=4000, help="generated ZeroMQ messages")
    parser.add_argument("--openpi", type=int, default=3000, help="generated openpi frames (one connection each)")
    parser.add_argument("--vla-eval", type=int, default=3000, help="generated vla-eval sequences (1-4 frames each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "fuzz_servers.json"))
    args = parser.parse_args()

    rows = []
    for protocol, examples in (("zmq", args.zmq), ("openpi", args.openpi), ("vla-eval", args.vla_eval)):
        server = ServeProcess(str(TINY), "--protocol", protocol, "--bind", BINDS[protocol], warmup=1)
        started = time.perf_counter()
        try:
            counts = fuzz(protocol, server.url, examples, args.seed)
            wall_s = time.perf_counter() - started
            after = valid_request(protocol, server.url)
            alive = server.alive()
        finally:
            exit_code = server.stop()
        rows.append({"protocol": protocol, "inputs": counts.pop("inputs"), "outcomes": counts,
                     "tracebacks_in_log": server.log().count("Traceback"), "alive_after": alive,
                     "valid_request_after": after, "exit_code_on_sigterm": exit_code, "wall_s": round(wall_s, 1)})
        print(f"{protocol}: {rows[-1]['inputs']} inputs in {wall_s:.0f} s", flush=True)

    total = sum(row["inputs"] for row in rows)
    print(f"\n{'protocol':<9} {'inputs':>7} {'tracebacks':>10} {'alive':>6} {'valid after':>12} {'wall s':>7}  "
          "outcomes")
    for row in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))
        print(f"{row['protocol']:<9} {row['inputs']:>7} {row['tracebacks_in_log']:>10} {str(row['alive_after']):>6} "
              f"{str(row['valid_request_after']['correct']):>12} {row['wall_s']:>7}  {outcomes}")
    print(f"total: {total} generated inputs; every one got a typed error or a valid reply (else the run stops)")
    write_stamped(args.out, {"benchmark": "fuzz_servers", "total_inputs": total, "rows": rows}, str(TINY))

if __name__ == "__main__":
    main()
