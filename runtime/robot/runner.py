"""The robot side of the real-time loop: a robot adapter driven at a fixed rate by a remote policy server.

``RobotRunner`` connects a ``bridge.client.PolicyClient``, reads the server's conventions (control rate, chunk
length, ensemble horizon, action dimensions) from ``hello``, resets the server's session and runs a
``runtime.robot.control_loop.ControlLoop`` between the server and a ``RobotAdapter``. Whatever ends the run (the tick
count, SIGINT/SIGTERM or ``request_stop()``, a dead server, an exception), the adapter gets ``hold()`` and then
``stop()``, in that order, exactly once each.

**When the server is gone.** Every inference has a short timeout (``default_timeout_s``: max(1 s, 5 control
periods)). A failed inference (a timeout or an error reply) makes the loop hold from that tick on
(``hold_on_inference_error``) and ask again; ``max_consecutive_errors`` failed inferences in a row (default 3, no
successful one between them) end the run with ``stop_reason`` "server". A watchdog (default: the timeout plus one
period) holds the arm if no fresh chunk arrives for that long, whatever the reason.

Imports the standard library, numpy, the bridge client and the control loop only: it runs where only
``pip install vlart`` (numpy, pyzmq, msgpack) is installed.
"""

from __future__ import annotations

import abc
import logging
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from runtime.robot.control_loop import ChunkRequest, ControlLoop, ControlLoopConfig, policy_predictor
from runtime.robot.strategies import STRATEGIES

if TYPE_CHECKING:
    from bridge.client import PolicyClient
    from policies.api.interface import Observation

logger = logging.getLogger("vlart.robot")

STOP_REASONS = ("ticks", "signal", "server")


class RobotAdapter(abc.ABC):
    """A robot (real or simulated) as the control loop sees it. Subclass it and implement the four methods.

    The runner calls ``observe()`` then ``act()`` once per tick, from one thread; at the end it calls ``hold()``
    then ``stop()``, once each. ``summary()`` adds the adapter's own counters to the run's report."""

    @abc.abstractmethod
    def observe(self) -> "Observation":
        """The latest camera frame (H, W, 3) uint8 RGB, the instruction and (optionally) proprioception. Must not
        block for long: it runs inside the control tick."""

    @abc.abstractmethod
    def act(self, action: np.ndarray) -> None:
        """Execute one action (action_dim,) float32 in the policy's convention (for CogACT/Bridge: end-effector
        deltas dx, dy, dz, droll, dpitch, dyaw and the absolute gripper, 1 = open) for one control period. The
        loop's own hold ticks arrive here too, as zero deltas with the gripper unchanged."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Bring the arm to a safe stop now: zero motion, gripper kept where it is."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Release the hardware or simulator (called once, after the final ``hold()``)."""

    def summary(self) -> dict[str, Any]:
        """Adapter counters for the report (steps, success, ...); JSON-serialisable."""
        return {}


ADAPTER_METHODS = ("observe", "act", "hold", "stop")


def default_timeout_s(rate_hz: float) -> float:
    """The per-inference timeout when none is given: five control periods, at least one second."""
    return max(1.0, 5.0 / rate_hz)


