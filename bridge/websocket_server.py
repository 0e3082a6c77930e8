"""Websocket endpoints in front of a ``PolicyServer``: other clients' protocols, the same policy process.

An endpoint speaks a foreign protocol (``bridge.openpi_endpoint``, ``bridge.vla_eval_endpoint``) on a websocket and
submits each request to the vlart server of the same process (``PolicyServer.submit``) as one more client: every
websocket connection is one vlart session (its own ensemble), and its inferences join the same dynamic batches as
those of ZeroMQ clients. So the server's checks, queue limits, budgets and batching apply unchanged, and the endpoint
only translates. Requests and replies pass as Python values, with no socket or encoding between endpoint and server.

Frames are size-checked before they are decoded: a frame over ``max_message_bytes`` gets a ``too_large`` error,
one over twice that closes the connection unread (websockets' ``max_size``).
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
from bridge.server import PolicyServer

log = logging.getLogger("vlart.bridge.websocket")

DEFAULT_PORT = 8000  # openpi's and vla-eval's default


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

    async def call(self, kind: str, payload: dict[str, Any]) -> VlartReply:
        loop = asyncio.get_running_loop()
        reply: "asyncio.Future[VlartReply]" = loop.create_future()

        def settle(answer: VlartReply) -> None:
            if not reply.done():  # a reply after the timeout finds the future cancelled
                reply.set_result(answer)

        self.server.submit(self.identity, kind, payload,
                           lambda kind, body: loop.call_soon_threadsafe(settle, VlartReply(kind, body)))
        try:
            return await asyncio.wait_for(reply, self.timeout_s)
        except asyncio.TimeoutError:
            return VlartReply(protocol.ERROR, {"code": protocol.UNAVAILABLE,
                                               "message": f"no reply from the policy within {self.timeout_s} s"})

    def close(self) -> None:
        self.server.forget_session(self.identity)


class WebsocketProtocol(Protocol):
    """One foreign protocol: what to say on connect, and how to serve a connection's frames."""

    name: str
    health_path: str

    def health_body(self) -> tuple[str, str]:
        """(body, content type) of the health check's reply."""
        ...

    async def serve_connection(self, websocket: Any, session: VlartSession, max_message_bytes: int) -> None: ...


class WebsocketEndpoint:
    """Serves ``handler``'s protocol on ``host:port`` in front of ``server`` (started, in this process)."""

    def __init__(self, handler: WebsocketProtocol, server: PolicyServer, host: str, port: int,
                 max_message_bytes: int = 64 * 2**20, request_timeout_s: float = 120.0) -> None:
        self.handler = handler
        self.server = server
        self.host, self.port = host, port
        self.max_message_bytes = max_message_bytes
        self.request_timeout_s = request_timeout_s
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _health(self, connection: Any, request: Any) -> Any:
        if request.path == self.handler.health_path:
            body, content_type = self.handler.health_body()
            response = connection.respond(http.HTTPStatus.OK, body)
            response.headers["Content-Type"] = content_type
            return response
        return None

    async def _connection(self, websocket: Any) -> None:
        session = VlartSession(self.server, self.request_timeout_s)
        try:
            await self.handler.serve_connection(websocket, session, self.max_message_bytes)
        except Exception:  # one connection's failure must not stop the endpoint
            log.exception("%s connection from %s failed", self.handler.name, websocket.remote_address)
        finally:
            session.close()

    async def serve(self) -> None:
        """Serve until ``stop()``."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(self._connection, self.host, self.port, compression=None,
                         max_size=2 * self.max_message_bytes, process_request=self._health) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            log.info("%s endpoint on %s (policy server at %s)", self.handler.name, self.url, self.server.endpoint)
            self._ready.set()
            await self._stopped.wait()

    def start(self) -> "WebsocketEndpoint":
        """Serve in a background thread; returns once listening."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve()), name="vlart-websocket",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the {self.handler.name} endpoint did not start on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
