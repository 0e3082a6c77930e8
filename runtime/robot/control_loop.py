"""A fixed-rate control loop that executes action chunks while the next chunk is being inferred.

Every tick: read an observation, hand the robot one action, and when fewer than ``refill_threshold`` planned
actions remain, ask for the next chunk in a worker thread (so inference overlaps execution). A chunk inferred from
the observation of tick s plans ticks s, s+1, ...; when it arrives at tick t the rows for ticks before t are stale and
dropped (an inference that is ready within its own tick, as in lockstep, is used at once). How a new chunk joins the
plan is the **execution strategy** (``runtime.robot.strategies``: hold, ensemble, blend, rtc).

When no valid action is ready the loop applies the **hold action** (zero motion, gripper unchanged), never a stale or
invalid one; chunks with NaN or infinity are discarded. A watchdog switches to hold once no fresh chunk has arrived
for ``watchdog_s``. Needs numpy only (runs on the robot side).

Time comes from the injected ``clock`` and ``sleep`` and inference runs on the injected ``executor`` (a thread by
default), so a virtual clock can drive the loop deterministically, e.g. a simulator with a simulated latency.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import numpy as np

from policies.api.interface import ChunkContinuation, Observation, Policy
from runtime.core.stats import percentile
from runtime.robot.strategies import STRATEGIES, Plan


@dataclass(frozen=True)
class ChunkRequest:
    """What the predictor is asked: the observation of ``tick`` and, with ``rtc``, what the chunk must continue."""

    observation: Observation
    tick: int
    continuation: Optional[ChunkContinuation] = None


ChunkPredictor = Callable[[ChunkRequest], np.ndarray]


class ObservationSource(Protocol):
    def observe(self) -> Observation: ...


class ActionSink(Protocol):
    def act(self, action: np.ndarray) -> None: ...


@dataclass
class ControlLoopConfig:
    """``gripper_index`` is the absolute gripper dimension (None if the robot has none); the other dimensions are
    deltas, so zero is "no motion". ``initial_gripper`` is held until the first action is sent (1 = open).
    ``hold_on_inference_error``: a failed inference (a dead server, a timeout) drops the plan, so the robot holds
    from that tick on instead of finishing the plan blind until the watchdog fires."""

    rate_hz: float
    action_dim: int = 7
    refill_threshold: int = 8
    execution: str = "ensemble"
    ensemble_alpha: float = 0.1
    ensemble_horizon: int = 7
    blend_old_weight: float = 0.3
    rtc_delay_ticks: int = 0
    rtc_delay_window: int = 5
    rtc_soft_rows: Optional[int] = 0
    watchdog_s: float = 1.0
    hold_on_inference_error: bool = False
    gripper_index: Optional[int] = -1
    initial_gripper: float = 1.0

    def __post_init__(self) -> None:
        if self.rate_hz <= 0:
            raise ValueError(f"rate_hz: expected > 0, got {self.rate_hz}")
        if self.execution not in STRATEGIES:
            raise ValueError(f"execution: expected one of {', '.join(STRATEGIES)}, got {self.execution!r}")
        if self.refill_threshold < 0 or self.ensemble_horizon < 1 or self.watchdog_s <= 0:
            raise ValueError("refill_threshold >= 0, ensemble_horizon >= 1 and watchdog_s > 0 are required")
        if not 0.0 <= self.blend_old_weight <= 1.0:
            raise ValueError(f"blend_old_weight: expected a weight in [0, 1], got {self.blend_old_weight}")
        if self.rtc_delay_ticks < 0 or self.rtc_delay_window < 1:
            raise ValueError("rtc_delay_ticks >= 0 and rtc_delay_window >= 1 are required")
        if self.rtc_soft_rows is not None and self.rtc_soft_rows < 0:
            raise ValueError(f"rtc_soft_rows: expected >= 0 or None, got {self.rtc_soft_rows}")


@dataclass
class ControlLoopReport:
    ticks: int = 0
    duration_s: float = 0.0
    effective_rate_hz: float = 0.0
    jitter_p50_ms: float = 0.0
    jitter_p99_ms: float = 0.0
    stale_ticks: int = 0
    stale_ratio: float = 0.0
    watchdog_ticks: int = 0
    overruns: int = 0
    inferences: int = 0
    invalid_chunks: int = 0
    inference_errors: int = 0
    inference_latency_p50_ms: float = 0.0
    inference_latency_p95_ms: float = 0.0
    inference_delay_ticks_p50: float = 0.0
    inference_delay_ticks_max: int = 0
    last_error: Optional[str] = None
    inference_latencies_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    future: Future
    tick: int
    started: float


@dataclass
class _State:
    plan: Plan = field(default_factory=dict)
    pending: Optional[_Pending] = None
    last_fresh: float = 0.0
    gripper: float = 1.0
    delays: list[int] = field(default_factory=list)


class ControlLoop:
    """Runs ``predictor`` (``ChunkRequest`` -> (T, A) chunk) against ``source`` and ``sink`` at ``config.rate_hz``.

    ``executor`` runs one inference at a time; ``close()`` shuts it down.
    """

    def __init__(
        self,
        source: ObservationSource,
        sink: ActionSink,
        predictor: ChunkPredictor,
        config: ControlLoopConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        executor: Optional[Executor] = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.predictor = predictor
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.strategy = STRATEGIES[config.execution](config)
        self._stop = threading.Event()
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlart-inference")

    def stop(self) -> None:
        """Ask the loop to end after the current tick (safe from another thread or a signal handler)."""
        self._stop.set()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def hold_action(self, state: _State) -> np.ndarray:
        action = np.zeros(self.config.action_dim, dtype=np.float32)
        if self.config.gripper_index is not None:
            action[self.config.gripper_index] = state.gripper
        return action

    def _predict(self, request: ChunkRequest) -> tuple[np.ndarray, float]:
        """The chunk and the clock when it was ready (an executor may run it late, as a virtual clock does)."""
        chunk = np.asarray(self.predictor(request), dtype=np.float32)
        return chunk, self.clock()

    def _valid(self, chunk: np.ndarray) -> bool:
        return chunk.ndim == 2 and chunk.shape[1] == self.config.action_dim and bool(np.isfinite(chunk).all())

    def _collect(self, state: _State, tick: int, report: ControlLoopReport, latencies: list) -> None:
        pending = state.pending
        if pending is None or not pending.future.done():
            return
        state.pending = None
        try:
            chunk, ready = pending.future.result()
        except Exception as exc:  # a failing predictor must not stop the robot's loop
            report.inference_errors += 1
            report.last_error = f"{type(exc).__name__}: {exc}"
            if self.config.hold_on_inference_error:
                state.plan.clear()
            return
        report.inferences += 1
        latencies.append((ready - pending.started) * 1e3)
        state.delays.append(tick - pending.tick)
        if not self._valid(chunk):
            report.invalid_chunks += 1
            return
        state.last_fresh = self.clock()
        state.plan = self.strategy.merge(state.plan, chunk, pending.tick, tick)

    def run(self, ticks: int) -> ControlLoopReport:
        """Run ``ticks`` ticks (or until ``stop()``) and report rate, jitter, stale ticks and inference delay."""
        config = self.config
        period = 1.0 / config.rate_hz
        report = ControlLoopReport()
        state = _State(gripper=config.initial_gripper)
        jitters: list[float] = []
        latencies: list[float] = []
        start = self.clock()
        state.last_fresh = start
        scheduled = start
        tick = 0
        first_tick = last_tick = start
        while tick < ticks and not self._stop.is_set():
            delay = scheduled - self.clock()
            if delay > 0:
                self.sleep(delay)
            now = self.clock()
            if tick == 0:
                first_tick = now
            last_tick = now
            jitters.append(abs(now - scheduled) * 1e3)
            self._collect(state, tick, report, latencies)
            obs = self.source.observe()
            for old in [t for t in state.plan if t < tick]:
                del state.plan[old]
            if state.pending is None and len(state.plan) < max(config.refill_threshold, 1):
                continuation = self.strategy.continuation(state.plan, tick, state.delays, self.hold_action(state))
                request = ChunkRequest(obs, tick, continuation)
                state.pending = _Pending(self._executor.submit(self._predict, request), tick, self.clock())
                self._collect(state, tick, report, latencies)  # ready within this tick (lockstep): use it now
            predictions = state.plan.pop(tick, None)
            if now - state.last_fresh > config.watchdog_s:
                report.watchdog_ticks += 1
                state.plan.clear()
                predictions = None
            if predictions:
                action = self.strategy.action(predictions, tick)
                if config.gripper_index is not None:
                    state.gripper = float(action[config.gripper_index])
            else:
                report.stale_ticks += 1
                action = self.hold_action(state)
            self.sink.act(action)
            tick += 1
            scheduled += period
            if self.clock() > scheduled + period:
                report.overruns += 1  # a tick ran over by more than a period: re-anchor instead of bursting
                scheduled = self.clock()
        report.ticks = tick
        report.duration_s = round(self.clock() - start, 4)
        span = last_tick - first_tick
        report.effective_rate_hz = round((tick - 1) / span, 3) if tick > 1 and span > 0 else 0.0
        report.jitter_p50_ms = round(percentile(jitters, 50), 3)
        report.jitter_p99_ms = round(percentile(jitters, 99), 3)
        report.stale_ratio = round(report.stale_ticks / tick, 4) if tick else 0.0
        report.inference_latencies_ms = [round(value, 3) for value in latencies]
        report.inference_latency_p50_ms = round(percentile(latencies, 50), 3)
        report.inference_latency_p95_ms = round(percentile(latencies, 95), 3)
        report.inference_delay_ticks_p50 = round(percentile(state.delays, 50), 2)
        report.inference_delay_ticks_max = max(state.delays, default=0)
        return report


def ticks_of_delay(latency_s: float, rate_hz: float) -> int:
    """Ticks that pass while an inference of ``latency_s`` runs: choose ``refill_threshold`` above this."""
    return math.ceil(latency_s * rate_hz)


def policy_predictor(policy: Policy, seed: Optional[Callable[[int], int]] = None) -> ChunkPredictor:
    """A ``Policy``, in this process or behind a server (``bridge.client.RemotePolicy``), as a chunk predictor;
    ``seed(tick)`` seeds each inference's noise."""

    def predict(request: ChunkRequest) -> np.ndarray:
        seed_value = seed(request.tick) if seed else None
        return policy.predict_action(request.observation, seed=seed_value, continuation=request.continuation).actions

    return predict
