"""Dynamic batching in the server: concurrent clients share forward passes; order, resets and failures per client."""

from __future__ import annotations

import threading
from contextlib import closing

import numpy as np
import pytest
import zmq

from bridge import protocol
from bridge.client import PolicyClient, ServerError
from bridge.server.policy_server import PolicyServer
from policies.api.interface import Observation
from tests.bridge.conftest import Gate, wait_for
from tests.conftest import running_server

TOLERANCE = 1e-5


class RecordingBatchPolicy(Gate):
    """The tiny policy's batching, recording each batch's size; the first batch waits at the gate, and rows whose
    instruction says "explode" fail."""

    def __init__(self, policy, gated: bool = True) -> None:
        super().__init__(policy, gated)
        self.batch_sizes: list[int] = []

    def session(self):
        return self.policy.session()

    def predict_batch(self, requests):
        self.batch_sizes.append(len(requests))
        self.wait_at_the_gate()
        fine = [r for r in requests if "explode" not in r.obs.instruction]
        outputs = iter(self.policy.predict_batch(fine))
        return [RuntimeError("this row exploded") if "explode" in r.obs.instruction else next(outputs)
                for r in requests]


def frames(count):
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8) for _ in range(count)]


def infer_in_thread(endpoint, image, instruction, seed, results, name):
    def run():
        with PolicyClient(endpoint, timeout_s=60, retries=0) as c:
            try:
                results[name] = c.infer(image, instruction, seed=seed)
            except ServerError as error:
                results[name] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_requests_queued_during_a_pass_share_the_next_one(tiny_policy):
    policy = RecordingBatchPolicy(tiny_policy)
    images = frames(4)
    texts = ["pick coke can", "put the spoon on the towel please", "explode", "open the top drawer"]
    results: dict = {}
    with running_server(policy, max_batch=4) as server, policy:
        threads = [infer_in_thread(server.endpoint, images[0], texts[0], 0, results, 0)]
        assert policy.started.wait(60)  # the first request runs alone, held at the gate
        threads += [infer_in_thread(server.endpoint, images[i], texts[i], i, results, i) for i in (1, 2, 3)]
        with PolicyClient(server.endpoint, timeout_s=60) as c:
            wait_for(lambda: c.ping()["queued"] == 3)
            c.reset()  # an idle client's reset is answered while the pass is held
            assert c.ping()["busy"] is True
        policy.release()
        for thread in threads:
            thread.join(60)
    assert policy.batch_sizes == [1, 3]
    assert isinstance(results[2], ServerError) and results[2].code == "inference_failed"
    assert "RuntimeError: this row exploded" in results[2].message
    for i in (0, 1, 3):
        alone = tiny_policy.session().predict_action(Observation(images[i], texts[i]), seed=i)
        np.testing.assert_allclose(results[i].actions, alone.actions, atol=TOLERANCE, rtol=0)
    assert server.inferences == 4 and server.batches == 2


def test_the_batch_wait_gathers_active_clients_that_send_after_the_first(tiny_policy):
    policy = RecordingBatchPolicy(tiny_policy, gated=False)
    # The wait only bounds a failing test: the batch runs as soon as every active client is in it.
    images = frames(2)
    results: dict = {}
    with running_server(policy, max_batch=4, batch_wait_ms=60_000, active_window_s=600) as server:
        with PolicyClient(server.endpoint, timeout_s=60, retries=0) as a, \
                PolicyClient(server.endpoint, timeout_s=60, retries=0) as b:
            a.infer(images[0], "pick coke can", seed=1)  # alone: no other client is active yet
            thread = threading.Thread(target=lambda: results.update(b=b.infer(images[1], "open drawer", seed=2)))
            thread.start()  # b's request waits for a, which is active
            # b's infer has arrived (its session is active) and the worker has taken it: it is waiting for a.
            wait_for(lambda: sum(s.last_infer > 0 for s in list(server.sessions.values())) == 2
                     and server._jobs.qsize() == 0)
            assert "b" not in results and policy.batch_sizes == [1]
            assert a.ping()["status"] == "ok"  # pings are never delayed by the wait
            results["a"] = a.infer(images[0], "pick coke can", seed=3)
            thread.join(60)
    assert policy.batch_sizes == [1, 2]
    assert results["a"].batch_size == 2 and results["b"].batch_size == 2


def test_a_lone_client_never_waits_for_company(tiny_policy):
    policy = RecordingBatchPolicy(tiny_policy, gated=False)
    with running_server(policy, max_batch=8, batch_wait_ms=600_000) as server:
        with PolicyClient(server.endpoint, timeout_s=60, retries=0) as client:  # would time out if it waited
            for seed in range(3):
                assert client.infer(frames(1)[0], "pick coke can", seed=seed).batch_size == 1
    assert policy.batch_sizes == [1, 1, 1]


