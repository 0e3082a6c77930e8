"""Hostile input never stops a server or closes a connection silently; memory stays bounded across connections.

The six inputs of the security review as regression tests, the codec and the three real servers (ZeroMQ, openpi,
vla-eval) under Hypothesis-generated input (a fixed, derandomised number of examples here; benchmarks/fuzz_servers.py
runs 10,000+), thread failures that must not look like a clean exit, and the connection and bytes-in-flight limits.
"""

from __future__ import annotations

import signal
import socket
import threading
import urllib.error
import urllib.request
from contextlib import closing

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings

from bridge import codec, protocol
from bridge.client import PolicyClient, ServerError
from bridge.server.policy_server import PolicyServer
from runtime.core.safe_repr import bounded_repr
from tests.bridge import hostile
from tests.bridge.conftest import GatedPolicy, wait_for, websocket_endpoint
from tests.conftest import running_server

pytest.importorskip("websockets")
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

EXAMPLES = 200  # per property in CI; benchmarks/fuzz_servers.py runs many more
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
DEEP = 1000


def deep_array_infer(field: str, depth: int = DEEP) -> bytes:
    """An infer whose image marker has ``field`` (dtype or shape) nested ``depth`` lists deep."""
    marker = {"__ndarray__": True, "dtype": "|u1", "shape": [2, 2, 3], "data": b"\0" * 12}
    marker[field] = hostile.nested(depth, "|u1")
    return hostile.pack({"v": 1, "type": "infer", "seq": 41,
                         "payload": {"images": {"primary": marker}, "instruction": "pick coke can"}})


@pytest.fixture()
def dealer(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def openpi(tiny_policy):
    with websocket_endpoint(tiny_policy, "openpi") as front:
        yield front


@pytest.fixture(scope="module")
def vla_eval(tiny_policy):
    with websocket_endpoint(tiny_policy, "vla-eval") as front:
        yield front


def assert_serves(server: PolicyServer, frame: np.ndarray, tiny_policy) -> None:
    """The server is alive and a valid request gets the same chunk the policy computes in process."""
    with PolicyClient(server.endpoint, timeout_s=60) as client:
        assert client.ping()["status"] == "ok"
        result = client.infer(frame, "pick coke can", seed=3)
    from policies.api.interface import Observation

    expected = tiny_policy.session().predict_action(Observation(frame, "pick coke can"), seed=3)
    np.testing.assert_allclose(result.actions, expected.actions, atol=1e-5, rtol=0)


# -- the six inputs of the review ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["dtype", "shape"])
def test_1_a_deeply_nested_array_field_is_a_bad_message_and_the_server_goes_on(server, dealer, field, frame,
                                                                                tiny_policy):
    reply = hostile.send_zmq(dealer, deep_array_infer(field))
    assert reply.type == "error" and reply.payload["code"] == "bad_message", reply.payload
    assert f"array {field}" in reply.payload["message"] and len(reply.payload["message"]) < 400
    assert server.failure is None
    assert_serves(server, frame, tiny_policy)


@pytest.mark.parametrize("field", ["dtype", "shape"])
def test_2_the_same_input_over_openpi_and_vla_eval_gets_an_error_and_a_close_with_a_reason(openpi, vla_eval, field):
    observation = {"observation/image": {b"__ndarray__": True, b"dtype": "|u1", b"shape": [2, 2, 3],
                                         b"data": b"\0" * 12}, "prompt": "pick"}
    observation["observation/image"][field.encode()] = hostile.nested(990, "|u1")
    assert hostile.send_openpi(openpi.url, hostile.pack(observation)) == "error+close"
    message = {"type": "observation", "seq": 3, "timestamp": 0.0, "payload": {
        "images": {"primary": {"__ndarray__": True, "dtype": "|u1", "shape": [2, 2, 3], "data": b"\0" * 12}},
        "task_description": "pick"}}
    message["payload"]["images"]["primary"][field] = hostile.nested(990, "|u1")
    assert hostile.send_vla_eval(vla_eval.url, [hostile.pack(message)]) == ["error:bad_message", "close"]


@pytest.mark.parametrize("kind", [np.zeros(5, np.int32), np.zeros(0, np.uint8), hostile.nested(DEEP, "hello")])
def test_3_4_a_vla_eval_type_that_is_an_array_or_nested_is_an_unknown_type(vla_eval, kind):
    frame = codec.encode({"type": kind, "seq": 8, "payload": {}, "timestamp": 0.0})
    outcomes = hostile.send_vla_eval(vla_eval.url, [frame])
    assert outcomes == ["error:unknown_type", "hello"]


def test_5_a_hello_with_an_array_as_harness_version_is_a_bad_request_naming_it(vla_eval):
    frame = codec.encode({"type": "hello", "seq": 9, "payload": {"harness_version": np.zeros((0, 3), np.float32)},
                          "timestamp": 0.0})
    with connect(vla_eval.url, compression=None) as ws:
        ws.send(frame)
        reply = msgpack.unpackb(ws.recv(timeout=60))
        assert reply["type"] == "error" and reply["seq"] == 9
        assert reply["payload"]["field"] == "harness_version" and reply["payload"]["code"] == "bad_request"
    assert hostile.send_vla_eval(vla_eval.url, [frame])[-1] == "hello"  # the connection goes on


@pytest.mark.parametrize("dtype", hostile.DTYPES)
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,), (2, 0, 4)])
def test_5_zero_size_arrays_of_every_allowed_dtype_encode_and_round_trip(dtype, shape):
    array = np.zeros(shape, dtype)
    decoded = codec.decode(codec.encode({"a": array}))["a"]
    assert decoded.dtype == array.dtype and decoded.shape == shape


