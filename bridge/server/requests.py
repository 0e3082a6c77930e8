"""An ``infer`` or ``reset``'s way to the policy server's inference worker and back, from a ZeroMQ client or an
in-process one: its payload checked, queued as a job within the queue's length and the bytes in flight (``busy``
beyond either), and answered once it has left the worker.

A retry joins the request it retries (``bridge.server.sessions``). A ``reset`` of a client with nothing queued or
running runs at once; else it waits for that client's jobs, so resets stay ordered with the infers of their client.
"""

from __future__ import annotations

import logging
import queue
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

import zmq

from bridge import protocol
from bridge.limits import InflightBytes
from bridge.protocol import ProtocolError
from bridge.server.sessions import ClientSession, RequestRecord, Sessions
from policies.api.interface import ServablePolicy
from runtime.core.safe_repr import bounded_repr, describe_exception

log = logging.getLogger("vlart.bridge.server")


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


class RequestQueue:
    """The jobs on their way to the worker (``jobs``), the bytes they hold (``inflight``), and their replies; only
    while ``worker_alive()``."""

    def __init__(self, policy: ServablePolicy, sessions: Sessions, jobs: "queue.Queue[Job]", inflight: InflightBytes,
                 worker_alive: Callable[[], bool]) -> None:
        self.policy = policy
        self.sessions = sessions
        self.jobs = jobs
        self.inflight = inflight
        self.worker_alive = worker_alive

    def admit(self, envelope: list[bytes], message: protocol.Message, received: float, size: int) -> Optional[bytes]:
        """A ROUTER client's ``infer`` or ``reset``: its reply now (a reset run at once, or the remembered reply of a
        retried request), or None: the reply comes when the request has left the worker."""
        kind, seq = message.type, message.seq
        self._check_worker(seq)
        session = self.sessions.get(envelope[0])
        request_id = message.request_id
        if request_id is not None:
            retry, reply = self.sessions.join(session, request_id, (envelope, seq))
            if retry:  # a retry: never a second inference
                return reply
        job = self.job(kind, message.payload, envelope, seq, session, received, request_id, size=size)
        if self.put(job):
            return self.replies(job, protocol.RESET, {"ok": True}, done=False)[0][1]
        return None

    def submit(self, identity: bytes, kind: str, payload: dict[str, Any],
               deliver: Callable[[str, dict[str, Any]], None], size: int = 0) -> None:
        """An in-process client's request (``PolicyServer.submit``), checked and queued as a ZeroMQ client's."""
        received = time.perf_counter()
        try:
            if kind not in (protocol.INFER, protocol.RESET):
                raise ProtocolError(protocol.UNKNOWN_TYPE, f"type: expected infer or reset, got {bounded_repr(kind)}",
                                    field="type")
            self._check_worker(0)
            job = self.job(kind, payload, [], 0, self.sessions.get(identity), received, None, deliver, size)
            if self.put(job):
                deliver(protocol.RESET, {"ok": True})
        except ProtocolError as error:
            deliver(protocol.ERROR, error.payload())
        except Exception as exc:  # a client's bad request must not reach the endpoint's loop as an exception
            log.error("in-process %s failed: %s", kind, traceback.format_exc())
            deliver(protocol.ERROR, ProtocolError(protocol.INTERNAL_ERROR, describe_exception(exc)).payload())

    def _check_worker(self, seq: int) -> None:
        if not self.worker_alive():
            raise ProtocolError(protocol.UNAVAILABLE, "the inference worker has stopped; restart the server", seq=seq)

    def job(self, kind: str, payload: dict[str, Any], envelope: list[bytes], seq: int, session: ClientSession,
            received: float, request_id: Optional[int],
            deliver: Optional[Callable[[str, dict[str, Any]], None]] = None, size: int = 0) -> Job:
        """The job for a checked infer or reset (``bad_request`` naming the field if the infer is not valid)."""
        request = None
        if kind == protocol.INFER:
            request = protocol.validate_infer(payload, self.policy.conventions, seq)
            session.last_infer = time.monotonic()
        return Job(kind, envelope, seq, session, received, decode_ms=(time.perf_counter() - received) * 1e3,
                   request=request, request_id=request_id, deliver=deliver, size=size)

    def put(self, job: Job) -> bool:
        """Queue ``job`` for the worker (``busy`` if the queue is full or its bytes would take the bytes in flight over
        the limit); True: it was a reset run at once instead."""
        session, request_id, kind = job.session, job.request_id, job.kind
        with self.sessions.requests_lock:  # registered before the worker can see the job, so its reply finds the record
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
                self.jobs.put_nowait(job)
            except queue.Full:
                self.inflight.release(job.size)
                session.requests.pop(request_id, None)
                raise ProtocolError(
                    protocol.BUSY, f"{self.jobs.maxsize} requests are already waiting; retry later", seq=job.seq
                ) from None
            session.pending += 1
            return False

    def send_replies(self, socket: zmq.Socket, job: Job, kind: str, payload: dict[str, Any],
                     body: Optional[bytes] = None) -> None:
        """Answer a job that has left the worker: its in-process client's callback, or every waiting attempt of a
        ROUTER client through ``socket`` (the ROUTER itself or the worker's results socket)."""
        if job.deliver is not None:
            with self.sessions.requests_lock:
                job.session.pending -= 1
            self.inflight.release(job.size)
            try:
                job.deliver(kind, payload)
            except Exception:  # a client that has gone (its event loop closed) must not stop the worker
                log.warning("an in-process client could not take its %s reply: %s", kind, traceback.format_exc())
            return
        for envelope, reply in self.replies(job, kind, payload, body):
            socket.send_multipart([*envelope, reply])

    def replies(self, job: Job, kind: str, payload: dict[str, Any], body: Optional[bytes] = None,
                done: bool = True) -> list[tuple[list[bytes], bytes]]:
        """(envelope, body) for every attempt waiting for ``job`` (``body``, when given, is the reply already
        encoded for ``job.seq``); remembers the reply for later retries. ``done``: the job was queued and has now
        left the worker."""
        if done:
            self.inflight.release(job.size)
        targets = self.sessions.settle(job.session, job.request_id, (kind, payload), done, (job.envelope, job.seq))
        return [(envelope, body if body is not None and seq == job.seq else protocol.pack(kind, seq, payload))
                for envelope, seq in targets]
