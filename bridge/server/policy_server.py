"""The vlart action server: a ZeroMQ ROUTER socket in front of a shared policy, and its threads.

One socket thread owns the ROUTER: it checks every message's size, decodes and validates it, answers ``hello`` and
``ping`` at once, and queues ``infer`` for the inference worker, so a long forward pass never delays a ping. A
``reset`` runs at once too, unless its client has an inference queued or running: then it waits for that one, so
resets stay ordered with the infers of their client. The worker batches dynamically (``bridge.server.batching``) and
hands replies back over an inproc socket; only the socket thread touches the ROUTER. Each client (ROUTER identity)
has its own session, and a retried request joins its first attempt (``bridge.server.sessions``). In-process clients
(the websocket endpoints) ``submit`` their requests straight to the same checks and queue
(``bridge.server.requests``), and get their replies by callback, without a socket or an encoding in between.

Every refused message gets an ``error`` reply; whatever goes wrong in one job, the worker answers that request with an
error and goes on. With CURVE, only the client keys of the allowlist are served (``bridge.server.curve``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from typing import Any, Callable, Optional

import zmq

from bridge import protocol
from bridge.keys import ServerKeys
from bridge.limits import InflightBytes
from bridge.protocol import ProtocolError
from bridge.server.batching import Batcher
from bridge.server.curve import CurveAllowlist, serve_curve
from bridge.server.requests import Job, RequestQueue
from bridge.server.sessions import ClientSession, Sessions
from policies.api.interface import ServablePolicy
from runtime.core.budgets import LatencyBudget
from runtime.core.safe_repr import bounded_repr, describe_exception

log = logging.getLogger("vlart.bridge.server")

DEFAULT_BIND = "tcp://127.0.0.1:5555"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 2**20
DEFAULT_MAX_INFLIGHT_BYTES = 256 * 2**20
RECEIVE_HWM = 8  # messages ZeroMQ buffers per peer before it stops reading that peer's connection
SERVER_NAME = "vlart"
DEFAULT_MAX_BATCH = 8
DEFAULT_BATCH_WAIT_MS = 5.0  # chosen with benchmarks/serving_scale.py (README, Serving a fleet)
ACTIVE_WINDOW_S = 1.0


class PolicyServer:
    """Serves ``policy`` on ``bind``. ``start()`` runs it in background threads; ``serve_forever()`` in this thread.

    ``max_message_bytes``: larger requests get a ``too_large`` error; beyond twice that ZeroMQ drops the connection
    without reading the message (so a huge message cannot exhaust memory). ``max_queue``: pending inferences beyond
    it get ``busy``, and so do requests that would take the bytes of the requests queued or running (ZeroMQ's and the
    in-process clients' together) over ``max_inflight_bytes``. Sessions idle for ``session_idle_s`` are forgotten.
    With a ``budget``, every inference is checked against it (the step ``total`` is ``server_total``: receipt to
    reply) and replies say which stages went over.

    Dynamic batching: up to ``max_batch`` infers of different clients run as one forward pass, gathered from what is
    queued when the worker is free and, for at most ``batch_wait_ms``, what arrives after, but only while a client
    that is active (an infer within ``active_window_s`` plus two passes) is missing from the batch: a lone client
    never waits, and clients in lockstep close the batch as soon as the last of them has sent. ``max_batch=1`` turns
    batching off. Policies without ``predict_batch`` run each row on its own.
    """

    def __init__(
        self,
        policy: ServablePolicy,
        bind: str = DEFAULT_BIND,
        curve: Optional[ServerKeys] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_queue: int = 16,
        session_idle_s: float = 600.0,
        context: Optional[zmq.Context] = None,
        budget: Optional[LatencyBudget] = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        active_window_s: float = ACTIVE_WINDOW_S,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
    ) -> None:
        if max_inflight_bytes < max_message_bytes:
            raise ValueError(f"max_inflight_bytes ({max_inflight_bytes}) must be at least max_message_bytes "
                             f"({max_message_bytes}), or no request of the largest size could ever run")
        self.policy = policy
        self._sessions = Sessions(policy, session_idle_s)
        self._jobs: "queue.Queue[Job]" = queue.Queue(maxsize=max_queue)
        self._batcher = Batcher(policy, self._jobs, self._sessions, budget, max_batch, batch_wait_ms, active_window_s)
        self.budget = budget
        self.bind = bind
        self.curve = curve
        self.max_message_bytes = max_message_bytes
        self.inflight = InflightBytes(max_inflight_bytes)
        self._requests = RequestQueue(policy, self._sessions, self._jobs, self.inflight, self.worker_alive)
        # Why a server thread ended unexpectedly (the server is then unusable): what ping and the health checks report.
        self.failure: Optional[str] = None
        self.context = context or zmq.Context.instance()
        self.endpoint: Optional[str] = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._results_address = f"inproc://vlart-results-{id(self)}"
        self._started = time.monotonic()
        self._allowlist: Optional[CurveAllowlist] = None
        self._worker: Optional[threading.Thread] = None
        self._hello_payload = {
            "server": SERVER_NAME,
            "protocol": protocol.PROTOCOL_VERSION,
            "supported_versions": list(protocol.SUPPORTED_VERSIONS),
            "model": policy.metadata,
            "conventions": policy.conventions.to_dict(),
            "max_message_bytes": max_message_bytes,
            "continuation": {**protocol.CONTINUATION,
                             "method": policy.metadata.get("continuation_method", "repaint")},
        }

    @property
    def sessions(self) -> dict[bytes, ClientSession]:
        """The client sessions by identity (to read: ``forget_session`` drops one)."""
        return self._sessions.by_identity

    @property
    def inferences(self) -> int:
        """Requests inferred (a retried request counts once)."""
        return self._batcher.inferences

    @property
    def batches(self) -> int:
        """Forward passes run for them."""
        return self._batcher.batches

    @property
    def joined_retries(self) -> int:
        """Attempts answered with another attempt's result."""
        return self._sessions.joined_retries

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def _open_router(self) -> zmq.Socket:
        router = self.context.socket(zmq.ROUTER)
        router.linger = 0
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client that reconnects with its id keeps its session
        router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        router.setsockopt(zmq.SNDHWM, 1000)
        router.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        if self.curve is not None:
            self._allowlist = serve_curve(router, self.context, self.curve)
        router.bind(self.bind)
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        return router

    def start(self) -> "PolicyServer":
        """Bind and serve in background threads; returns once the socket is bound."""
        thread = threading.Thread(target=self.serve_forever, name="vlart-socket", daemon=True)
        thread.start()
        self._threads.append(thread)
        self._ready.wait(timeout=30)
        if self.endpoint is None:
            raise RuntimeError(f"server failed to bind {self.bind}")
        return self

    def request_stop(self) -> None:
        """Ask the serving loop to finish (safe from a signal handler); ``serve_forever`` then cleans up."""
        self._stop.set()

    def join(self) -> None:
        """Wait until the server has stopped (``request_stop`` or a signal) or has failed (``failure`` says why);
        wakes up often so signals are handled."""
        for thread in self._threads:
            while thread.is_alive() and self.failure is None:
                thread.join(0.2)

    def record_failure(self, thread: str, exc: BaseException) -> None:
        """A thread this server depends on (its own, or an endpoint's in front of it) ended with ``exc``: logged with
        its traceback, reported by ``ping``, and ``join`` returns so that ``vlart serve`` exits non-zero for its
        supervisor."""
        log.critical("the %s stopped", thread, exc_info=exc)
        if self.failure is None:
            self.failure = f"the {thread} stopped: {describe_exception(exc)}"

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def serve_forever(self) -> None:
        results = self.context.socket(zmq.PULL)
        results.bind(self._results_address)
        try:
            router = self._open_router()
        except Exception:
            results.close()
            self._ready.set()
            raise
        worker = self._worker = threading.Thread(target=self._work, name="vlart-inference", daemon=True)
        worker.start()
        log.info("serving %s on %s", self.policy.metadata.get("name"), self.endpoint)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(results, zmq.POLLIN)
        try:
            self._serve_loop(poller, router, results, worker)
        except Exception as exc:  # recorded and logged with its traceback: join() returns and the process exits 1
            self.record_failure("socket thread", exc)
        finally:
            self._stop.set()
            worker.join(timeout=30)
            router.close(linger=0)
            results.close(linger=0)
            if self._allowlist is not None:
                self._allowlist.authenticator.stop()
            log.info("server on %s stopped", self.endpoint)

    def _serve_loop(self, poller: zmq.Poller, router: zmq.Socket, results: zmq.Socket,
                    worker: threading.Thread) -> None:
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            events = dict(poller.poll(100))
            if router in events:
                self._drain_requests(router)
            if results in events:
                while True:
                    try:
                        frames = results.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    router.send_multipart(frames)
            if not worker.is_alive():
                self._refuse_queued(router)
            if self._allowlist is not None:
                self._allowlist.refresh()
            if time.monotonic() - last_sweep > 5.0:
                self._sessions.forget_idle()
                last_sweep = time.monotonic()

    # -- socket thread ---------------------------------------------------------------------------------------------

    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _drain_requests(self, router: zmq.Socket) -> None:
        for _ in range(1000):  # bounded, so results are forwarded even under a flood of requests
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            if self._allowlist is not None and not self._allowlist.allows(frames[-1].get("User-Id")):
                log.warning("dropped a message from a client key that is no longer authorised")
                continue
            envelope, body = [frame.bytes for frame in frames[:-1]], frames[-1].bytes
            del frames  # the message is held once (as body), not twice, while it is handled
            reply = self._handle(envelope, body)
            if reply is not None:
                router.send_multipart([*envelope, reply])

    def _handle(self, envelope: list[bytes], body: bytes) -> Optional[bytes]:
        """The reply to one ROUTER message (None: a retry, answered when its request is done). Never raises: whatever
        a message makes fail becomes its error reply, under its seq when that could be read."""
        received = time.perf_counter()
        seq = protocol.UNKNOWN_SEQ
        try:
            if len(body) > self.max_message_bytes:  # before decoding: an oversized body is never parsed
                raise ProtocolError(
                    protocol.TOO_LARGE,
                    f"message of {len(body)} bytes exceeds the limit of {self.max_message_bytes}",
                    seq=protocol.peek_seq(body),
                )
            message = protocol.unpack(body)
            seq = message.seq
            return self._dispatch(envelope, message, received, len(body))
        except ProtocolError as error:
            return protocol.error_reply(error)
        except Exception as exc:  # the socket thread must outlive any one message
            log.error("a message (seq %d) failed: %s", seq, traceback.format_exc())
            return protocol.error_reply(ProtocolError(protocol.INTERNAL_ERROR, describe_exception(exc), seq=seq))

    def forget_session(self, identity: bytes) -> None:
        """Drop a client's session (an in-process client that has gone); a job of it still queued runs."""
        self._sessions.forget(identity)

    def _dispatch(self, envelope: list[bytes], message: protocol.Message, received: float,
                  size: int) -> Optional[bytes]:
        kind, seq, payload = message.type, message.seq, message.payload
        if kind == protocol.PING:
            alive = self.worker_alive()
            problem = self.failure
            reply = {
                "status": "ok" if problem is None else protocol.UNAVAILABLE,
                "worker_alive": alive,
                "busy": self._batcher.busy.is_set(),
                "queued": self._batcher.queued(),
                "inflight_bytes": self.inflight.held,
                "max_batch": self._batcher.max_batch,
                "sessions": len(self.sessions),
                "uptime_s": round(time.monotonic() - self._started, 3),
            }
            if problem is not None:
                reply["failure"] = problem
            if self.budget is not None:
                reply["budget"] = self.budget.summary()
            return protocol.pack(protocol.PING, seq, reply)
        if kind == protocol.HELLO:
            session = self._sessions.get(envelope[0])
            name = payload.get("name")
            session.name = name[:64] if isinstance(name, str) else "?"
            return protocol.pack(protocol.HELLO, seq, self._hello_payload)
        if kind not in (protocol.INFER, protocol.RESET):
            raise ProtocolError(
                protocol.UNKNOWN_TYPE,
                f"type: unknown message type {bounded_repr(kind)}; expected one of {list(protocol.REQUEST_TYPES)}",
                field="type",
                seq=seq,
            )
        return self._requests.admit(envelope, message, received, size)

    def submit(self, identity: bytes, kind: str, payload: dict[str, Any],
               deliver: Callable[[str, dict[str, Any]], None], size: int = 0) -> None:
        """An in-process client's ``infer`` or ``reset`` (the websocket endpoints), checked and queued as a ZeroMQ
        client's would be, joining the same batches. ``deliver(type, payload)`` gets the reply (``error`` with its
        code, ``field`` and message if refused or failed): now, or later from the worker thread, so it must be quick
        and thread-safe. One request of an identity at a time, like a ZeroMQ client that waits for its replies.
        ``size``: the bytes of the frame the request came in, counted in the bytes in flight until it is answered."""
        self._requests.submit(identity, kind, payload, deliver, size)

    def _refuse_queued(self, router: zmq.Socket) -> None:
        """The worker has stopped: answer what is still queued instead of leaving the clients to time out."""
        while True:
            job = self._batcher.next_job(timeout=0.0)
            if job is None:
                return
            error = ProtocolError(protocol.UNAVAILABLE, "the inference worker has stopped; restart the server")
            self._requests.send_replies(router, job, protocol.ERROR, error.payload())

    # -- inference worker ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        out = self.context.socket(zmq.PUSH)
        out.connect(self._results_address)
        jobs: list[Job] = []
        try:
            while not self._stop.is_set():
                first = self._batcher.next_job(timeout=0.1)
                if first is None:
                    continue
                jobs = [first]
                if first.kind == protocol.INFER:
                    jobs = self._batcher.gather(first, lambda job, reply: self._requests.send_replies(out, job, *reply))
                for job, reply in zip(jobs, self._batcher.run(jobs)):
                    self._requests.send_replies(out, job, *reply)
                jobs = []
        except BaseException as exc:
            self.record_failure("inference worker", exc)
            error = ProtocolError(protocol.UNAVAILABLE, "the inference worker stopped during this request")
            for job in jobs:
                self._requests.send_replies(out, job, protocol.ERROR, error.payload())
        finally:
            out.close(linger=1000)
