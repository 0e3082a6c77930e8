import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from bridge import protocol
from bridge.client import PolicyClient, PolicyTimeout, ServerError
from bridge.server import PolicyServer
from policies.interface import Observation
from tests.bridge.conftest import SlowPolicy


def test_hello_announces_model_and_conventions(client):
    info = client.hello()
    assert info["server"] == "vlart" and info["protocol"] == 1 and info["supported_versions"] == [1]
    assert info["model"]["name"] == "cogact-tiny" and info["model"]["parameters"] == 357_703
    conv = info["conventions"]
    assert conv["action_dim"] == 7 and conv["chunk_length"] == 16 and conv["control_rate_hz"] == 5.0
    assert conv["image_keys"] == ["primary"] and conv["image_size"] == 224
    assert conv["gripper"].startswith("absolute: 1 = open") and conv["rotation"] == "euler_xyz_delta"


def test_infer_matches_the_policy_called_directly(client, tiny_policy, frame):
    result = client.infer({"primary": frame}, "put the carrot on the plate", seed=5)
    direct = tiny_policy.session().predict_action(Observation(frame, "put the carrot on the plate"), seed=5)
    assert result.actions.shape == (16, 7) and result.actions.dtype == np.float32
    np.testing.assert_array_equal(result.actions, direct.actions)
    np.testing.assert_array_equal(result.normalized_actions, direct.normalized_actions)
    np.testing.assert_array_equal(result.action, direct.actions[0])
    timing = result.server_timing
    assert {"decode_ms", "queue_ms", "vision_ms", "llm_ms", "action_head_ms", "policy_total_ms",
            "server_total_ms"} <= set(timing)
    assert timing["server_total_ms"] >= timing["policy_total_ms"] > 0
    assert result.round_trip_ms >= timing["server_total_ms"]


def test_reset_clears_this_clients_ensemble(client, frame):
    client.reset()
    first = client.infer(frame, "pick coke can", seed=1)
    second = client.infer(frame, "pick coke can", seed=2)
    assert not np.array_equal(second.action, second.actions[0])  # blended with the first chunk
    client.reset()
    third = client.infer(frame, "pick coke can", seed=2)
    np.testing.assert_array_equal(third.action, third.actions[0])
    np.testing.assert_array_equal(first.action, first.actions[0])


def test_ping(client):
    reply = client.ping()
    assert reply["status"] == "ok" and reply["busy"] is False and reply["uptime_s"] >= 0


