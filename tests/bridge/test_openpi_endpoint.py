"""`vlart serve --protocol openpi` driven by openpi's own client package (openpi-client)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from policies.api.interface import Observation
from tests.bridge.conftest import websocket_endpoint

pytest.importorskip("websockets")
from openpi_client.websocket_client_policy import WebsocketClientPolicy  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture()
def endpoint(tiny_policy):
    with websocket_endpoint(tiny_policy, "openpi") as front:
        yield front


def image(seed=0, shape=(224, 224, 3)):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_openpi_client_round_trip(endpoint, tiny_policy):
    client = WebsocketClientPolicy(host="127.0.0.1", port=endpoint.port)
    metadata = client.get_server_metadata()
    assert metadata["server"] == "vlart" and metadata["action_horizon"] == 16
    assert metadata["conventions"]["action_dim"] == 7 and "observation/image" in metadata["observation_keys"]
    first = client.infer({"observation/image": image(), "prompt": "pick coke can", "seed": 3,
                          "observation/state": np.zeros(8, np.float32)})
    second = client.infer({"observation/image": image(1), "prompt": "pick coke can", "seed": 4})
    reference = tiny_policy.session()
    expected = [reference.predict_action(Observation(image(), "pick coke can"), seed=3),
                reference.predict_action(Observation(image(1), "pick coke can"), seed=4)]
    for got, want in zip((first, second), expected):
        assert got["actions"].shape == (16, 7) and got["actions"].dtype == np.float32
        np.testing.assert_allclose(got["actions"], want.actions, atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(got["action"], want.action, atol=TOLERANCE, rtol=0)  # this connection's ensemble
    assert first["server_timing"]["infer_ms"] > 0 and "prev_total_ms" not in first["server_timing"]
    assert second["server_timing"]["prev_total_ms"] > 0 and "policy_total_ms" in second["server_timing"]
    # "reset": a new episode on the same connection starts a fresh ensemble.
    fresh = client.infer({"observation/image": image(), "prompt": "pick coke can", "seed": 3, "reset": True})
    np.testing.assert_array_equal(fresh["action"], fresh["actions"][0])


@pytest.mark.parametrize("observation, text", [
    ({"observation/image": image().astype(np.float32), "prompt": "pick"},
     "bad_request (observation/image): observation/image: expected dtype uint8"),
    ({"observation/image": image(), "prompt": "   "}, "bad_request (prompt): prompt: expected a non-empty string"),
    ({"prompt": "pick"}, "bad_request (observation/image): observation/image: missing"),
    ({"observation/image": image()}, "bad_request (prompt): prompt: missing"),
    ({"observation/image": image(), "prompt": "pick", "seed": -1}, "bad_request (seed): seed: expected a non-negative"),
    ({"observation/image": image(shape=(700, 700, 3)), "prompt": "pick"}, "too_large: frame of"),
])
def test_bad_observations_get_typed_errors_and_the_connection_goes_on(endpoint, observation, text):
    client = WebsocketClientPolicy(host="127.0.0.1", port=endpoint.port)
    with pytest.raises(RuntimeError, match="Error in inference server") as info:
        client.infer(observation)
    assert text in str(info.value)
    assert client.infer({"observation/image": image(), "prompt": "pick coke can"})["actions"].shape == (16, 7)


def openpi_array(dtype: str, shape, data: bytes) -> dict:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


@pytest.mark.parametrize("frame, text", [
    ("a text frame", "bad_message: expected a binary msgpack frame, got text"),
    (b"\xc1 not msgpack", "bad_message: not a valid msgpack message"),
    (msgpack.packb({"observation/image": openpi_array("|O", [1], b"\0" * 8), "prompt": "x"}),
     "bad_message: array dtype '|O' is not allowed"),
    (msgpack.packb({"observation/image": openpi_array("|u1", [224, 224, 3], b"\0" * 10), "prompt": "x"}),
     "bad_message: array data has 10 bytes"),
    (msgpack.packb(msgpack.ExtType(1, b"pickle")), "bad_message: msgpack extension type 1 is not allowed"),
])
def test_hostile_frames_get_an_error_then_openpis_close(endpoint, frame, text):
    with connect(endpoint.url, compression=None, max_size=None) as ws:
        ws.recv()  # the metadata frame
        ws.send(frame)
        reply = ws.recv()
        assert isinstance(reply, str) and reply.startswith(text)
        with pytest.raises(Exception) as closed:
            ws.recv()
        assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1011
    # The endpoint keeps serving.
    client = WebsocketClientPolicy(host="127.0.0.1", port=endpoint.port)
    assert client.infer({"observation/image": image(), "prompt": "pick coke can"})["actions"].shape == (16, 7)


def test_health_check(endpoint):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/healthz", timeout=30) as response:
        assert response.status == 200 and response.read() == b"OK\n"
