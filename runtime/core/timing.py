"""Per-stage timing of one control step.

On CUDA a stage is bracketed by two ``torch.cuda.Event``s; they are resolved in ``results_ms()``, which the caller
invokes after it has synchronised anyway (copying the actions to the host), so timing adds no synchronisation inside
the forward pass. On CPU a stage is measured with the monotonic clock. This module imports nothing of vlart's and
imports torch only when a CUDA timer is asked for.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator


class StageTimer:
    """Collects named stage durations in milliseconds for one step.

    ``device`` is a torch device string; ``"cuda..."`` selects CUDA events. A disabled timer records nothing and
    ``stage()`` is a bare ``yield``. ``step_detail`` asks the code being timed for finer stages (one per DDIM step).
    ``clock`` (seconds) times CPU stages; tests inject one.
    """

    def __init__(self, device: str = "cpu", enabled: bool = True, step_detail: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.enabled = enabled
        self.clock = clock
        self.step_detail = enabled and step_detail
        self._cuda = enabled and str(device).startswith("cuda")
        self._cpu_ms: dict[str, float] = {}
        self._events: list[tuple[str, Any, Any]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if self._cuda:
            import torch

            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._events.append((name, start, end))
        else:
            t0 = self.clock()
            try:
                yield
            finally:
                self._cpu_ms[name] = self._cpu_ms.get(name, 0.0) + (self.clock() - t0) * 1e3

    def results_ms(self) -> dict[str, float]:
        """Stage name -> milliseconds (a stage entered twice is summed). Synchronises on the last CUDA event."""
        if self._events:
            self._events[-1][2].synchronize()
            for name, start, end in self._events:
                self._cpu_ms[name] = self._cpu_ms.get(name, 0.0) + start.elapsed_time(end)
            self._events.clear()
        return dict(self._cpu_ms)