@dataclass
class RobotConfig:
    """``rate_hz``/``timeout_s``/``watchdog_s``/``refill_threshold`` None: derived from the server's conventions
    (its ``control_rate_hz``; ``default_timeout_s``; timeout + one period; the chunk length, i.e. the next chunk is
    requested as soon as one arrives). ``ticks`` None: run until stopped. ``retries``: client retries per inference
    (default 0: a retry would send a stale observation, the next tick sends a fresh one)."""

    endpoint: str
    ticks: Optional[int] = None
    execution: str = "ensemble"
    rate_hz: Optional[float] = None
    timeout_s: Optional[float] = None
    connect_timeout_s: float = 10.0
    retries: int = 0
    max_consecutive_errors: int = 3
    watchdog_s: Optional[float] = None
    refill_threshold: Optional[int] = None
    seed: Optional[int] = None
    install_signal_handlers: bool = True

    def __post_init__(self) -> None:
        if self.ticks is not None and self.ticks < 0:
            raise ValueError(f"ticks: expected >= 0, got {self.ticks}")
        if self.execution not in STRATEGIES:
            raise ValueError(f"execution: expected one of {', '.join(STRATEGIES)}, got {self.execution!r}")
        for name in ("rate_hz", "timeout_s", "watchdog_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}: expected > 0, got {value}")
        if not self.connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s: expected > 0, got {self.connect_timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries: expected >= 0, got {self.retries}")
        if self.max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors: expected >= 1, got {self.max_consecutive_errors}")
        if self.refill_threshold is not None and self.refill_threshold < 0:
            raise ValueError(f"refill_threshold: expected >= 0, got {self.refill_threshold}")


@dataclass
class RobotReport:
    """The control loop's report (``loop``: ControlLoopReport.to_dict()) and the run's own fields; ``to_dict()``
    flattens them into one JSON object."""

    stop_reason: str
    holds: int
    last_action_hold: bool
    endpoint: str
    model: str
    execution: str
    rate_hz: float
    timeout_s: float
    watchdog_s: float
    max_consecutive_errors: int
    chunk_length: int
    loop: dict[str, Any] = field(default_factory=dict)
    robot: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        flat = dict(self.loop)
        flat.update({k: v for k, v in asdict(self).items() if k != "loop"})
        return flat


class _Recorder:
    """Between the loop and the adapter: counts the actions sent and remembers whether the last call was a hold."""

    def __init__(self, adapter: RobotAdapter) -> None:
        self.adapter = adapter
        self.acts = 0
        self.last_was_hold = False

    def observe(self) -> "Observation":
        return self.adapter.observe()

    def act(self, action: np.ndarray) -> None:
        self.adapter.act(action)
        self.acts += 1
        self.last_was_hold = False
        if self.acts == 1 or self.acts % 25 == 0:
            logger.info("tick %d sent", self.acts)
        else:
            logger.debug("tick %d sent", self.acts)

    def hold(self) -> None:
        self.adapter.hold()
        self.last_was_hold = True


class RobotRunner:
    """``RobotRunner(RobotConfig("tcp://host:5555")).run(adapter)`` -> ``RobotReport``.

    ``connect()`` (called by ``run`` if not yet done) opens the client and reads ``hello``; call it first to fail
    before building an expensive adapter. ``request_stop()`` ends the run after the current tick (any thread)."""

    def __init__(self, config: RobotConfig, client: Optional["PolicyClient"] = None) -> None:
        self.config = config
        self.client = client
        self._own_client = client is None
        self.hello: Optional[dict[str, Any]] = None
        self.stop_reason: Optional[str] = None
        self._loop: Optional[ControlLoop] = None
        self._lock = threading.Lock()
        self._signals = 0
        self._finishing = False  # holding and stopping the adapter: signals no longer interrupt
        self._consecutive_errors = 0
        self._errors = 0
        self._last_error: Optional[str] = None

    # -- connection ------------------------------------------------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        """Open the client, read ``hello`` (with ``connect_timeout_s``), check the conventions; returns hello."""
        if self.hello is not None:
            return self.hello
        if self.client is None:
            from bridge.client import PolicyClient

            self.client = PolicyClient(self.config.endpoint, timeout_s=self.config.connect_timeout_s,
                                       retries=self.config.retries, name="vlart-robot")
        else:
            self.client.timeout_s = self.config.connect_timeout_s
        hello = self.client.hello()
        conventions = hello.get("conventions") or {}
        for key in ("action_dim", "chunk_length", "control_rate_hz"):
            if key not in conventions:
                raise RuntimeError(f"the server at {self.config.endpoint} announced no {key!r} in hello")
        self.hello = hello
        return hello

    @property
    def conventions(self) -> dict[str, Any]:
        return self.connect()["conventions"]

    @property
    def rate_hz(self) -> float:
        return float(self.config.rate_hz or self.conventions["control_rate_hz"])

    @property
    def timeout_s(self) -> float:
        return float(self.config.timeout_s or default_timeout_s(self.rate_hz))

    @property
    def watchdog_s(self) -> float:
        return float(self.config.watchdog_s or self.timeout_s + 1.0 / self.rate_hz)

    def loop_config(self) -> ControlLoopConfig:
        conventions = self.conventions
        names = list(conventions.get("action_names") or [])
        horizon = conventions.get("ensemble_horizon")
        alpha = conventions.get("ensemble_alpha")
        refill = self.config.refill_threshold
        return ControlLoopConfig(
            rate_hz=self.rate_hz,
            action_dim=int(conventions["action_dim"]),
            refill_threshold=int(conventions["chunk_length"]) if refill is None else refill,
            execution=self.config.execution,
            **({"ensemble_horizon": int(horizon)} if horizon else {}),
            **({"ensemble_alpha": float(alpha)} if alpha is not None else {}),
            watchdog_s=self.watchdog_s,
            hold_on_inference_error=True,
            gripper_index=names.index("gripper") if "gripper" in names else (-1 if not names else None),
        )

    # -- stopping --------------------------------------------------------------------------------------------------

    def request_stop(self, reason: str = "signal") -> None:
        """End the run after the current tick; the first reason given is the one reported. Thread-safe; also safe
        from a signal handler (it only sets flags)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        loop = self._loop
        if loop is not None:
            loop.stop()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1 and not self._finishing:
            raise KeyboardInterrupt  # a second Ctrl-C: the loop is stuck somewhere; unwind (the finally holds)
        self.request_stop("signal")

    def _predictor(self, loop_config: ControlLoopConfig):
        assert self.client is not None
        seed = self.config.seed
        from bridge.client import RemotePolicy

        policy = RemotePolicy(self.client, self.connect())
        predict = policy_predictor(policy, seed=(lambda tick: seed + tick) if seed is not None else None)

        def guarded(request: ChunkRequest) -> np.ndarray:
            try:
                chunk = predict(request)
            except Exception as exc:
                with self._lock:
                    self._errors += 1
                    self._consecutive_errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    dead = self._consecutive_errors >= self.config.max_consecutive_errors
                logger.warning("inference failed (%d in a row): %s", self._consecutive_errors, self._last_error)
                if dead:
                    self.request_stop("server")
                raise
            with self._lock:
                self._consecutive_errors = 0
            return chunk

        return guarded

    # -- the run ---------------------------------------------------------------------------------------------------

    def run(self, adapter: RobotAdapter) -> RobotReport:
        """Run the adapter until ``ticks``, a stop request or a dead server; always ``hold()`` then ``stop()``."""
        previous: dict[int, Any] = {}
        recorder: Optional[_Recorder] = None
        loop: Optional[ControlLoop] = None
        try:
            if self.config.install_signal_handlers and threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGINT, signal.SIGTERM):
                    previous[signum] = signal.signal(signum, self._on_signal)
            hello = self.connect()
            loop_config = self.loop_config()
            assert self.client is not None
            self.client.reset()  # the server's session (its ensemble history) starts afresh
            self.client.timeout_s = self.timeout_s
            recorder = _Recorder(adapter)
            loop = ControlLoop(recorder, recorder, self._predictor(loop_config), loop_config)
            with self._lock:
                self._loop = loop
            if self.stop_reason is not None:  # a stop requested before the loop existed
                loop.stop()
            ticks = sys.maxsize if self.config.ticks is None else self.config.ticks
            logger.info("running %s at %g Hz (%s execution) against %s", hello.get("model", {}).get("name", "?"),
                        loop_config.rate_hz, loop_config.execution, self.config.endpoint)
            loop_report = loop.run(ticks)
        finally:
            self._finishing = True
            try:
                try:
                    if recorder is not None:
                        recorder.hold()
                    else:
                        adapter.hold()
                finally:
                    adapter.stop()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                if loop is not None:
                    loop.close()  # waits for an inference in flight (bounded by the timeout)
                with self._lock:
                    self._loop = None
                if self._own_client and self.client is not None:
                    self.client.close()
        if self.stop_reason is None:
            self.stop_reason = "ticks"
        loop_dict = loop_report.to_dict()
        if self._errors > loop_dict["inference_errors"]:  # a failure that ended the run before the loop saw it
            loop_dict["inference_errors"] = self._errors
            loop_dict["last_error"] = self._last_error
        assert self.hello is not None
        return RobotReport(
            stop_reason=self.stop_reason,
            holds=loop_report.stale_ticks,
            last_action_hold=recorder.last_was_hold if recorder is not None else True,
            endpoint=self.config.endpoint,
            model=str(self.hello.get("model", {}).get("name", "")),
            execution=loop_config.execution,
            rate_hz=loop_config.rate_hz,
            timeout_s=self.timeout_s,
            watchdog_s=loop_config.watchdog_s,
            max_consecutive_errors=self.config.max_consecutive_errors,
            chunk_length=int(self.conventions["chunk_length"]),
            loop=loop_dict,
            robot=adapter.summary(),
        )


def run_robot(adapter: RobotAdapter, config: RobotConfig, client: Optional["PolicyClient"] = None) -> RobotReport:
    """``RobotRunner(config, client).run(adapter)``."""
    return RobotRunner(config, client).run(adapter)


def format_report(report: RobotReport) -> str:
    """The one-screen summary ``vlart robot`` prints."""
    r = report.to_dict()
    lines = [
        f"vlart robot: {r['ticks']} ticks against {r['model'] or '?'} at {r['endpoint']} "
        f"({r['execution']} execution, target {r['rate_hz']:g} Hz)",
        f"  stop reason        {r['stop_reason']}",
        f"  effective rate     {r['effective_rate_hz']:.2f} Hz, {r['overruns']} overruns",
        f"  jitter             p50 {r['jitter_p50_ms']:.1f} ms, p99 {r['jitter_p99_ms']:.1f} ms",
        f"  holds              {r['holds']} ticks (stale ratio {r['stale_ratio']:.3f}, watchdog {r['watchdog_ticks']})"
        f"; final hold: {'yes' if r['last_action_hold'] else 'NO'}",
        f"  inference          {r['inferences']} chunks, latency p50 {r['inference_latency_p50_ms']:.1f} ms "
        f"p95 {r['inference_latency_p95_ms']:.1f} ms, delay p50 {r['inference_delay_ticks_p50']:g} ticks "
        f"max {r['inference_delay_ticks_max']}",
        f"  errors             {r['inference_errors']} failed inferences, {r['invalid_chunks']} invalid chunks",
    ]
    if r.get("last_error"):
        lines.append(f"  last error         {r['last_error']}")
    if r.get("robot"):
        lines.append("  robot              " + ", ".join(f"{k} {v}" for k, v in r["robot"].items()
                                                         if not isinstance(v, (list, dict))))
    return "\n".join(lines)
