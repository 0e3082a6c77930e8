"""The bytes of requests a server holds at once: accepted, not yet answered, across all its clients and endpoints.

A request that would take the total over the limit is refused (``busy``) before it is queued, so many clients
sending large frames at once cannot make the server hold more than the limit in queued requests. Imports nothing
but the standard library.
"""

from __future__ import annotations

import threading


class InflightBytes:
    """A thread-safe count of held bytes against ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_inflight_bytes: expected a positive number of bytes, got {limit}")
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def acquire(self, size: int) -> bool:
        """Hold ``size`` more bytes if that stays within the limit; False (nothing held) otherwise."""
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.held -= size
