"""The vlart action server: a ZeroMQ ROUTER socket in front of a shared policy.

One socket thread owns the ROUTER: it checks every message's size, decodes and validates it, answers ``hello`` and
``ping`` at once, and queues ``infer`` for the inference worker, so a long forward pass never delays a ping. A
``reset`` runs at once too, unless its client has an inference queued or running: then it waits for that one, so
resets stay ordered with the infers of their client. The worker batches dynamically: the infers of different clients
that are queued, or arrive within ``batch_wait_ms`` while an active client is missing from the batch (up to
``max_batch``), run as one forward pass (``predict_batch``), each row with its own seed, instruction, continuation
and ensemble; a client's second infer waits for the next batch. It
hands replies back over an inproc socket; only the socket thread touches the ROUTER. Each client (ROUTER identity)
has its own session: its own ensemble history on the shared model. In-process clients (the websocket endpoints)
``submit`` their requests straight to the same checks and queue, and get their replies by callback, without a
socket or an encoding in between.

A request runs at most once: a client's retries carry the first attempt's ``request_id``, and a retry of a request
that is queued, running or done joins it and gets its reply, never a second inference (a second chunk would shift the
session ensemble's "k steps ago" rows). Every refused message gets an ``error`` reply; whatever goes wrong in one
job, the worker answers that request with an error and goes on. With CURVE, the allowlist directory is re-read when
it changes, and a revoked key's messages are dropped even on a connection made before the revocation.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import zmq

from bridge import protocol
from bridge.keys import ServerKeys
from bridge.limits import InflightBytes
from bridge.protocol import ProtocolError
from policies.api.interface import Observation, Policy, PolicyOutput, PredictRequest, ServablePolicy
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
REMEMBERED_REQUESTS = 32  # finished requests per session whose replies a late retry can still get
ALLOWLIST_CHECK_S = 1.0
ACTIVE_WINDOW_S = 1.0


@dataclass
class RequestRecord:
    """One logical request of a session: the attempts (envelope, seq) waiting for it, and its reply once done."""

    waiting: list[tuple[list[bytes], int]]
    reply: Optional[tuple[str, dict[str, Any]]] = None


@dataclass
class ClientSession:
    policy: Policy
    name: str = "?"
    last_seen: float = field(default_factory=time.monotonic)
    requests: "OrderedDict[int, RequestRecord]" = field(default_factory=OrderedDict)
    pending: int = 0  # its jobs queued or running in the worker (a reset runs at once only when there are none)
    last_infer: float = -float("inf")  # monotonic time of its latest infer (the batcher waits only for active ones)


@dataclass
class Job:
    kind: str  # protocol.INFER or protocol.RESET
    envelope: list[bytes]
    seq: int
    session: ClientSession
    received: float
    decode_ms: float
    request: Optional[protocol.InferRequest] = None
    request_id: Optional[int] = None
    # An in-process client's reply callback (type, payload), called from the worker; None: a ROUTER client's job.
    deliver: Optional[Callable[[str, dict[str, Any]], None]] = None
    size: int = 0  # bytes of the request it holds, counted in the server's bytes in flight until it is answered


class CurveAllowlist:
    """The client public keys a CURVE server accepts, re-read from its directory whenever the directory changes."""

    def __init__(self, directory: Path, authenticator: Any) -> None:
        self.directory = directory
        self.authenticator = authenticator
        self.keys: frozenset[str] = frozenset()
        self._signature: Optional[tuple] = None
        self._checked = 0.0
        self.refresh(force=True)

    def _current_signature(self) -> tuple:
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in self.directory.iterdir()))
        except OSError:
            return ()

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < ALLOWLIST_CHECK_S:
            return
        self._checked = now
        signature = self._current_signature()
        if signature == self._signature and not force:
            return
        self.authenticator.configure_curve(domain="*", location=str(self.directory))
        # Keys are Z85 text, as ZeroMQ reports a CURVE client's "User-Id" on each of its messages.
        self.keys = frozenset(key.decode() for key in self.authenticator.certs.get("*", {}))
        if self._signature is not None:
            log.info("CURVE allowlist %s re-read: %d client key(s)", self.directory, len(self.keys))
        self._signature = signature

    def allows(self, user_id: Optional[str]) -> bool:
        return user_id in self.keys


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
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch: expected an integer >= 1, got {max_batch!r}")
        if not batch_wait_ms >= 0:
            raise ValueError(f"batch_wait_ms: expected a number >= 0, got {batch_wait_ms!r}")
        self.policy = policy
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1e3
        self.active_window_s = active_window_s
        self.budget = budget
        self.bind = bind
        self.curve = curve
        self.max_message_bytes = max_message_bytes
        self.inflight = InflightBytes(max_inflight_bytes)
        # Why a server thread ended unexpectedly (the server is then unusable): what ping and the health checks report.
        self.failure: Optional[str] = None
        self.session_idle_s = session_idle_s
        self.context = context or zmq.Context.instance()
        self.endpoint: Optional[str] = None
        self.sessions: dict[bytes, ClientSession] = {}
        self._jobs: "queue.Queue[Job]" = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._busy = threading.Event()
        self._threads: list[threading.Thread] = []
        self._results_address = f"inproc://vlart-results-{id(self)}"
        self._started = time.monotonic()
        self._authenticator: Any = None
        self._allowlist: Optional[CurveAllowlist] = None
        self._worker: Optional[threading.Thread] = None
        self._requests_lock = threading.Lock()  # session.requests: socket thread and worker
        self._sessions_lock = threading.Lock()  # self.sessions: socket thread, in-process clients, worker
        self.inferences = 0  # requests inferred (a retried request counts once)
        self.batches = 0  # forward passes run for them
        self._last_pass_s = 0.0
        self._deferred: "deque[Job]" = deque()  # taken from the queue by the worker, left for a later batch
        self.joined_retries = 0  # attempts answered with another attempt's result
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

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def _open_router(self) -> zmq.Socket:
        router = self.context.socket(zmq.ROUTER)
        router.linger = 0
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client that reconnects with its id keeps its session
        router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        router.setsockopt(zmq.SNDHWM, 1000)
        router.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        if self.curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._authenticator = ThreadAuthenticator(self.context)
            self._authenticator.start()
            self._allowlist = CurveAllowlist(self.curve.authorized_dir, self._authenticator)
            router.curve_secretkey = self.curve.secret
            router.curve_publickey = self.curve.public
            router.curve_server = True
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
            if self._authenticator is not None:
                self._authenticator.stop()
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
                self._forget_idle_sessions()
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

    def _session(self, identity: bytes) -> ClientSession:
        with self._sessions_lock:
            session = self.sessions.get(identity)
            if session is None:
                session = self.sessions[identity] = ClientSession(self.policy.session())
        session.last_seen = time.monotonic()
        return session

    def forget_session(self, identity: bytes) -> None:
        """Drop a client's session (an in-process client that has gone); a job of it still queued runs."""
        with self._sessions_lock:
            self.sessions.pop(identity, None)

    def _dispatch(self, envelope: list[bytes], message: protocol.Message, received: float,
                  size: int) -> Optional[bytes]:
        kind, seq, payload = message.type, message.seq, message.payload
        if kind == protocol.PING:
            alive = self.worker_alive()
            problem = self.failure
            reply = {
                "status": "ok" if problem is None else protocol.UNAVAILABLE,
                "worker_alive": alive,
                "busy": self._busy.is_set(),
                "queued": self._jobs.qsize() + len(self._deferred),
                "inflight_bytes": self.inflight.held,
                "max_batch": self.max_batch,
                "sessions": len(self.sessions),
                "uptime_s": round(time.monotonic() - self._started, 3),
            }
            if problem is not None:
                reply["failure"] = problem
            if self.budget is not None:
                reply["budget"] = self.budget.summary()
            return protocol.pack(protocol.PING, seq, reply)
        if kind == protocol.HELLO:
            session = self._session(envelope[0])
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
        self._check_worker(seq)
        session = self._session(envelope[0])
        request_id = message.request_id
        if request_id is not None:
            with self._requests_lock:
                record = session.requests.get(request_id)
                if record is not None:  # a retry: never a second inference
                    self.joined_retries += 1
                    if record.reply is None:
                        record.waiting.append((envelope, seq))
                        return None
                    return protocol.pack(record.reply[0], seq, record.reply[1])
        job = self._job(kind, payload, envelope, seq, session, received, request_id, size=size)
        if self._enqueue(job):
            return self._replies(job, protocol.RESET, {"ok": True}, done=False)[0][1]
        return None

    def submit(self, identity: bytes, kind: str, payload: dict[str, Any],
               deliver: Callable[[str, dict[str, Any]], None], size: int = 0) -> None:
        """An in-process client's ``infer`` or ``reset`` (the websocket endpoints), checked and queued as a ZeroMQ
        client's would be, joining the same batches. ``deliver(type, payload)`` gets the reply (``error`` with its
        code, ``field`` and message if refused or failed): now, or later from the worker thread, so it must be quick
        and thread-safe. One request of an identity at a time, like a ZeroMQ client that waits for its replies.
        ``size``: the bytes of the frame the request came in, counted in the bytes in flight until it is answered."""
        received = time.perf_counter()
        try:
            if kind not in (protocol.INFER, protocol.RESET):
                raise ProtocolError(protocol.UNKNOWN_TYPE, f"type: expected infer or reset, got {bounded_repr(kind)}",
                                    field="type")
            self._check_worker(0)
            job = self._job(kind, payload, [], 0, self._session(identity), received, None, deliver, size)
            if self._enqueue(job):
                deliver(protocol.RESET, {"ok": True})
        except ProtocolError as error:
            deliver(protocol.ERROR, error.payload())
        except Exception as exc:  # a client's bad request must not reach the endpoint's loop as an exception
            log.error("in-process %s failed: %s", kind, traceback.format_exc())
            deliver(protocol.ERROR, ProtocolError(protocol.INTERNAL_ERROR, describe_exception(exc)).payload())

    def _check_worker(self, seq: int) -> None:
        if not self.worker_alive():
            raise ProtocolError(protocol.UNAVAILABLE, "the inference worker has stopped; restart the server", seq=seq)

    def _job(self, kind: str, payload: dict[str, Any], envelope: list[bytes], seq: int, session: ClientSession,
             received: float, request_id: Optional[int],
             deliver: Optional[Callable[[str, dict[str, Any]], None]] = None, size: int = 0) -> Job:
        """The job for a checked infer or reset (``bad_request`` naming the field if the infer is not valid)."""
        request = None
        if kind == protocol.INFER:
            request = protocol.validate_infer(payload, self.policy.conventions, seq)
            session.last_infer = time.monotonic()
        return Job(kind, envelope, seq, session, received, decode_ms=(time.perf_counter() - received) * 1e3,
                   request=request, request_id=request_id, deliver=deliver, size=size)

    def _enqueue(self, job: Job) -> bool:
        """Queue ``job`` for the worker (``busy`` if the queue is full or its bytes would take the bytes in flight over
        the limit); True: it was a reset run at once instead."""
        session, request_id, kind = job.session, job.request_id, job.kind
        with self._requests_lock:  # registered before the worker can see the job, so its reply finds the record
            if request_id is not None:
                session.requests[request_id] = RequestRecord([(job.envelope, job.seq)])
            if kind == protocol.RESET and session.pending == 0:
                # Nothing of this client's is queued or running, so nothing it asked before can land after it.
                session.policy.reset()
                return True
            if not self.inflight.acquire(job.size):
                session.requests.pop(request_id, None)
                raise ProtocolError(protocol.BUSY, f"the requests already waiting hold {self.inflight.held} bytes; "
                                    f"{job.size} more would exceed {self.inflight.limit}; retry later", seq=job.seq)
            try:
                self._jobs.put_nowait(job)
            except queue.Full:
                self.inflight.release(job.size)
                session.requests.pop(request_id, None)
                raise ProtocolError(
                    protocol.BUSY, f"{self._jobs.maxsize} requests are already waiting; retry later", seq=job.seq
                ) from None
            session.pending += 1
            return False

    def _refuse_queued(self, router: zmq.Socket) -> None:
        """The worker has stopped: answer what is still queued instead of leaving the clients to time out."""
        while True:
            try:
                job = self._deferred.popleft() if self._deferred else self._jobs.get_nowait()
            except queue.Empty:
                return
            error = ProtocolError(protocol.UNAVAILABLE, "the inference worker has stopped; restart the server")
            self._send_replies(router, job, protocol.ERROR, error.payload())

    def _forget_idle_sessions(self) -> None:
        cutoff = time.monotonic() - self.session_idle_s
        with self._sessions_lock:
            for identity in [k for k, s in self.sessions.items() if s.last_seen < cutoff]:
                del self.sessions[identity]

    # -- inference worker ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        out = self.context.socket(zmq.PUSH)
        out.connect(self._results_address)
        jobs: list[Job] = []
        try:
            while not self._stop.is_set():
                first = self._next_job(timeout=0.1)
                if first is None:
                    continue
                jobs = [first]
                if first.kind == protocol.INFER:
                    jobs = self._gather_batch(first, out)
                for job, reply in zip(jobs, self._run_guarded(jobs)):
                    self._send_replies(out, job, *reply)
                jobs = []
        except BaseException as exc:
            self.record_failure("inference worker", exc)
            error = ProtocolError(protocol.UNAVAILABLE, "the inference worker stopped during this request")
            for job in jobs:
                self._send_replies(out, job, protocol.ERROR, error.payload())
        finally:
            out.close(linger=1000)

    def _next_job(self, timeout: float) -> Optional[Job]:
        """The oldest job not yet run: a deferred one first, else the queue's (waiting up to ``timeout``; 0: only
        what is queued already)."""
        if self._deferred:
            return self._deferred.popleft()
        try:
            return self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
        except queue.Empty:
            return None

    def _gather_batch(self, first: Job, out: zmq.Socket) -> list[Job]:
        """``first`` and the infers of other sessions that are queued, or arrive within the batch wait, up to
        ``max_batch``. A job of a session already in the batch (and every later job of that session) is deferred to
        the next round, keeping each session's order; a reset of any other session runs and is answered here."""
        batch, members = [first], {id(first.session)}
        held: list[Job] = []
        held_sessions: set[int] = set()
        deadline = time.perf_counter() + self.batch_wait_s
        active = self._active_sessions()
        while len(batch) < self.max_batch:
            # Waiting is only worth it for an active client that is not in the batch yet: a lone client never waits,
            # and lockstep clients close the batch as soon as the last of them has sent.
            waiting_for = active - members - held_sessions
            job = self._next_job(timeout=deadline - time.perf_counter() if waiting_for else 0.0)
            if job is None:
                break
            session = id(job.session)
            if session in members or session in held_sessions:
                held.append(job)
                held_sessions.add(session)
            elif job.kind == protocol.RESET:
                self._send_replies(out, job, *self._run_guarded([job])[0])
            else:
                batch.append(job)
                members.add(session)
        self._deferred.extendleft(reversed(held))  # before anything left in the deque: they were taken before it
        return batch

    def _active_sessions(self) -> set[int]:
        """Sessions that sent an infer recently: within a second plus two forward passes (a client of a slow model
        sends rarely, yet is as active as one of a fast model)."""
        window = self.active_window_s + 2 * self._last_pass_s
        cutoff = time.monotonic() - window
        with self._sessions_lock:
            return {id(session) for session in self.sessions.values() if session.last_infer >= cutoff}

    def _run_guarded(self, jobs: list[Job]) -> list[tuple[str, dict[str, Any], Optional[bytes]]]:
        """Each job's reply (type, payload) and its body for the job's seq, encoded here so that a reply that cannot
        be encoded never reaches the send: any failure becomes that job's error reply."""
        self._busy.set()
        try:
            if jobs[0].kind == protocol.RESET:
                jobs[0].session.policy.reset()
                return [self._encoded(jobs[0], protocol.RESET, {"ok": True})]
            started = time.perf_counter()
            try:
                outputs = self._predict(jobs)
            except Exception as exc:  # the server must survive any failure in one batch
                outputs = [exc for _ in jobs]
            self.inferences += len(jobs)
            self.batches += 1
            self._last_pass_s = time.perf_counter() - started
            replies = []
            for job, output in zip(jobs, outputs):
                try:
                    if isinstance(output, Exception):
                        raise output
                    replies.append(self._encoded(job, protocol.INFER, self._infer_payload(job, output, started,
                                                                                       len(jobs))))
                except Exception as exc:
                    log.error("%s failed for seq %d: %s", job.kind, job.seq,
                              "".join(traceback.format_exception(exc)))
                    error = ProtocolError(protocol.INFERENCE_FAILED, f"{type(exc).__name__}: {exc}")
                    replies.append(self._encoded(job, protocol.ERROR, error.payload()))
            return replies
        finally:
            self._busy.clear()

    @staticmethod
    def _encoded(job: Job, kind: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any], Optional[bytes]]:
        """The reply with its body for a ROUTER client (an in-process one takes the payload as it is)."""
        return kind, payload, None if job.deliver is not None else protocol.pack(kind, job.seq, payload)

    def _predict(self, jobs: list[Job]) -> list[Any]:
        """One output (or the exception it raised) per infer job, as one batch when the policy can batch."""
        key = self.policy.conventions.image_keys[0]
        requests = []
        for job in jobs:
            request = job.request
            assert request is not None
            obs = Observation(image=request.images[key], instruction=request.instruction, proprio=request.proprio)
            requests.append(PredictRequest(job.session.policy, obs, request.seed, request.continuation))
        predict_batch = getattr(self.policy, "predict_batch", None)
        if predict_batch is not None:
            return predict_batch(requests)
        return [self._predict_alone(request) for request in requests]

    @staticmethod
    def _predict_alone(request: PredictRequest) -> Any:
        try:
            if request.continuation is None:  # policies that predate continuation have no such keyword
                return request.session.predict_action(request.obs, seed=request.seed)
            return request.session.predict_action(request.obs, seed=request.seed, continuation=request.continuation)
        except Exception as exc:
            return exc

    def _send_replies(self, socket: zmq.Socket, job: Job, kind: str, payload: dict[str, Any],
                      body: Optional[bytes] = None) -> None:
        """Answer a job that has left the worker: its in-process client's callback, or every waiting attempt of a
        ROUTER client through ``socket`` (the ROUTER itself or the worker's results socket)."""
        if job.deliver is not None:
            with self._requests_lock:
                job.session.pending -= 1
            self.inflight.release(job.size)
            try:
                job.deliver(kind, payload)
            except Exception:  # a client that has gone (its event loop closed) must not stop the worker
                log.warning("an in-process client could not take its %s reply: %s", kind, traceback.format_exc())
            return
        for envelope, reply in self._replies(job, kind, payload, body):
            socket.send_multipart([*envelope, reply])

    def _replies(self, job: Job, kind: str, payload: dict[str, Any], body: Optional[bytes] = None,
                 done: bool = True) -> list[tuple[list[bytes], bytes]]:
        """(envelope, body) for every attempt waiting for ``job`` (``body``, when given, is the reply already
        encoded for ``job.seq``); remembers the reply for later retries. ``done``: the job was queued and has now
        left the worker."""
        if done:
            self.inflight.release(job.size)
        with self._requests_lock:
            if done:
                job.session.pending -= 1
            record = job.session.requests.get(job.request_id) if job.request_id is not None else None
            if record is None:
                targets = [(job.envelope, job.seq)]
            else:
                record.reply, targets, record.waiting = (kind, payload), record.waiting, []
                finished = [rid for rid, r in job.session.requests.items() if r.reply is not None]
                for rid in finished[:-REMEMBERED_REQUESTS]:
                    del job.session.requests[rid]
        return [(envelope, body if body is not None and seq == job.seq else protocol.pack(kind, seq, payload))
                for envelope, seq in targets]

    def _infer_payload(self, job: Job, output: PolicyOutput, started: float, batch_size: int) -> dict[str, Any]:
        timing = {f"{name}_ms": round(ms, 4) for name, ms in output.timings_ms.items()}
        timing["policy_total_ms"] = timing.pop("total_ms", round((time.perf_counter() - started) * 1e3, 4))
        timing["decode_ms"] = round(job.decode_ms, 4)
        timing["queue_ms"] = round((started - job.received) * 1e3 - job.decode_ms, 4)
        payload: dict[str, Any] = {
            "actions": output.actions,
            "normalized_actions": output.normalized_actions,
            "action": output.action,
            "server_timing": timing,
            "batch_size": batch_size,
        }
        timing["server_total_ms"] = round((time.perf_counter() - job.received) * 1e3, 4)
        if self.budget is not None:
            steps = {**output.timings_ms, "total": timing["server_total_ms"]}
            over = self.budget.observe(steps)
            payload["budget"] = {"name": self.budget.config.name, "over": over,
                                 "violations": dict(self.budget.violations)}
        return payload
