import threading

import msgpack
import numpy as np
import pytest
import zmq

from bridge import protocol
from bridge.client import PolicyClient, PolicyTimeout, ServerError
from policies.api.interface import ChunkContinuation, Observation
from tests.bridge.conftest import GatedPolicy, WrappedPolicy, wait_for
from tests.conftest import running_server
from tests.policies.test_continuation import plan_prefix


def test_hello_announces_model_and_conventions(client):
    info = client.hello()
    assert info["server"] == "vlart" and info["protocol"] == 1 and info["supported_versions"] == [1]
    assert info["model"]["name"] == "cogact-tiny" and info["model"]["parameters"] == 357_703
    conv = info["conventions"]
    assert conv["action_dim"] == 7 and conv["chunk_length"] == 16 and conv["control_rate_hz"] == 5.0
    assert conv["image_keys"] == ["primary"] and conv["image_size"] == 224
    assert conv["gripper"].startswith("absolute: 1 = open") and conv["rotation"] == "euler_xyz_delta"
    assert info["continuation"] == {"fields": ["prefix", "delay_ticks"], "method": "repaint",
                                    "soft_mask": "rtc_exponential"}


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
    assert reply["status"] == "ok" and reply["busy"] is False and "uptime_s" in reply


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
    # a and c see the same seeds 0, 1, 2 on the same frame: their ensembled actions agree step by step (to float
    # rounding: the server batches concurrent requests, and a batch's rows may differ in the last bits).
    for ra, rc in zip(results["a"][:3], results["c"]):
        np.testing.assert_allclose(ra.action, rc.action, atol=1e-5, rtol=0)
    assert server.sessions and len(server.sessions) >= 3


def test_ping_is_answered_while_an_inference_runs(tiny_policy, frame):
    gated = GatedPolicy(tiny_policy)
    with running_server(gated) as server, gated:
        done = {}

        def infer():
            with PolicyClient(server.endpoint, timeout_s=60) as c:
                done["result"] = c.infer(frame, "pick coke can", seed=0)

        worker = threading.Thread(target=infer)
        worker.start()
        assert gated.started.wait(30)
        # The inference cannot end before the gate opens, so these replies cannot have waited for it.
        with PolicyClient(server.endpoint, timeout_s=30, retries=0) as pinger:
            reply = pinger.ping()
            hello = pinger.hello()
        assert reply["busy"] is True and reply["worker_alive"] is True and hello["model"]["name"] == "gated-tiny"
        assert "result" not in done
        gated.release()
        worker.join(60)
        assert done["result"].actions.shape == (16, 7)


def test_a_retried_infer_runs_once_and_the_ensemble_matches_a_client_that_never_retried(tiny_policy, frame):
    gated = GatedPolicy(tiny_policy)
    with running_server(gated) as server, gated:
        with PolicyClient(server.endpoint, timeout_s=0.5, retries=100) as retrying:
            retrying.reset()
            first = {}
            thread = threading.Thread(target=lambda: first.update(r=retrying.infer(frame, "pick coke can", seed=0)))
            thread.start()
            # Open the gate only once a retry has reached the server while the first attempt is running.
            wait_for(lambda: server.joined_retries >= 1)
            gated.release()
            thread.join(60)
            assert retrying.reconnects >= 1 and gated.inferences == 1 and server.inferences == 1
            retried = [first["r"]] + [retrying.infer(frame, "pick coke can", seed=s) for s in (1, 2)]
        with PolicyClient(server.endpoint, timeout_s=60) as steady:
            steady.reset()
            never_retried = [steady.infer(frame, "pick coke can", seed=s) for s in (0, 1, 2)]
        assert gated.inferences == 6 and server.inferences == 6
        for a, b in zip(retried, never_retried):
            np.testing.assert_array_equal(a.actions, b.actions)
            np.testing.assert_array_equal(a.action, b.action)  # same ensemble history, step by step
        assert not np.array_equal(retried[2].action, retried[2].actions[0])  # the ensemble did blend


def test_a_retry_after_the_reply_was_lost_gets_the_remembered_reply(server, frame):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    try:
        request = {"images": {"primary": frame}, "instruction": "pick coke can", "seed": 3}
        replies = []
        for seq in (10, 11):  # the same logical request 10, sent twice (its first reply "lost" by the client)
            sock.send(protocol.pack(protocol.INFER, seq, request, request_id=10))
            assert sock.poll(60_000)
            replies.append(protocol.unpack(sock.recv()))
        assert [r.seq for r in replies] == [10, 11] and server.inferences == 1 and server.joined_retries == 1
        np.testing.assert_array_equal(replies[0].payload["actions"], replies[1].payload["actions"])
    finally:
        sock.close()


