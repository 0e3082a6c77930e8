"""The one way to start a policy server: ``start_policy_server(spec)``. Imports nothing heavy at module level: the
``vlart`` command registers its flags from here, and its robot side must not load the policy stack.

``vlart serve`` runs it in the foreground, ``vlart sweep`` inside a Ray actor, ``vlart eval`` in a child process
(``ServerProcess``) that hands the bound endpoint back over a pipe. A ``ServerSpec`` holds everything that decides a
server: the policy (model, preset, calibration plan, statistics, overrides) and how it serves (address, batching,
budget, CURVE keys, memory limits).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from bridge.server.policy_server import PolicyServer

DEFAULT_MAX_BATCH = 8  # bridge.server's; not imported from there, so that `vlart --help` needs no zmq
DEFAULT_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_MESSAGE_MB = 16.0  # and the memory limits below: bridge.server's and bridge.server.websocket's
DEFAULT_MAX_INFLIGHT_MB = 256.0
DEFAULT_ZMQ_BIND = "tcp://127.0.0.1:5555"
SERVER_START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServerSpec:
    """``model``/``preset``/``plan``/``unnorm_key``/``device``/``overrides``: the policy, as ``--model`` and friends
    name it; ``budget``: a latency budget YAML checked on every inference; ``warmup``: forward passes before the
    server binds; the rest: ``PolicyServer``'s settings (MiB for the memory limits)."""

    model: str
    preset: Optional[str] = None
    plan: Optional[str] = None
    unnorm_key: Optional[str] = None
    device: Optional[str] = None
    overrides: tuple[str, ...] = ()
    budget: Optional[str] = None
    bind: str = DEFAULT_ZMQ_BIND
    max_batch: int = DEFAULT_MAX_BATCH
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    warmup: int = 1
    curve_keys: Optional[str] = None
    max_message_mb: float = DEFAULT_MAX_MESSAGE_MB
    max_inflight_mb: float = DEFAULT_MAX_INFLIGHT_MB


def start_policy_server(spec: ServerSpec) -> PolicyServer:
    """Load the policy, warm it up, bind and start serving; returns the running server (``endpoint``, ``policy``,
    ``join()``, ``request_stop()``, ``stop()``)."""
    import numpy as np

    from bridge.keys import load_server_keys
    from bridge.server.policy_server import PolicyServer
    from policies.api.interface import Observation
    from runtime.app.policy_loader import load_policy_with_preset
    from runtime.core.budgets import budget_from_file

    curve = load_server_keys(spec.curve_keys) if spec.curve_keys else None
    policy = load_policy_with_preset(spec.model, spec.preset, spec.plan, unnorm_key=spec.unnorm_key,
                                     device=spec.device, overrides=list(spec.overrides))
    size = policy.conventions.image_size
    for _ in range(spec.warmup):  # the first forward passes are slow; no client should pay for them
        policy.session().predict_action(Observation(np.full((size, size, 3), 128, np.uint8), "warm up"), seed=0)
    server = PolicyServer(policy, bind=spec.bind, curve=curve, max_message_bytes=int(spec.max_message_mb * 2**20),
                          budget=budget_from_file(spec.budget), max_batch=spec.max_batch,
                          batch_wait_ms=spec.batch_wait_ms, max_inflight_bytes=int(spec.max_inflight_mb * 2**20))
    return server.start()


def _serve_in_child(spec: ServerSpec, log_path: str, ready: Any) -> None:
    """The child of ``ServerProcess``: everything it prints or logs goes to ``log_path``; the endpoint (or the
    reason it could not start) goes back over ``ready``."""
    log = open(log_path, "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    logging.basicConfig(level=logging.INFO, stream=log, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = start_policy_server(spec)
    except BaseException as exc:
        ready.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    print(f"vlart serve: ready on {server.endpoint}", flush=True)
    ready.send(("ready", server.endpoint))
    server.join()
    server.stop()
    if server.failure is not None:
        print(f"vlart serve: failed: {server.failure}", flush=True)
        sys.exit(1)
    print("vlart serve: stopped", flush=True)


class ServerProcess:
    """``start_policy_server(spec)`` in a child process (its output in ``log_path``); ``endpoint`` once it serves."""

    def __init__(self, spec: ServerSpec, log_path: Path, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        context = mp.get_context("spawn")  # a fresh interpreter: no parent's threads or torch settings
        receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve_in_child, args=(spec, str(log_path), sender),
                                       name="vlart-serve", daemon=True)
        self.process.start()
        sender.close()
        status, detail = "failed", f"no endpoint within {timeout_s:.0f} s"
        try:
            if receiver.poll(timeout_s):
                status, detail = receiver.recv()
        except EOFError:
            detail = f"the server process exited (code {self.process.exitcode})"
        finally:
            receiver.close()
        if status != "ready":
            self.stop()
            raise RuntimeError(f"the policy server did not start: {detail}; see {log_path}")
        self.endpoint: str = detail

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
