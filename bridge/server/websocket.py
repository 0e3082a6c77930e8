"""Websocket endpoints in front of a ``PolicyServer``: other clients' protocols, the same policy process.

An endpoint speaks a foreign protocol (``bridge.server.openpi``, ``bridge.server.vla_eval``) on a websocket and
submits each request to the vlart server of the same process (``PolicyServer.submit``) as one more client: every
websocket connection is one vlart session (its own ensemble), and its inferences join the same dynamic batches as
those of ZeroMQ clients. So the server's checks, queue limits, budgets and batching apply unchanged, and the endpoint
only translates. Requests and replies pass as Python values, with no socket or encoding between endpoint and server.

Frames are size-checked before they are decoded: a frame over ``max_message_bytes`` gets a ``too_large`` error,
one over twice that closes the connection unread (websockets' ``max_size``). Memory stays bounded: at most
``max_connections`` connections at once (more are refused at the handshake with HTTP 503, or closed with 1013 "try
again later"), each with at most one frame buffered beside the one being handled (websockets reads no further
until it is taken), and the frames handed to the server count in its bytes in flight (``busy`` beyond them). Every
frame gets an answer or the connection a close with a reason; a failure of the endpoint's thread is recorded as the
server's failure, and the health check then answers 503.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Optional, Protocol
from urllib.parse import urlsplit

from bridge import protocol
from bridge.protocol import ProtocolError
from bridge.server.policy_server import PolicyServer
from runtime.core.safe_repr import describe_exception

log = logging.getLogger("vlart.bridge.websocket")

DEFAULT_PORT = 8000  # openpi's and vla-eval's default
DEFAULT_MAX_CONNECTIONS = 64
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011


def parse_ws_bind(bind: str) -> tuple[str, int]:
    """``ws://HOST:PORT`` -> (host, port); port 0 picks a free one. ``ValueError`` naming ``--bind`` otherwise."""
    parts = urlsplit(bind)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"--bind: expected ws://HOST:PORT for a websocket protocol, got {bind!r}")
    try:
        port = parts.port if parts.port is not None else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"--bind: the port of {bind!r} is not a number in 0..65535") from None
    return parts.hostname, port


@dataclass
class VlartReply:
    """A vlart reply to one forwarded request: ``type`` (the request's, or ``error``) and its payload."""

    type: str
    payload: dict[str, Any]

    @property
    def error(self) -> Optional[ProtocolError]:
        if self.type != protocol.ERROR:
            return None
        return ProtocolError(self.payload.get("code", protocol.INTERNAL_ERROR), self.payload.get("message", ""),
                             self.payload.get("field"))


class VlartSession:
    """One websocket connection's vlart client: its requests go to the server one at a time, in order."""

    _identities = itertools.count(1)

    def __init__(self, server: PolicyServer, timeout_s: float) -> None:
        self.server = server
        self.identity = f"websocket-{next(self._identities)}".encode()
        self.timeout_s = timeout_s

    async def call(self, kind: str, payload: dict[str, Any], size: int = 0) -> VlartReply:
        """The server's reply to one request; ``size``: the bytes of the frame it came in (its bytes in flight)."""
        loop = asyncio.get_running_loop()
        reply: "asyncio.Future[VlartReply]" = loop.create_future()

        def settle(answer: VlartReply) -> None:
            if not reply.done():  # a reply after the timeout finds the future cancelled
                reply.set_result(answer)

        self.server.submit(self.identity, kind, payload,
                           lambda kind, body: loop.call_soon_threadsafe(settle, VlartReply(kind, body)), size)
        try:
            return await asyncio.wait_for(reply, self.timeout_s)
        except asyncio.TimeoutError:
            return VlartReply(protocol.ERROR, {"code": protocol.UNAVAILABLE,
                                               "message": f"no reply from the policy within {self.timeout_s} s"})

    def close(self) -> None:
        self.server.forget_session(self.identity)