def test_late_reply_is_never_returned_for_another_request(tiny_policy, frame):
    gated = GatedPolicy(tiny_policy)
    with running_server(gated) as server, gated:
        with PolicyClient(server.endpoint, timeout_s=0.2, retries=1) as c:
            # Both attempts of request 1 time out while its inference waits at the gate.
            with pytest.raises(PolicyTimeout, match="no reply .* within 0.2 s \\(2 attempts\\)"):
                c.infer(frame, "pick coke can", seed=0)
            assert c.reconnects == 2 and c.dropped_replies == 0
            # Request 2 queues behind request 1; then request 1 finishes and its replies (to seqs 1 and 2) reach
            # this client while it waits for seq 3: both are dropped, and request 2's own reply is returned.
            threading.Thread(target=lambda: (wait_for(lambda: server._jobs.qsize() == 1), gated.release())).start()
            result = c.infer(frame, "pick coke can", seed=1, timeout_s=60)
            assert result.seq == 3 and c.dropped_replies == 2
            direct = tiny_policy.session().predict_action(Observation(frame, "pick coke can"), seed=1)
            np.testing.assert_array_equal(result.actions, direct.actions)
        assert gated.inferences == 2


def test_busy_when_the_queue_is_full(tiny_policy, frame):
    gated = GatedPolicy(tiny_policy)
    with running_server(gated, max_queue=1) as server, gated:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.endpoint)
        request = {"images": {"primary": frame}, "instruction": "pick"}
        sock.send(protocol.pack(protocol.INFER, 1, request))
        assert gated.started.wait(30)  # request 1 runs; request 2 fills the queue; 3 and 4 find it full
        for seq in range(2, 5):
            sock.send(protocol.pack(protocol.INFER, seq, request))
        replies = {}
        while len(replies) < 2:
            assert sock.poll(30_000)
            message = protocol.unpack(sock.recv())
            replies[message.seq] = message
        gated.release()
        while len(replies) < 4:
            assert sock.poll(30_000)
            message = protocol.unpack(sock.recv())
            replies[message.seq] = message
        sock.close()
        assert {seq: m.type for seq, m in replies.items()} == {1: "infer", 2: "infer", 3: "error", 4: "error"}
        assert replies[3].payload["code"] == replies[4].payload["code"] == "busy"


class FailingPolicy(WrappedPolicy):
    """The tiny policy whose sessions fail in a chosen way on their first inference, then work."""

    def __init__(self, policy, failure) -> None:
        super().__init__(policy)
        self.failure = failure
        self.failed = False

    def session(self):
        outer, inner = self, self.policy.session()

        class Session:
            conventions = outer.conventions

            def reset(self):
                inner.reset()

            def predict_action(self, obs, seed=None):
                output = inner.predict_action(obs, seed=seed)
                if not outer.failed:
                    outer.failed = True
                    return outer.failure(output)
                return output

        return Session()


def raise_value_error(output):
    raise ValueError("shape mismatch deep inside the model")


def unencodable_actions(output):
    output.action = np.array([object()])  # an object array: the reply cannot be encoded
    return output


def test_a_policy_failure_is_inference_failed_not_bad_request(tiny_policy, frame, caplog):
    with running_server(FailingPolicy(tiny_policy, raise_value_error)) as server:
        with PolicyClient(server.endpoint, timeout_s=60) as c:
            with pytest.raises(ServerError) as info:
                c.infer(frame, "pick coke can", seed=0)
            assert info.value.code == "inference_failed" and info.value.field is None
            assert "ValueError: shape mismatch deep inside the model" in info.value.message
            assert c.infer(frame, "pick coke can", seed=0).actions.shape == (16, 7)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "vlart.bridge.server")
    assert "Traceback" in logged and "shape mismatch deep inside the model" in logged


def test_a_reply_that_cannot_be_encoded_is_answered_and_the_worker_goes_on(tiny_policy, frame):
    with running_server(FailingPolicy(tiny_policy, unencodable_actions)) as server:
        with PolicyClient(server.endpoint, timeout_s=60, retries=0) as c:
            with pytest.raises(ServerError, match="inference_failed: CodecError"):
                c.infer(frame, "pick coke can", seed=0)
            assert c.ping()["worker_alive"] is True
            assert c.infer(frame, "pick coke can", seed=0).actions.shape == (16, 7)