@pytest.mark.parametrize("data, declared", [
    (hostile.png_with_chunk_between_idats(), "png"),
    (hostile.dds_bytes(), "png"),
    (hostile.real_png(0, 4, 4), "jpeg"),  # a valid PNG declared as JPEG is refused: the declared format is enforced
])
def test_6_images_pillow_cannot_decode_or_of_another_format_are_typed_errors(vla_eval, data, declared):
    message = {"type": "observation", "seq": 12, "timestamp": 0.0, "payload": {
        "images": {"primary": {"__image__": True, "format": declared, "data": data, "shape": [2, 2, 3]}},
        "task_description": "pick"}}
    assert hostile.send_vla_eval(vla_eval.url, [hostile.pack(message)]) == ["error:bad_message", "close"]


def test_a_valid_png_declared_as_png_still_decodes(vla_eval):
    message = {"type": "observation", "seq": 13, "timestamp": 0.0, "payload": {
        "images": {"primary": {"__image__": True, "format": "png", "data": hostile.real_png(0, 8, 8)}},
        "task_description": "pick"}}
    assert hostile.send_vla_eval(vla_eval.url, [hostile.pack(message)]) == ["action", "hello"]


def test_bounded_repr_never_raises_and_stays_short():
    assert bounded_repr(hostile.nested(100_000, 1)) == "[[[[...]]]]"
    assert len(bounded_repr("x" * 10**6)) <= 80
    assert bounded_repr({"k": hostile.nested(5, 1, "map")}).startswith("{'k': {'k'")


# -- generated input against the codec and the real servers --------------------------------------------------------


@PROPERTY
@given(body=hostile.zmq_bodies)
def test_the_codec_and_envelope_raise_only_their_typed_errors(body):
    try:
        protocol.unpack(body)
    except protocol.ProtocolError as error:
        assert error.code in protocol.ERROR_CODES and len(error.message) < 1000


@PROPERTY
@given(value=hostile.values)
def test_whatever_decodes_encodes_again(value):
    try:
        decoded = codec.decode(hostile.pack(value))
    except codec.CodecError:
        return
    assert isinstance(codec.encode(decoded), bytes)


def test_zmq_server_under_generated_messages(server, dealer, frame, tiny_policy):
    @PROPERTY
    @given(body=hostile.zmq_bodies)
    def check(body):
        hostile.send_zmq(dealer, body)

    check()
    assert server.failure is None
    assert_serves(server, frame, tiny_policy)


def test_openpi_endpoint_under_generated_frames(openpi):
    @PROPERTY
    @given(frame=hostile.openpi_frames)
    def check(frame):
        hostile.send_openpi(openpi.url, frame)

    check()
    assert openpi.server.failure is None
    with urllib.request.urlopen(f"http://127.0.0.1:{openpi.port}/healthz", timeout=30) as response:
        assert response.status == 200


def test_vla_eval_endpoint_under_generated_sequences(vla_eval):
    @PROPERTY
    @given(frames=hostile.vla_eval_sequences)
    def check(frames):
        hostile.send_vla_eval(vla_eval.url, frames)

    check()
    assert vla_eval.server.failure is None
    good = {"type": "observation", "seq": 2, "timestamp": 0.0, "payload": {
        "images": {"primary": np.zeros((8, 8, 3), np.uint8)}, "task_description": "pick"}}
    assert hostile.send_vla_eval(vla_eval.url, [codec.encode(good)]) == ["action", "hello"]


# -- a dying thread is never a clean exit --------------------------------------------------------------------------


def test_a_socket_thread_that_dies_is_a_recorded_failure_and_join_returns(tiny_policy, monkeypatch):
    def explode(self, router):
        raise RuntimeError("the socket broke")

    monkeypatch.setattr(PolicyServer, "_drain_requests", explode)
    with running_server(tiny_policy) as server:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.endpoint)
        sock.send(b"anything")
        joined = threading.Thread(target=server.join)
        joined.start()
        joined.join(60)
        assert not joined.is_alive() and server.failure == "the socket thread stopped: RuntimeError: the socket broke"
        sock.close()