async def fail_connection(websocket: Any, code: int, reason: str, timeout_s: float = 10.0) -> None:
    """Close ``websocket`` with ``code`` and ``reason`` for a stream that broke: RFC 6455's "fail the WebSocket
    connection". The close frame is sent and the TCP connection half-closed at once; what the client still sends is
    read and discarded (a plain close would wait for the client's close frame, which flow control does not read while
    frames sent after the broken one are queued), until the client closes or ``timeout_s`` passes."""
    if websocket.transport.is_closing():
        return
    websocket.protocol.fail(code, reason)  # from here on the protocol discards incoming data
    websocket.send_data()
    websocket.transport.resume_reading()
    try:
        await asyncio.wait_for(websocket.wait_closed(), timeout_s)
    except asyncio.TimeoutError:
        websocket.transport.abort()


class WebsocketProtocol(Protocol):
    """One foreign protocol: what to say on connect, and how to serve a connection's frames."""

    name: str
    health_path: str

    def health_body(self, problem: Optional[str]) -> tuple[str, str]:
        """(body, content type) of the health check's reply: healthy (``problem`` None) or not, and why."""
        ...

    async def serve_connection(self, websocket: Any, session: VlartSession, max_message_bytes: int) -> None: ...


class WebsocketEndpoint:
    """Serves ``handler``'s protocol on ``host:port`` in front of ``server`` (started, in this process)."""

    def __init__(self, handler: WebsocketProtocol, server: PolicyServer, host: str, port: int,
                 max_message_bytes: int = 16 * 2**20, request_timeout_s: float = 120.0,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections: expected at least 1, got {max_connections}")
        self.handler = handler
        self.server = server
        self.host, self.port = host, port
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.connections = 0
        self.request_timeout_s = request_timeout_s
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _process_request(self, connection: Any, request: Any) -> Any:
        """The health check's answer, a 503 for a connection beyond the limit, or None: go on with the handshake."""
        if request.path == self.handler.health_path:
            problem = self.server.failure
            body, content_type = self.handler.health_body(problem)
            status = http.HTTPStatus.OK if problem is None else http.HTTPStatus.SERVICE_UNAVAILABLE
            response = connection.respond(status, body)
            response.headers["Content-Type"] = content_type
            return response
        if self.connections >= self.max_connections:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"{self.max_connections} connections are open, the most this endpoint "
                                      "serves; try again later\n")
        return None

    async def _connection(self, websocket: Any) -> None:
        if self.connections >= self.max_connections:  # handshakes that raced past the check in _process_request
            await websocket.close(CLOSE_TRY_AGAIN_LATER, f"{self.max_connections} connections are open")
            return
        self.connections += 1
        session = VlartSession(self.server, self.request_timeout_s)
        try:
            await self.handler.serve_connection(websocket, session, self.max_message_bytes)
        except Exception as exc:  # one connection's failure must not stop the endpoint, nor close it silently
            log.exception("%s connection from %s failed", self.handler.name, websocket.remote_address)
            await fail_connection(websocket, CLOSE_INTERNAL_ERROR, f"internal error: {describe_exception(exc, 100)}")
        finally:
            self.connections -= 1
            session.close()

    async def serve(self) -> None:
        """Serve until ``stop()``."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        # max_queue 0: websockets stops reading a connection while a frame waits beside the one being handled.
        async with serve(self._connection, self.host, self.port, compression=None, max_queue=0,
                         max_size=2 * self.max_message_bytes, process_request=self._process_request) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            log.info("%s endpoint on %s (policy server at %s)", self.handler.name, self.url, self.server.endpoint)
            self._ready.set()
            await self._stopped.wait()

    def start(self) -> "WebsocketEndpoint":
        """Serve in a background thread; returns once listening."""
        self._thread = threading.Thread(target=self._run, name="vlart-websocket", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._startup_error is not None:
            reason = f": {describe_exception(self._startup_error)}" if self._startup_error is not None else ""
            raise RuntimeError(f"the {self.handler.name} endpoint did not start on {self.host}:{self.port}{reason}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self.serve())
        except Exception as exc:
            if not self._ready.is_set():  # it never started: start() raises this
                self._startup_error = exc
                self._ready.set()
            else:  # the endpoint is gone: the process must not look healthy to its supervisor
                self.server.record_failure(f"{self.handler.name} endpoint", exc)

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