def test_budget_failures_are_answered_and_both_threads_go_on(tiny_policy, frame):
    class BrokenBudget:
        def observe(self, steps):
            raise KeyError("stage")

        def summary(self):
            raise ZeroDivisionError("no steps yet")

    with running_server(tiny_policy, budget=BrokenBudget()) as server:
        with PolicyClient(server.endpoint, timeout_s=60, retries=0) as c:
            for _ in range(2):
                with pytest.raises(ServerError, match="inference_failed: KeyError"):
                    c.infer(frame, "pick coke can", seed=0)
                with pytest.raises(ServerError, match="internal_error: ZeroDivisionError: no steps yet"):
                    c.ping()
            assert c.hello()["server"] == "vlart" and server.worker_alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's end is the point
def test_ping_reports_a_stopped_worker_and_requests_get_unavailable(tiny_policy, frame):
    def stop_the_thread(output):
        raise SystemExit("a library called exit() in the inference thread")

    with running_server(FailingPolicy(tiny_policy, stop_the_thread)) as server:
        with PolicyClient(server.endpoint, timeout_s=60, retries=0) as c:
            with pytest.raises(ServerError, match="unavailable: the inference worker stopped during this request"):
                c.infer(frame, "pick coke can", seed=0)
            wait_for(lambda: not server.worker_alive())
            reply = c.ping()
            assert reply["status"] == "unavailable" and reply["worker_alive"] is False
            with pytest.raises(ServerError, match="unavailable: the inference worker has stopped"):
                c.infer(frame, "pick coke can", seed=0)


def raw_call(endpoint: str, body: bytes, timeout_ms: int = 60_000) -> protocol.Message:
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
        ({"primary": "a string"}, "pick", "payload.images.primary", "expected a numpy uint8 array"),
    ],
)
def test_invalid_observations_name_the_field(client, images, instruction, field, text):
    with pytest.raises(ServerError) as info:
        client.infer(images, instruction)
    assert info.value.code == "bad_request" and info.value.field == field and text in info.value.message


def test_oversized_message_gets_too_large(tiny_policy, frame):
    with running_server(tiny_policy, max_message_bytes=100_000) as server:
        with PolicyClient(server.endpoint, timeout_s=60, retries=0) as c:
            with pytest.raises(ServerError, match="too_large: message of .* exceeds the limit of 100000"):
                c.infer(np.zeros((200, 200, 3), np.uint8), "pick")
            # Over twice the limit ZeroMQ drops the connection; the server is still fine afterwards.
            with pytest.raises(PolicyTimeout):
                c.call(protocol.INFER, {"images": {"primary": np.zeros((300, 300, 3), np.uint8)}, "instruction": "x"},
                       timeout_s=0.5)
            assert c.infer(np.zeros((100, 100, 3), np.uint8), "pick", seed=0).actions.shape == (16, 7)


def test_an_oversized_message_is_refused_before_it_is_decoded(tiny_policy):
    with running_server(tiny_policy, max_message_bytes=1000) as server:
        # A readable envelope followed by 1,500 bytes that are not msgpack: decoding it would say bad_message.
        body = b"\x84" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("seq") + msgpack.packb(77) \
            + msgpack.packb("type") + msgpack.packb("infer") + msgpack.packb("payload") + b"\xc1" * 1500
        reply = raw_call(server.endpoint, body)
        assert reply.type == "error" and reply.payload["code"] == "too_large" and reply.seq == 77


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
        while sock.poll(60_000):
            sock.recv_multipart()
            answered += 1
            if answered == sent:
                break
        assert answered == sent
    finally:
        sock.close()
    with PolicyClient(server.endpoint, timeout_s=60) as c:
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
    from runtime.core.budgets import LatencyBudget, load_budget

    path = tmp_path / "budget.yaml"
    path.write_text("name: tight\ncontrol_rate_hz: 5\nwarmup_steps: 1\nstages_ms: {vision: 0.001, total: 10000}\n")
    with running_server(tiny_policy, budget=LatencyBudget(load_budget(path))) as server:
        with PolicyClient(server.endpoint, timeout_s=60) as c:
            results = [c.infer(frame, "pick coke can", seed=i) for i in range(4)]
            summary = c.ping()["budget"]
        assert results[0].budget["over"] == []  # warm-up step
        assert all(r.budget["over"] == ["vision"] for r in results[1:])
        assert results[-1].budget["violations"] == {"vision": 3, "total": 0}
        assert summary["steps"] == 3 and summary["stages"]["vision"]["violations"] == 3
        assert summary["stages"]["total"]["p50_ms"] > 0
        timing = results[-1].client_timing
        assert timing["total_ms"] >= timing["transport_ms"] > 0 and timing["serialize_ms"] > 0


