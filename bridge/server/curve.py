"""CURVE on the policy server's ROUTER: its keys, and the allowlist of the client keys it accepts.

The allowlist directory is re-read when it changes, and the socket thread checks every message's client key against
it, so that a revoked key's messages are dropped even on a connection made before the revocation.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import zmq

from bridge.keys import ServerKeys

log = logging.getLogger("vlart.bridge.server")

ALLOWLIST_CHECK_S = 1.0


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


def serve_curve(router: zmq.Socket, context: zmq.Context, keys: ServerKeys) -> CurveAllowlist:
    """Make ``router`` (not bound yet) a CURVE server with ``keys``, its clients authenticated against the allowlist
    of ``keys.authorized_dir`` by an authenticator thread that runs until ``allowlist.authenticator.stop()``."""
    from zmq.auth.thread import ThreadAuthenticator

    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    allowlist = CurveAllowlist(keys.authorized_dir, authenticator)
    router.curve_secretkey = keys.secret
    router.curve_publickey = keys.public
    router.curve_server = True
    return allowlist