def send(sock, kind, seq, payload):
    sock.send(protocol.pack(kind, seq, payload))


def receive(sock):
    assert sock.poll(60_000), "no reply"
    return protocol.unpack(sock.recv())


def test_one_clients_requests_stay_in_order_across_batches(tiny_policy):
    """A client that pipelines infer, infer, reset: its second infer waits for the next batch (its ensemble must
    have the first chunk), and its reset comes after both."""
    policy = RecordingBatchPolicy(tiny_policy)
    images = frames(3)
    results: dict = {}
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    with running_server(policy, max_batch=4) as server, closing(sock), policy:
        sock.connect(server.endpoint)
        held = infer_in_thread(server.endpoint, images[2], "close the drawer", 9, results, "held")
        assert policy.started.wait(60)
        send(sock, "infer", 1, {"images": {"primary": images[0]}, "instruction": "pick coke can", "seed": 1})
        send(sock, "infer", 2, {"images": {"primary": images[1]}, "instruction": "pick coke can", "seed": 2})
        send(sock, "reset", 3, {})
        other = infer_in_thread(server.endpoint, images[1], "move near", 5, results, "other")
        wait_for(lambda: server._jobs.qsize() == 4)
        policy.release()
        replies = [receive(sock) for _ in range(3)]
        held.join(60)
        other.join(60)
    assert [r.seq for r in replies] == [1, 2, 3] and [r.type for r in replies] == ["infer", "infer", "reset"]
    assert policy.batch_sizes == [1, 2, 1]  # held; (infer 1, other); infer 2
    reference = tiny_policy.session()
    reference.predict_action(Observation(images[0], "pick coke can"), seed=1)
    second = reference.predict_action(Observation(images[1], "pick coke can"), seed=2)
    np.testing.assert_allclose(replies[1].payload["action"], second.action, atol=TOLERANCE, rtol=0)
    assert replies[1].payload["batch_size"] == 1 and replies[0].payload["batch_size"] == 2


def test_batch_options_are_checked(tiny_policy):
    with pytest.raises(ValueError, match="max_batch: expected an integer >= 1, got 0"):
        PolicyServer(tiny_policy, max_batch=0)
    with pytest.raises(ValueError, match="batch_wait_ms: expected a number >= 0"):
        PolicyServer(tiny_policy, batch_wait_ms=-1.0)


def test_in_process_requests_join_the_batches_of_zeromq_clients(tiny_policy):
    """``submit`` (the websocket endpoints' path): checked like a ZeroMQ request, batched with them, answered by
    callback; refusals arrive as error replies naming the field."""
    policy = RecordingBatchPolicy(tiny_policy)
    image = frames(1)[0]
    replies: dict = {}
    arrived = {name: threading.Event() for name in ("first", "in_process", "bad", "unknown", "reset")}

    def deliver_to(name):
        def deliver(kind, payload):
            replies[name] = (kind, payload)
            arrived[name].set()
        return deliver

    results: dict = {}
    with running_server(policy, max_batch=4) as server, policy:
        threads = [infer_in_thread(server.endpoint, image, "pick coke can", 1, results, "zmq-first")]
        assert policy.started.wait(60)
        server.submit(b"robot-a", protocol.INFER, {"images": {"primary": image}, "instruction": "open the drawer",
                                                  "seed": 2}, deliver_to("in_process"))
        threads.append(infer_in_thread(server.endpoint, image, "put the spoon", 3, results, "zmq-second"))
        server.submit(b"robot-b", protocol.INFER, {"images": {"primary": image.astype(np.float32)},
                                                  "instruction": "x"}, deliver_to("bad"))
        server.submit(b"robot-b", "hello", {}, deliver_to("unknown"))
        server.submit(b"robot-b", protocol.RESET, {}, deliver_to("reset"))
        for name in ("bad", "unknown", "reset"):  # refused or run at once, while the pass is held
            assert arrived[name].wait(60)
        wait_for(lambda: server._jobs.qsize() == 2)
        policy.release()
        assert arrived["in_process"].wait(60)
        for thread in threads:
            thread.join(60)
        assert b"robot-a" in server.sessions
        server.forget_session(b"robot-a")
        assert b"robot-a" not in server.sessions
    assert policy.batch_sizes == [1, 2]
    kind, payload = replies["in_process"]
    assert kind == protocol.INFER and payload["batch_size"] == 2
    alone = tiny_policy.session().predict_action(Observation(image, "open the drawer"), seed=2)
    np.testing.assert_allclose(payload["actions"], alone.actions, atol=TOLERANCE, rtol=0)
    assert replies["bad"][0] == protocol.ERROR and replies["bad"][1]["field"] == "payload.images.primary"
    assert replies["unknown"][0] == protocol.ERROR and replies["unknown"][1]["code"] == protocol.UNKNOWN_TYPE
    assert replies["reset"] == (protocol.RESET, {"ok": True})
