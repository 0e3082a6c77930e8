"""The thin robot-side client of the vlart action server. Imports only numpy, pyzmq and msgpack.

Every call has a timeout. The socket is a DEALER (no REQ lockstep to wedge); on a timeout it is closed and
recreated, and the call is retried up to ``retries`` times before ``PolicyTimeout``. Each attempt carries a new
``seq`` and replies whose ``seq`` is not the awaited one are dropped, so a late reply can never be returned for
another request. ``infer`` and ``reset`` attempts also carry the first attempt's seq as ``request_id``: the server
runs the request once and answers every attempt with that result, so a retry never feeds the session's ensemble a
second chunk. The client keeps one ZeroMQ routing id across reconnects, so the server keeps its session (ensemble
history) when the connection is re-established.
"""

from __future__ import annotations

import itertools
import operator
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import zmq

from bridge import protocol
from bridge.keys import ClientKeys
from policies.api.interface import ChunkContinuation, Conventions, Observation, PolicyOutput

QUEUED_TYPES = (protocol.INFER, protocol.RESET)  # requests with state on the server: each must run at most once


class PolicyClientError(RuntimeError):
    """Base class of the client's errors."""


class PolicyTimeout(PolicyClientError):
    """No reply within the timeout, on every attempt."""


class ServerError(PolicyClientError):
    """The server answered with an ``error`` message."""

    def __init__(self, code: str, message: str, field: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


@dataclass
class InferResult:
    """actions (T, A) unnormalised chunk, normalized_actions (T, A), action (A,) to execute now, the server's
    per-stage timing (ms), the client's (``serialize_ms``: encoding the request; ``transport_ms``: round trip minus
    the server's time; ``total_ms``: the round trip) and the server's budget verdict when it checks one."""

    actions: np.ndarray
    normalized_actions: np.ndarray
    action: np.ndarray
    server_timing: dict[str, float]
    client_timing: dict[str, float]
    seq: int
    budget: Optional[dict[str, Any]] = None
    batch_size: int = 1  # requests (of all clients) in the forward pass that produced this one

    @property
    def round_trip_ms(self) -> float:
        return self.client_timing["total_ms"]


class PolicyClient:
    """``PolicyClient("tcp://127.0.0.1:5555").infer({"primary": frame}, "put the carrot on the plate")``."""

    def __init__(
        self,
        endpoint: str,
        timeout_s: float = 10.0,
        retries: int = 2,
        curve: Optional[ClientKeys] = None,
        name: str = "vlart-client",
        context: Optional[zmq.Context] = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.curve = curve
        self.name = name
        self.context = context or zmq.Context.instance()
        self.routing_id = b"vlart-" + os.urandom(8).hex().encode()
        self._seq = itertools.count(1)
        self._socket: Optional[zmq.Socket] = None
        self.reconnects = 0
        self.dropped_replies = 0

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            sock = self.context.socket(zmq.DEALER)
            sock.linger = 0
            sock.routing_id = self.routing_id
            if self.curve is not None:
                sock.curve_secretkey = self.curve.secret
                sock.curve_publickey = self.curve.public
                sock.curve_serverkey = self.curve.server_public
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    def _reset_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
            self.reconnects += 1

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, type_: str, payload: dict[str, Any], timeout_s: Optional[float] = None
    ) -> tuple[dict, int, dict[str, float]]:
        """Send one request and wait for its reply: (payload, seq, {"serialize_ms", "total_ms"}). Raises
        ``ServerError`` on an ``error`` reply and ``PolicyTimeout`` when every attempt times out."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        request_id: Optional[int] = None
        for _ in range(self.retries + 1):
            seq = next(self._seq)
            if type_ in QUEUED_TYPES and request_id is None:
                request_id = seq
            sock = self._connect()
            started = time.perf_counter()
            body = protocol.pack(type_, seq, payload, request_id=request_id)
            serialize_ms = (time.perf_counter() - started) * 1e3
            # A DEALER with no peer to send to (the connection not up, or dropped by a CURVE handshake the server
            # refused) blocks in send: wait for it within the deadline instead, so a robot is never stuck here.
            if not self._sent(sock, body, started + timeout):
                self._reset_socket()
                continue
            reply = self._await(sock, seq, started + timeout)
            if reply is not None:
                elapsed_ms = (time.perf_counter() - started) * 1e3
                if reply.type == protocol.ERROR:
                    raise ServerError(str(reply.payload.get("code")), str(reply.payload.get("message")),
                                      reply.payload.get("field"))
                if reply.type != type_:
                    raise PolicyClientError(f"expected a {type_!r} reply, got {reply.type!r}")
                return reply.payload, seq, {"serialize_ms": serialize_ms, "total_ms": elapsed_ms}
            self._reset_socket()
        raise PolicyTimeout(
            f"{type_}: no reply from {self.endpoint} within {timeout:g} s ({self.retries + 1} attempts). Is the server "
            "running and reachable? If it uses CURVE, is this client's public key in its authorized directory?"
        )

    @staticmethod
    def _sent(sock: zmq.Socket, body: bytes, deadline: float) -> bool:
        """Send ``body`` once the socket can take it before ``deadline``; False if it could not."""
        remaining_ms = int((deadline - time.perf_counter()) * 1e3)
        if remaining_ms <= 0 or not sock.poll(remaining_ms, zmq.POLLOUT):
            return False
        try:
            sock.send(body, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _await(self, sock: zmq.Socket, seq: int, deadline: float) -> Optional[protocol.Message]:
        while True:
            remaining_ms = int((deadline - time.perf_counter()) * 1e3)
            if remaining_ms <= 0 or not sock.poll(remaining_ms, zmq.POLLIN):
                return None
            try:
                reply = protocol.unpack(sock.recv())
            except protocol.ProtocolError as error:
                raise PolicyClientError(f"malformed reply from {self.endpoint}: {error.message}") from None
            if reply.seq == seq:
                return reply
            self.dropped_replies += 1  # a late reply to an earlier, timed-out request

    def hello(self) -> dict[str, Any]:
        """Server name, protocol version, model metadata and the action/observation conventions."""
        payload, _, _ = self.call(protocol.HELLO, {"name": self.name, "version": protocol.PROTOCOL_VERSION})
        return payload

    def ping(self, timeout_s: Optional[float] = None) -> dict[str, Any]:
        payload, _, _ = self.call(protocol.PING, {}, timeout_s=timeout_s)
        return payload

    def reset(self) -> None:
        """Episode start: the server clears this client's ensemble history."""
        self.call(protocol.RESET, {})

    def infer(
        self,
        images: Mapping[str, np.ndarray] | np.ndarray,
        instruction: str,
        proprio: Optional[np.ndarray] = None,
        seed: Optional[int] = None,
        timeout_s: Optional[float] = None,
        prefix: Optional[np.ndarray] = None,
        delay_ticks: int = 0,
    ) -> InferResult:
        """One observation -> the action chunk. ``images`` maps camera keys to (H, W, 3) uint8 frames; a bare array
        is sent as ``primary``.

        ``prefix`` (P, action_dim) unnormalised: the plan the robot follows from this observation's tick on; the
        chunk reproduces its first ``delay_ticks`` rows (those that execute while it is inferred) and continues the
        rest (real-time chunking). Without a prefix the request is a plain one."""
        if isinstance(images, np.ndarray):
            images = {"primary": images}
        payload: dict[str, Any] = {"images": dict(images), "instruction": instruction}
        if proprio is not None:
            payload["proprio"] = np.asarray(proprio)
        if seed is not None:
            payload["seed"] = int(seed)
        if prefix is not None:
            payload["prefix"] = np.asarray(prefix, dtype=np.float32)
            payload["delay_ticks"] = operator.index(delay_ticks)
        elif delay_ticks != 0:
            raise ValueError(f"delay_ticks: expected 0 without a prefix (no actions to freeze), got {delay_ticks!r}")
        reply, seq, client_timing = self.call(protocol.INFER, payload, timeout_s=timeout_s)
        server_timing = dict(reply.get("server_timing", {}))
        if "server_total_ms" in server_timing:
            client_timing["transport_ms"] = client_timing["total_ms"] - server_timing["server_total_ms"]
        try:
            return InferResult(
                actions=np.asarray(reply["actions"]),
                normalized_actions=np.asarray(reply["normalized_actions"]),
                action=np.asarray(reply["action"]),
                server_timing=server_timing,
                client_timing=client_timing,
                seq=seq,
                batch_size=int(reply.get("batch_size", 1)),
                budget=reply.get("budget"),
            )
        except KeyError as exc:
            raise PolicyClientError(f"infer reply lacks {exc}") from None


class RemotePolicy:
    """The policy behind a vlart server as a ``Policy`` (``policies.api.interface``), so that the control loop and
    the evaluation take a local and a remote policy alike. ``timings_ms`` holds the server's stages and
    ``round_trip`` (what this caller waited); ``budget_over`` is the server's verdict."""

    def __init__(self, client: PolicyClient, hello: Optional[dict[str, Any]] = None) -> None:
        self.client = client
        self.hello = hello if hello is not None else client.hello()
        self._conventions = Conventions.from_dict(self.hello["conventions"])

    @property
    def conventions(self) -> Conventions:
        return self._conventions

    @property
    def metadata(self) -> dict[str, Any]:
        """The served model's name, preset and resolved config, as ``hello`` announced them."""
        return self.hello["model"]

    def reset(self) -> None:
        self.client.reset()

    def predict_action(self, obs: Observation, seed: Optional[int] = None,
                       continuation: Optional[ChunkContinuation] = None) -> PolicyOutput:
        frozen = ({} if continuation is None else
                  {"prefix": continuation.prefix, "delay_ticks": continuation.delay_ticks})
        result = self.client.infer(obs.image, obs.instruction, proprio=obs.proprio, seed=seed, **frozen)
        return PolicyOutput(result.actions, result.normalized_actions, result.action,
                            timings_ms={**result.server_timing, "round_trip": result.round_trip_ms},
                            budget_over=bool(result.budget and result.budget.get("over")))
