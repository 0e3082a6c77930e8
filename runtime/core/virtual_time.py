"""Virtual time for the control loop: a clock, a sleep and a one-at-a-time executor whose calls take a chosen
latency, so a loop driven by them is exact and reproducible whatever the machine's load (``vlart eval --timing
delay`` and the tests use it). Imports nothing of ours.

Time is kept in integer nanoseconds: a latency of exactly two control periods lands exactly on the tick two periods
later, never a rounding error before or after it.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from typing import Any, Callable, Union

Latency = Union[float, Callable[[int], float]]


def _ns(seconds: float) -> int:
    return round(seconds * 1e9) if seconds != float("inf") else 2**62


class VirtualTime(Executor):
    """``latency``: seconds every call takes, or a function of the call's number (from 1). A submitted call runs when
    the clock reaches its deadline (inside ``sleep``), so it reads the clock there; a call with zero latency runs at
    once, inside ``submit``."""

    def __init__(self, latency: Latency) -> None:
        self.now_ns = 0
        self.latency = latency
        self.calls = 0
        self._due: list[tuple[int, Future, Callable[..., Any], tuple, dict]] = []

    def clock(self) -> float:
        return self.now_ns / 1e9

    def _latency_s(self) -> float:
        return self.latency(self.calls) if callable(self.latency) else self.latency

    def _run(self, future: Future, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # the caller sees it through the future, as with a thread pool
            future.set_exception(exc)

    def sleep(self, seconds: float) -> None:
        target = self.now_ns + max(0, _ns(seconds))
        while self._due and self._due[0][0] <= target:
            deadline, future, fn, args, kwargs = self._due.pop(0)
            self.now_ns = deadline
            self._run(future, fn, args, kwargs)
        self.now_ns = target

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._due:
            raise RuntimeError("VirtualTime runs one call at a time; the previous one has not finished")
        self.calls += 1
        future: Future = Future()
        deadline = self.now_ns + _ns(self._latency_s())
        if deadline == self.now_ns:
            self._run(future, fn, args, kwargs)
        else:
            self._due.append((deadline, future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _, future, *_ in self._due:
            future.cancel()
        self._due.clear()
