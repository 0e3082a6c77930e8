"""Live servers on loopback (real ZeroMQ sockets) around the tiny policy."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import pytest

from bridge.client import PolicyClient
from bridge.server.policy_server import PolicyServer


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
def websocket_endpoint(policy, protocol_name: str):
    """``policy`` behind a server on a fresh in-process address and the ``protocol_name`` endpoint in front of it,
    on a free loopback port, both stopped afterwards."""
    from runtime.app.cli.serving import make_websocket_endpoint

    server = PolicyServer(policy, bind=f"inproc://vlart-test-{protocol_name}-{uuid.uuid4().hex}").start()
    front = make_websocket_endpoint(protocol_name, "ws://127.0.0.1:0", policy, server, 1_000_000).start()
    try:
        yield front
    finally:
        front.stop()
        server.stop()


class GatedPolicy(WrappedPolicy):
    """The tiny policy whose inferences wait until the test opens the gate (``release()``), so concurrency tests
    control the order of events instead of racing the clock. Counts the inferences it ran."""

    def __init__(self, policy, gated: bool = True) -> None:
        super().__init__(policy)
        self.started = threading.Event()  # an inference has begun and is waiting at the gate
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.inferences = 0

    def release(self) -> None:
        self.gate.set()

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
                outer.started.set()
                assert outer.gate.wait(60), "the test never opened the gate"
                return inner.predict_action(obs, seed=seed)

        return Session()


def wait_for(condition, timeout_s: float = 60.0) -> None:
    """Wait until ``condition()`` holds; the timeout only bounds a failing test."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.fixture()
def server(tiny_policy):
    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*").start()
    yield server
    server.stop()


@pytest.fixture()
def client(server):
    with PolicyClient(server.endpoint, timeout_s=60.0) as client:
        yield client