def test_concurrent_clients_have_separate_ensembles(server, frame):
    results = {}

    def run(name, steps):
        with PolicyClient(server.endpoint, timeout_s=30) as c:
            c.reset()
            results[name] = [c.infer(frame, "open the drawer", seed=s) for s in range(steps)]

    threads = [threading.Thread(target=run, args=(n, k)) for n, k in (("a", 4), ("b", 1), ("c", 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results["a"]) == 4 and len(results["b"]) == 1 and len(results["c"]) == 3
    # b's single infer is unaffected by a's and c's history: its action is its chunk's first row.
    np.testing.assert_array_equal(results["b"][0].action, results["b"][0].actions[0])
    # a and c see the same seeds 0, 1, 2 on the same frame: their ensembled actions agree step by step.
    for ra, rc in zip(results["a"][:3], results["c"]):
        np.testing.assert_array_equal(ra.action, rc.action)
    assert server.sessions and len(server.sessions) >= 3


def test_ping_is_answered_while_an_inference_runs(tiny_policy, frame):
    slow = SlowPolicy(tiny_policy, delay_s=2.0)
    server = PolicyServer(slow, bind="tcp://127.0.0.1:*").start()
    try:
        done = {}

        def infer():
            with PolicyClient(server.endpoint, timeout_s=30) as c:
                done["result"] = c.infer(frame, "pick coke can", seed=0)

        worker = threading.Thread(target=infer)
        worker.start()
        assert slow.started.wait(10)
        with PolicyClient(server.endpoint, timeout_s=1.0, retries=0) as pinger:
            started = time.perf_counter()
            reply = pinger.ping()
            ping_ms = (time.perf_counter() - started) * 1e3
            hello = pinger.hello()
        assert reply["busy"] is True and hello["model"]["name"] == "slow-tiny"
        assert ping_ms < 1000  # answered long before the 2 s inference ends
        assert "result" not in done
        worker.join(30)
        assert done["result"].actions.shape == (16, 7)
    finally:
        server.stop()


def test_late_reply_is_never_returned_for_another_request(tiny_policy, frame):
    slow = SlowPolicy(tiny_policy, delay_s=1.0)
    server = PolicyServer(slow, bind="tcp://127.0.0.1:*").start()
    try:
        with PolicyClient(server.endpoint, timeout_s=0.7, retries=2) as c:
            # Three attempts time out (0.7 s each against 1 s inferences); the replies to attempts 1 and 2 arrive
            # during the next attempt on the reconnected socket and must be dropped, not returned.
            with pytest.raises(PolicyTimeout, match="no reply .* within 0.7 s \\(3 attempts\\)"):
                c.infer(frame, "pick coke can", seed=0)
            assert c.dropped_replies >= 2 and c.reconnects == 3
            result = c.infer(frame, "pick coke can", seed=1, timeout_s=20)
            direct = tiny_policy.session().predict_action(Observation(frame, "pick coke can"), seed=1)
            np.testing.assert_array_equal(result.actions, direct.actions)
            assert c.dropped_replies >= 3
    finally:
        server.stop()


def test_busy_when_the_queue_is_full(tiny_policy, frame):
    slow = SlowPolicy(tiny_policy, delay_s=0.5)
    server = PolicyServer(slow, bind="tcp://127.0.0.1:*", max_queue=1).start()
    try:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.endpoint)
        for seq in range(1, 5):
            sock.send(protocol.pack(protocol.INFER, seq, {"images": {"primary": frame}, "instruction": "pick"}))
        replies = {}
        deadline = time.monotonic() + 20
        while len(replies) < 4 and time.monotonic() < deadline:
            if sock.poll(1000):
                message = protocol.unpack(sock.recv())
                replies[message.seq] = message
        sock.close()
        kinds = sorted(m.type for m in replies.values())
        assert len(replies) == 4 and "error" in kinds and "infer" in kinds
        assert all(m.payload["code"] == "busy" for m in replies.values() if m.type == "error")
    finally:
        server.stop()


def raw_call(endpoint: str, body: bytes, timeout_ms: int = 5000) -> protocol.Message:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    try:
        sock.send(body)
        assert sock.poll(timeout_ms), "no reply"
        return protocol.unpack(sock.recv())
    finally:
        sock.close()


@pytest.mark.parametrize(
    "body, code, field, text",
    [
        (b"not msgpack \xc1", "bad_message", None, "not a valid msgpack"),
        (msgpack.packb([1, 2, 3]), "bad_message", None, "must be a msgpack map"),
        (msgpack.packb({"v": 1, "type": "ping"}), "bad_message", "seq", "seq"),
        (msgpack.packb({"v": 99, "type": "ping", "seq": 4}), "unsupported_version", "v", "version 99"),
        (msgpack.packb({"v": 1, "type": "dance", "seq": 5}), "unknown_type", "type", "unknown message type"),
        (msgpack.packb({"v": 1, "type": "infer", "seq": 6, "payload": []}), "bad_message", "payload", "payload"),
        (msgpack.packb({"v": 1, "type": "infer", "seq": 7, "payload": {"instruction": "x"}}),
         "bad_request", "payload.images", "payload.images"),
    ],
)
def test_malformed_messages_get_typed_errors(server, body, code, field, text):
    reply = raw_call(server.endpoint, body)
    assert reply.type == "error" and reply.payload["code"] == code
    assert text in reply.payload["message"]
    assert reply.payload.get("field") == field
    if code in ("unsupported_version", "unknown_type"):
        assert reply.seq == msgpack.unpackb(body)["seq"]


@pytest.mark.parametrize(
    "images, instruction, field, text",
    [
        ({"primary": np.zeros((224, 224, 3), np.float32)}, "pick", "payload.images.primary", "expected dtype uint8"),
        ({"primary": np.zeros((224, 224), np.uint8)}, "pick", "payload.images.primary", "expected shape (H, W, 3)"),
        ({"wrist": np.zeros((224, 224, 3), np.uint8)}, "pick", "payload.images.primary", "missing"),
        ({"primary": np.zeros((5000, 2, 3), np.uint8)}, "pick", "payload.images.primary", "between 1 and 4096"),
        ({"primary": np.zeros((224, 224, 3), np.uint8)}, "  ", "payload.instruction", "non-empty string"),
        ({"primary": "a string"}, "pick", "payload.images.primary", "expected a uint8 array"),
    ],
)
def test_invalid_observations_name_the_field(client, images, instruction, field, text):
    with pytest.raises(ServerError) as info:
        client.infer(images, instruction)
    assert info.value.code == "bad_request" and info.value.field == field and text in info.value.message


def test_oversized_message_gets_too_large(tiny_policy, frame):
    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*", max_message_bytes=100_000).start()
    try:
        with PolicyClient(server.endpoint, timeout_s=10, retries=0) as c:
            with pytest.raises(ServerError, match="too_large: message of .* exceeds the limit of 100000"):
                c.infer(np.zeros((200, 200, 3), np.uint8), "pick")
            # Over twice the limit ZeroMQ drops the connection; the server is still fine afterwards.
            with pytest.raises(PolicyTimeout):
                c.call(protocol.INFER, {"images": {"primary": np.zeros((300, 300, 3), np.uint8)}, "instruction": "x"},
                       timeout_s=0.5)
            assert c.infer(np.zeros((100, 100, 3), np.uint8), "pick", seed=0).actions.shape == (16, 7)
    finally:
        server.stop()


def test_fuzz_two_thousand_bad_messages_then_a_valid_infer(server, frame):
    rng = np.random.default_rng(1234)
    valid = protocol.pack(protocol.INFER, 1, {"images": {"primary": frame[:64, :64]}, "instruction": "pick coke can"})
    envelopes = [
        msgpack.packb({"v": 1, "type": "infer", "seq": 3, "payload": {"images": {"primary": {
            "__ndarray__": True, "dtype": "|u1", "shape": [2**31, 2**31, 3], "data": b"\0"}}, "instruction": "x"}}),
        msgpack.packb({"v": 1, "type": "infer", "seq": 3, "payload": {"images": {"primary": {
            "__ndarray__": True, "dtype": "|O", "shape": [1], "data": b"\0" * 8}}, "instruction": "x"}}),
        msgpack.packb({"v": True, "type": 3, "seq": -5}),
        msgpack.packb({"v": 1, "type": "reset", "seq": 2**64 - 1}),
        b"\x91" * 50_000,
        msgpack.packb({"v": 1, "type": "infer", "seq": 1, "payload": {"images": {"primary": [[1, 2, 3]]},
                                                                      "instruction": 5, "seed": -1}}),
    ]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    sent = 0
    try:
        for i in range(2000):
            choice = i % 5
            if choice == 0:
                body = rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8).tobytes()
            elif choice == 1:
                body = valid[: rng.integers(0, len(valid))]
            elif choice == 2:
                corrupted = bytearray(valid)
                for pos in rng.integers(0, len(valid), 8):
                    corrupted[pos] = rng.integers(0, 256)
                body = bytes(corrupted)
            elif choice == 3:
                body = envelopes[i % len(envelopes)]
            else:
                body = msgpack.packb({"v": 1, "type": "infer", "seq": int(i),
                                      "payload": {"images": {"primary": rng.integers(0, 256, (4, 4, 3)).tolist()},
                                                  "instruction": "x"}})
            frames = [body] if i % 7 else [b"extra-frame", body]
            sock.send_multipart(frames)
            sent += 1
        # Every message is answered (errors, or infers whose corruption happened to stay valid); drain them.
        answered = 0
        while sock.poll(3000):
            sock.recv_multipart()
            answered += 1
            if answered == sent:
                break
        assert answered == sent
    finally:
        sock.close()
    with PolicyClient(server.endpoint, timeout_s=20) as c:
        result = c.infer(frame, "put the carrot on the plate", seed=0)
        assert result.actions.shape == (16, 7) and np.isfinite(result.actions).all()
        assert c.ping()["status"] == "ok"


