"""Live servers on loopback (real ZeroMQ sockets) around the tiny policy."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.client import PolicyClient
from bridge.server import PolicyServer


class SlowPolicy:
    """The tiny policy with a deliberate delay in every inference (for concurrency tests)."""

    def __init__(self, policy, delay_s: float) -> None:
        self.policy = policy
        self.delay_s = delay_s
        self.started = threading.Event()

    @property
    def conventions(self):
        return self.policy.conventions

    @property
    def metadata(self):
        return dict(self.policy.metadata, name="slow-tiny")

    def session(self):
        outer = self
        inner = self.policy.session()

        class Session:
            conventions = outer.conventions

            def reset(self):
                inner.reset()

            def predict_action(self, obs, seed=None):
                outer.started.set()
                time.sleep(outer.delay_s)
                return inner.predict_action(obs, seed=seed)

        return Session()


@pytest.fixture()
def server(tiny_policy):
    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*").start()
    yield server
    server.stop()


@pytest.fixture()
def client(server):
    with PolicyClient(server.endpoint, timeout_s=20.0) as client:
        yield client
