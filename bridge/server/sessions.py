"""The policy server's client sessions and their retry memory: the replies a retried request gets instead of a second
inference.

Each client (ROUTER identity, or an in-process client's identity) has its own session: its own ensemble history on
the shared model. A request runs at most once: a client's retries carry the first attempt's ``request_id``, and a
retry of a request that is queued, running or done joins it and gets its reply, never a second inference (a second
chunk would shift the session ensemble's "k steps ago" rows).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

from bridge import protocol
from policies.api.interface import Policy, ServablePolicy

REMEMBERED_REQUESTS = 32  # finished requests per session whose replies a late retry can still get

Attempt = tuple[list[bytes], int]  # one attempt of a ROUTER client at a request: its envelope and its seq


@dataclass
class RequestRecord:
    """One logical request of a session: the attempts (envelope, seq) waiting for it, and its reply once done."""

    waiting: list[Attempt]
    reply: Optional[tuple[str, dict[str, Any]]] = None


@dataclass
class ClientSession:
    policy: Policy
    name: str = "?"
    last_seen: float = field(default_factory=time.monotonic)
    requests: "OrderedDict[int, RequestRecord]" = field(default_factory=OrderedDict)
    pending: int = 0  # its jobs queued or running in the worker (a reset runs at once only when there are none)
    last_infer: float = -float("inf")  # monotonic time of its latest infer (the batcher waits only for active ones)


class Sessions:
    """The sessions of a server's clients by identity: made on a client's first request, forgotten after ``idle_s``
    without one, each with the records of its requests (``requests_lock`` guards them and ``pending``)."""

    def __init__(self, policy: ServablePolicy, idle_s: float) -> None:
        self.policy = policy
        self.idle_s = idle_s
        self.by_identity: dict[bytes, ClientSession] = {}
        self.joined_retries = 0  # attempts answered with another attempt's result
        self.requests_lock = threading.Lock()  # session.requests: socket thread and worker
        self._lock = threading.Lock()  # by_identity: socket thread, in-process clients, worker

    def get(self, identity: bytes) -> ClientSession:
        """The session of ``identity`` (made now if it has none), seen now."""
        with self._lock:
            session = self.by_identity.get(identity)
            if session is None:
                session = self.by_identity[identity] = ClientSession(self.policy.session())
        session.last_seen = time.monotonic()
        return session

    def forget(self, identity: bytes) -> None:
        with self._lock:
            self.by_identity.pop(identity, None)

    def forget_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_s
        with self._lock:
            for identity in [k for k, s in self.by_identity.items() if s.last_seen < cutoff]:
                del self.by_identity[identity]

    def active_since(self, cutoff: float) -> set[int]:
        """The ids of the sessions whose latest infer is not older than ``cutoff`` (monotonic time)."""
        with self._lock:
            return {id(session) for session in self.by_identity.values() if session.last_infer >= cutoff}

    def join(self, session: ClientSession, request_id: int, attempt: Attempt) -> tuple[bool, Optional[bytes]]:
        """Whether ``attempt`` retries a request ``session`` already has, and then its reply to send now: the done
        request's reply under the attempt's seq, or None when the attempt now waits for the request."""
        with self.requests_lock:
            record = session.requests.get(request_id)
            if record is None:
                return False, None
            self.joined_retries += 1
            if record.reply is None:
                record.waiting.append(attempt)
                return True, None
            return True, protocol.pack(record.reply[0], attempt[1], record.reply[1])

    def settle(self, session: ClientSession, request_id: Optional[int], reply: tuple[str, dict[str, Any]],
               done: bool, own: Attempt) -> list[Attempt]:
        """The attempts to answer with ``reply``: those waiting for the request, or ``own`` (the job's attempt) when
        it has no record; remembers the reply for later retries. ``done``: the job was queued and has now left the
        worker."""
        with self.requests_lock:
            if done:
                session.pending -= 1
            record = session.requests.get(request_id) if request_id is not None else None
            if record is None:
                return [own]
            record.reply, waiting, record.waiting = reply, record.waiting, []
            finished = [rid for rid, r in session.requests.items() if r.reply is not None]
            for rid in finished[:-REMEMBERED_REQUESTS]:
                del session.requests[rid]
            return waiting
