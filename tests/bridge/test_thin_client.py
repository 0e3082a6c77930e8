"""The thin client's requests. (That the robot side imports and installs without the policy's stack:
tests/test_import_layers.py, tests/test_packaging.py and the wheel in .ci/run.)"""

import numpy as np
import pytest

from bridge.client import PolicyClient


class RecordingClient(PolicyClient):
    """A client whose requests are recorded instead of sent, answered with a fixed reply."""

    def __init__(self) -> None:
        super().__init__("tcp://127.0.0.1:1")
        self.sent: list[tuple[str, dict]] = []

    def call(self, type_, payload, timeout_s=None):
        self.sent.append((type_, payload))
        zeros = np.zeros((16, 7), np.float32)
        reply = {"actions": zeros, "normalized_actions": zeros, "action": zeros[0]}
        return reply, 1, {"serialize_ms": 0.0, "total_ms": 0.0}


def test_a_plain_infer_sends_no_continuation_fields():
    client = RecordingClient()
    client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", seed=3)
    (type_, payload), = client.sent
    assert type_ == "infer" and set(payload) == {"images", "instruction", "seed"}  # exactly what it sent before


def test_a_prefix_is_sent_as_float32_with_its_delay_ticks():
    client = RecordingClient()
    client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", prefix=[[0.01] * 7] * 3, delay_ticks=np.int64(2))
    payload = client.sent[0][1]
    assert payload["prefix"].dtype == np.float32 and payload["prefix"].shape == (3, 7)
    np.testing.assert_array_equal(payload["prefix"], np.full((3, 7), 0.01, np.float32))
    assert payload["delay_ticks"] == 2 and type(payload["delay_ticks"]) is int
    client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", prefix=np.zeros((2, 7)))
    assert client.sent[1][1]["delay_ticks"] == 0


def test_delay_ticks_without_a_prefix_is_refused_before_sending():
    client = RecordingClient()
    with pytest.raises(ValueError, match="delay_ticks: expected 0 without a prefix"):
        client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", delay_ticks=2)
    with pytest.raises(TypeError):
        client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", prefix=np.zeros((2, 7)), delay_ticks=1.5)
    assert client.sent == []


class NoPeerClient(PolicyClient):
    """A client whose socket has no peer to send to (``immediate``: only completed connections take messages, and
    nothing listens), as a DEALER is after a server refused its CURVE handshake: a plain send would block forever."""

    def _connect(self):
        if self._socket is None:
            import zmq

            sock = self.context.socket(zmq.DEALER)
            sock.linger = 0
            sock.immediate = True
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket


def test_a_request_that_cannot_be_sent_times_out_instead_of_blocking():
    import threading

    from bridge.client import PolicyTimeout

    outcome: list[BaseException] = []

    def ping() -> None:
        with NoPeerClient("tcp://127.0.0.1:1", timeout_s=0.2, retries=1) as client:
            try:
                client.ping()
            except BaseException as exc:  # noqa: BLE001  (the thread reports whatever ended it)
                outcome.append(exc)

    thread = threading.Thread(target=ping, daemon=True)
    thread.start()
    thread.join(timeout=60)  # generous for a loaded machine; the deadline is 2 x 0.2 s
    assert not thread.is_alive(), "ping blocked in send"
    assert len(outcome) == 1 and isinstance(outcome[0], PolicyTimeout)
    assert "no reply from tcp://127.0.0.1:1 within 0.2 s (2 attempts)" in str(outcome[0])
