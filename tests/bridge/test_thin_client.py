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