def test_an_instruction_of_only_image_placeholders_is_a_bad_request(client, frame):
    with pytest.raises(ServerError) as info:
        client.infer(frame, " <IMAGE> <image>")
    assert info.value.code == "bad_request" and info.value.field == "payload.instruction"
    assert "empty once CogACT's prompt builder removes '<image>'" in info.value.message


def test_infer_with_a_prefix_reproduces_its_frozen_rows(client, tiny_policy, frame):
    prefix = plan_prefix(tiny_policy.statistics, 6)
    result = client.infer(frame, "put the carrot on the plate", seed=5, prefix=prefix, delay_ticks=3)
    np.testing.assert_allclose(result.actions[:3], prefix[:3], atol=1e-5)
    direct = tiny_policy.session().predict_action(Observation(frame, "put the carrot on the plate"), seed=5,
                                                  continuation=ChunkContinuation(prefix, delay_ticks=3))
    np.testing.assert_array_equal(result.actions, direct.actions)
    plain = client.infer(frame, "put the carrot on the plate", seed=5)
    assert not np.array_equal(plain.actions, result.actions)


def test_a_prefix_without_delay_ticks_and_delay_ticks_zero_alone(client, tiny_policy, frame):
    obs = Observation(frame, "open the drawer")
    prefix = plan_prefix(tiny_policy.statistics, 4)
    base = {"images": {"primary": frame}, "instruction": obs.instruction, "seed": 2}
    soft_only, _, _ = client.call(protocol.INFER, {**base, "prefix": prefix})  # delay_ticks defaults to 0
    direct = tiny_policy.session().predict_action(obs, seed=2, continuation=ChunkContinuation(prefix, 0))
    np.testing.assert_array_equal(soft_only["actions"], direct.actions)
    zero_alone, _, _ = client.call(protocol.INFER, {**base, "delay_ticks": 0})  # nothing to continue: a plain infer
    np.testing.assert_array_equal(zero_alone["actions"], tiny_policy.session().predict_action(obs, seed=2).actions)


def test_a_policy_without_the_continuation_keyword_still_serves_plain_infers(tiny_policy, frame):
    with running_server(GatedPolicy(tiny_policy, gated=False)) as server:
        with PolicyClient(server.endpoint, timeout_s=60) as c:
            result = c.infer(frame, "pick coke can", seed=1)
        direct = tiny_policy.session().predict_action(Observation(frame, "pick coke can"), seed=1)
        np.testing.assert_array_equal(result.actions, direct.actions)


@pytest.mark.parametrize(
    "extra, field, text",
    [
        ({"prefix": np.zeros((3, 6), np.float32)}, "payload.prefix", "expected shape (P, 7) with P <= 16, got (3, 6)"),
        ({"prefix": np.zeros((17, 7), np.float32)}, "payload.prefix", "with P <= 16, got (17, 7)"),
        ({"prefix": np.full((4, 7), np.nan, np.float32)}, "payload.prefix", "contains NaN or infinity"),
        ({"prefix": np.zeros((2, 7), np.float32), "delay_ticks": 3}, "payload.prefix",
         "expected at least delay_ticks = 3 rows"),
        ({"prefix": [[0.0] * 7]}, "payload.prefix", "expected a numeric array of shape (P, 7), got list"),
        ({"prefix": np.zeros((2, 7), bool)}, "payload.prefix", "expected a numeric array"),
        ({"prefix": np.zeros((4, 7), np.float32), "delay_ticks": 16}, "payload.delay_ticks",
         "expected an integer in [0, 16), got 16"),
        ({"prefix": np.zeros((4, 7), np.float32), "delay_ticks": -1}, "payload.delay_ticks", "got -1"),
        ({"prefix": np.zeros((4, 7), np.float32), "delay_ticks": 1.5}, "payload.delay_ticks", "got 1.5"),
        ({"prefix": np.zeros((4, 7), np.float32), "delay_ticks": True}, "payload.delay_ticks", "got True"),
        ({"delay_ticks": 2}, "payload.delay_ticks", "expected 0 or no delay_ticks without a prefix, got 2"),
    ],
)
def test_a_bad_continuation_is_a_bad_request_naming_the_field(client, frame, extra, field, text):
    payload = {"images": {"primary": frame}, "instruction": "pick coke can", **extra}
    with pytest.raises(ServerError) as info:
        client.call(protocol.INFER, payload)
    assert info.value.code == "bad_request" and info.value.field == field and text in info.value.message