def test_req_socket_clients_work_too(server, frame):
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    sock.connect(server.endpoint)
    sock.send(protocol.pack(protocol.PING, 42, {}))
    assert sock.poll(5000)
    reply = protocol.unpack(sock.recv())
    sock.close()
    assert reply.type == "ping" and reply.seq == 42


def test_budget_verdict_in_replies_and_ping(tiny_policy, frame, tmp_path):
    from runtime.budgets import LatencyBudget, load_budget

    path = tmp_path / "budget.yaml"
    path.write_text("name: tight\ncontrol_rate_hz: 5\nwarmup_steps: 1\nstages_ms: {vision: 0.001, total: 10000}\n")
    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*", budget=LatencyBudget(load_budget(path))).start()
    try:
        with PolicyClient(server.endpoint, timeout_s=20) as c:
            results = [c.infer(frame, "pick coke can", seed=i) for i in range(4)]
            summary = c.ping()["budget"]
        assert results[0].budget["over"] == []  # warm-up step
        assert all(r.budget["over"] == ["vision"] for r in results[1:])
        assert results[-1].budget["violations"] == {"vision": 3, "total": 0}
        assert summary["steps"] == 3 and summary["stages"]["vision"]["violations"] == 3
        assert summary["stages"]["total"]["p50_ms"] > 0
        timing = results[-1].client_timing
        assert timing["total_ms"] >= timing["transport_ms"] > 0 and timing["serialize_ms"] > 0
    finally:
        server.stop()
