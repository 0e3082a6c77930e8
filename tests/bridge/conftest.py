"""Live servers on loopback (real ZeroMQ sockets) around the tiny policy."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import pytest

from bridge.client import PolicyClient
from tests.conftest import running_server


class WrappedPolicy:
    """A test's wrapper around the tiny policy: the server sees its conventions and metadata."""

    def __init__(self, policy) -> None:
        self.policy = policy

    @property
    def conventions(self):
        return self.policy.conventions

    @property
    def metadata(self):
        return self.policy.metadata


@contextmanager
def websocket_endpoint(policy, protocol_name: str, **options):
    """``policy`` behind a server on a fresh in-process address and the ``protocol_name`` endpoint in front of it,
    on a free loopback port (``options``: the endpoint's, e.g. ``max_connections``), both stopped afterwards."""
    from runtime.app.cli.serving import make_websocket_endpoint

    with running_server(policy, bind=f"inproc://vlart-test-{protocol_name}-{uuid.uuid4().hex}") as server:
        front = make_websocket_endpoint(protocol_name, "ws://127.0.0.1:0", policy, server, 1_000_000,
                                        **options).start()
        try:
            yield front
        finally:
            front.stop()


class Gate(WrappedPolicy):
    """A wrapper whose inferences wait at a gate until the test opens it (``release()``), so concurrency tests
    control the order of events instead of racing the clock. ``with server, gate:`` opens it however the block
    ends (before the server stops), so a failing test leaves no inference waiting."""

    def __init__(self, policy, gated: bool = True) -> None:
        super().__init__(policy)
        self.started = threading.Event()  # an inference has begun and is waiting at the gate
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def release(self) -> None:
        self.gate.set()

    def wait_at_the_gate(self) -> None:
        self.started.set()
        assert self.gate.wait(60), "the test never opened the gate"

    def __enter__(self) -> "Gate":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class GatedPolicy(Gate):
    """The tiny policy, each of its inferences held at the gate. Counts the inferences it ran."""

    def __init__(self, policy, gated: bool = True) -> None:
        super().__init__(policy, gated)
        self.inferences = 0

    @property
    def metadata(self):
        return dict(self.policy.metadata, name="gated-tiny")

    def session(self):
        outer = self
        inner = self.policy.session()

        class Session:
            conventions = outer.conventions

            def reset(self):
                inner.reset()

            def predict_action(self, obs, seed=None):
                outer.inferences += 1
                outer.wait_at_the_gate()
                return inner.predict_action(obs, seed=seed)

        return Session()


def wait_for(condition, timeout_s: float = 60.0) -> None:
    """Wait until ``condition()`` holds; the timeout only bounds a failing test."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.fixture()
def client(server):
    with PolicyClient(server.endpoint, timeout_s=60.0) as client:
        yield client