def test_a_dead_worker_is_reported_by_the_health_checks(tiny_policy):
    for protocol_name, path in (("openpi", "/healthz"), ("vla-eval", "/health")):
        with websocket_endpoint(tiny_policy, protocol_name) as front:
            worker = front.server._worker
            front.server._jobs.put(_poison_job(front.server))
            wait_for(lambda: not worker.is_alive())
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"http://127.0.0.1:{front.port}{path}", timeout=30)
            assert info.value.code == 503 and b"inference worker stopped: SystemExit: fatal" in info.value.read()


def _poison_job(server: PolicyServer):
    """A queued job whose reset raises SystemExit in the worker: the worker thread dies as it would on a fatal
    error."""
    from bridge.server.requests import Job
    from bridge.server.sessions import ClientSession

    class Fatal:
        def reset(self):
            raise SystemExit("fatal")

    session = ClientSession(Fatal())
    session.pending = 1
    return Job(protocol.RESET, [b"x"], 0, session, 0.0, 0.0, deliver=lambda kind, payload: None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_vlart_serve_exits_non_zero_when_its_socket_thread_dies(monkeypatch, capsys):
    """The command a supervisor runs: a dead socket thread ends `vlart serve` with exit code 1, not 0."""
    from runtime.app.cli import main
    from tests.conftest import TINY

    def explode(self, router):
        raise RuntimeError("the socket broke")

    monkeypatch.setattr(PolicyServer, "_drain_requests", explode)
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    served = threading.Event()

    def poke():  # until the server has read one message, however long it takes to load the model
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(endpoint)
        while not served.wait(0.5):
            sock.send(b"anything")
        sock.close()

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # vlart serve sets its own
    poker = threading.Thread(target=poke)
    poker.start()
    try:
        assert main(["serve", "--model", str(TINY), "--bind", endpoint, "--warmup", "0"]) == 1
    finally:
        served.set()
        poker.join()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert "vlart serve: failed: the socket thread stopped: RuntimeError: the socket broke" in capsys.readouterr().out


# -- bounded memory ------------------------------------------------------------------------------------------------


def test_requests_beyond_the_bytes_in_flight_get_busy(tiny_policy, frame):
    gated = GatedPolicy(tiny_policy)
    body = hostile.valid_zmq_infer(frame[:64, :64])
    sockets = [zmq.Context.instance().socket(zmq.DEALER) for _ in range(2)]
    with running_server(gated, max_message_bytes=len(body), max_inflight_bytes=len(body) + 100) as server, \
            closing(sockets[0]), closing(sockets[1]), gated:
        for sock in sockets:
            sock.linger = 0
            sock.connect(server.endpoint)
        sockets[0].send(body)
        assert gated.started.wait(60)
        reply = hostile.send_zmq(sockets[1], body)
        assert reply.type == "error" and reply.payload["code"] == "busy"
        assert f"{len(body)} more would exceed {len(body) + 100}" in reply.payload["message"]
        gated.release()
        assert sockets[0].poll(60_000) and protocol.unpack(sockets[0].recv()).type == "infer"
        wait_for(lambda: server.inflight.held == 0)
        assert hostile.send_zmq(sockets[1], body).type == "infer"  # the bytes were given back


def test_a_server_refuses_an_inflight_limit_below_one_message(tiny_policy):
    with pytest.raises(ValueError, match="max_inflight_bytes"):
        PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*", max_message_bytes=1000, max_inflight_bytes=999)


@pytest.mark.parametrize("protocol_name", ["openpi", "vla-eval"])
def test_connections_beyond_the_limit_are_refused_with_503_and_admitted_once_one_closes(tiny_policy, protocol_name):
    with websocket_endpoint(tiny_policy, protocol_name, max_connections=2) as front:
        first = connect(front.url, compression=None)
        second = connect(front.url, compression=None)
        wait_for(lambda: front.connections == 2)
        with pytest.raises(InvalidStatus) as refused:
            connect(front.url, compression=None, open_timeout=30)
        assert refused.value.response.status_code == 503
        assert b"2 connections are open" in refused.value.response.body
        first.close()
        wait_for(lambda: front.connections == 1)
        with connect(front.url, compression=None) as third:
            if protocol_name == "openpi":
                assert isinstance(third.recv(timeout=30), bytes)  # the metadata frame: it is served
        second.close()


def test_a_bad_request_through_an_endpoint_is_not_busy_and_gives_its_bytes_back(openpi):
    from bridge.server.openpi import encode

    frame = encode({"observation/image": np.zeros((4, 4, 3), np.float32), "prompt": "pick"})
    assert hostile.send_openpi(openpi.url, frame) == "error"
    assert openpi.server.inflight.held == 0


def test_an_unavailable_server_answers_an_infer_with_its_typed_error(tiny_policy, frame):
    with running_server(tiny_policy) as server:
        server._jobs.put(_poison_job(server))
        wait_for(lambda: not server.worker_alive())
        with PolicyClient(server.endpoint, timeout_s=60) as client:
            ping = client.ping()
            assert ping["status"] == "unavailable" and ping["failure"].startswith("the inference worker stopped")
            with pytest.raises(ServerError, match="unavailable"):
                client.infer(frame, "pick coke can")
