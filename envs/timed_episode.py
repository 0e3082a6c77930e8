"""How time passes in an evaluation episode (``vlart eval --timing``), and the episode loop for the two real-time
modes.

- ``lockstep``: SIMPLER's official protocol. The simulator waits for every inference; the policy's ensembled action
  for each step comes from the server's session (``runtime.app.evaluation.run_episode``).
- ``delay``: the world keeps moving while the policy thinks, on a virtual clock. An inference started at tick t from
  observation t delivers its chunk at tick t + d, d = ceil(latency / control period); meanwhile the robot executes
  what the execution strategy gives. The latency is fixed (``--latency-ms`` or a profile's p50), so the same seeds
  give bit-identical episodes on any machine under any load.
- ``wallclock``: the simulator is paced at the task's control rate in real time and inference runs concurrently in a
  thread, with whatever latency this machine has.

Both real-time modes run ``runtime.ControlLoop``, the loop a robot runs, with the chosen execution strategy (hold,
ensemble, blend, rtc); a new inference starts as soon as the previous one has delivered (the refill threshold is the
chunk length) or, with ``--replan-every s``, once s actions have executed; the i-th inference is seeded with
``episode seed * 1000 + its tick``, as lockstep seeds step i.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from policies.api.interface import Observation, Policy
from runtime.robot.control_loop import ControlLoop, ControlLoopConfig, policy_predictor
from runtime.robot.strategies import STRATEGIES
from runtime.core.virtual_time import VirtualTime

TIMING_MODES = ("lockstep", "delay", "wallclock")
WALLCLOCK_WATCHDOG_S = 2.0
DEFAULT_ALPHA = 0.1  # CogACT's, for a server that does not announce its own


@dataclass(frozen=True)
class TimingConfig:
    """``latency_ms``: the simulated inference latency of ``delay`` mode; ``latency_source`` says where it came from."""

    mode: str = "lockstep"
    execution: str = "ensemble"
    latency_ms: Optional[float] = None
    latency_source: Optional[str] = None
    rtc_soft_rows: Optional[int] = 0  # rtc: overlap rows sent after the frozen ones (0: hard mask; None: whole plan)
    # The open-loop horizon s: a chunk is asked for once s actions of the plan have executed (None: as soon as the
    # previous one has delivered). With no latency and ``hold``, the robot runs s rows of each chunk blind.
    replan_every: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mode not in TIMING_MODES:
            raise ValueError(f"--timing: expected one of {', '.join(TIMING_MODES)}, got {self.mode!r}")
        if self.execution not in STRATEGIES:
            raise ValueError(f"--execution: expected one of {', '.join(STRATEGIES)}, got {self.execution!r}")
        if self.mode == "lockstep" and self.execution != "ensemble":
            raise ValueError("--execution: lockstep runs CogACT's server-side ensemble only; for another strategy "
                             "without latency use --timing delay --latency-ms 0")
        if self.mode == "delay" and (self.latency_ms is None or not math.isfinite(self.latency_ms)
                                     or self.latency_ms < 0):
            raise ValueError("--latency-ms or --latency-from: --timing delay needs a latency >= 0 ms")
        if (self.rtc_soft_rows is not None and self.rtc_soft_rows < 0) or (
                self.execution != "rtc" and self.rtc_soft_rows != 0):
            given = "all" if self.rtc_soft_rows is None else self.rtc_soft_rows
            raise ValueError(f"--rtc-soft-rows: expected rows >= 0 (or all) with --execution rtc, got {given} with "
                             f"--execution {self.execution}")
        if self.replan_every is not None and (self.mode == "lockstep" or self.replan_every < 1):
            raise ValueError(f"--replan-every: expected ticks >= 1 with --timing delay or wallclock, got "
                             f"{self.replan_every} with --timing {self.mode}")
        if self.mode != "delay" and self.latency_ms is not None:
            raise ValueError(f"--latency-ms/--latency-from: only --timing delay simulates a latency (got --timing "
                             f"{self.mode})")

    def delay_ticks(self, rate_hz: float) -> Optional[int]:
        """d for ``delay`` mode at ``rate_hz``; None otherwise."""
        if self.latency_ms is None:
            return None
        return math.ceil(round(self.latency_ms * rate_hz / 1e3, 9))

    def describe(self, rates_hz: dict[str, float]) -> dict[str, Any]:
        """For results.json: the mode, the strategy and, in ``delay`` mode, the latency and d per task."""
        entry: dict[str, Any] = {"mode": self.mode, "execution": self.execution}
        if self.replan_every is not None:
            entry["replan_every"] = self.replan_every
        if self.execution == "rtc":
            entry["rtc_soft_rows"] = "all" if self.rtc_soft_rows is None else self.rtc_soft_rows
        if self.mode == "delay":
            entry.update(latency_ms=self.latency_ms, latency_source=self.latency_source,
                         delay_ticks={task: self.delay_ticks(rate) for task, rate in rates_hz.items()})
        return entry


def latency_from_profile(spec: str, scale: float = 1.0) -> tuple[float, str]:
    """``PROFILE.json[:LABEL]`` (a ``vlart profile --json`` file; a run's label is its preset, ``PRESET+compiled``
    when compiled) -> (p50 of the whole predict x ``scale`` in ms, a description). Without a label, the first run."""
    if not scale > 0:
        raise ValueError(f"--latency-scale: expected > 0, got {scale}")
    path, preset = spec, ""
    if not Path(spec).is_file() and ":" in spec:
        path, _, preset = spec.rpartition(":")
    try:
        runs = json.loads(Path(path).read_text())["runs"]
    except FileNotFoundError:
        raise ValueError(f"--latency-from: no such profile file: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"--latency-from: {path} is not a `vlart profile --json` file (no 'runs')") from None
    available = [run.get("label", run.get("preset")) for run in runs]  # label: since compiled runs (preset+compiled)
    chosen = (next((run for run, name in zip(runs, available) if name == preset), None) if preset
              else (runs or [None])[0])
    if chosen is None:
        raise ValueError(f"--latency-from: preset {preset!r} is not in {path}; it has: "
                         f"{', '.join(map(str, available))}")
    p50 = float(chosen["stages"]["total"]["p50_ms"])
    latency = round(p50 * scale, 3)
    scaled = f" x {scale:g}" if scale != 1.0 else ""
    machine = f"{chosen.get('model')} on {chosen.get('device')}"
    return latency, f"{path}:{chosen.get('label', chosen['preset'])} p50 {p50:.1f} ms{scaled} ({machine})"


class EpisodeSimulator:
    """The episode's simulator as the control loop's camera and robot: observe the latest frame, step with the
    action; records frames, executed actions and success."""

    def __init__(self, task: Any, first: Observation) -> None:
        self.task = task
        self.observation = first
        self.frames = [first.image]
        self.actions: list[np.ndarray] = []
        self.env_step_ms: list[float] = []
        self.success = self.success_any = False
        self.grasped: Optional[bool] = None

    def observe(self) -> Observation:
        return self.observation

    def act(self, action: np.ndarray) -> None:
        self.actions.append(np.array(action, dtype=np.float32))
        started = time.perf_counter()
        result = self.task.step(action)
        self.env_step_ms.append((time.perf_counter() - started) * 1e3)
        self.observation = result.observation
        self.success = result.success
        self.success_any |= result.success
        self.grasped = result.grasped
        self.frames.append(result.observation.image)

    def write_trace(self, path: Path) -> Path:
        """The executed actions (T, A) as ``actions`` in an .npz file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, actions=np.stack(self.actions))
        return path


def refill_threshold(chunk_length: int, replan_every: Optional[int]) -> int:
    """The control loop's refill threshold that asks for a chunk every ``replan_every`` ticks: a chunk delivered
    at tick t leaves T - 1 planned ticks after t, and T - s at tick t + s."""
    if replan_every is None:
        return chunk_length
    if replan_every > chunk_length:
        raise ValueError(f"--replan-every: expected at most the chunk length, {chunk_length}, got {replan_every}")
    return chunk_length + 1 - replan_every


def run_timed_episode(timing: TimingConfig, simulator: EpisodeSimulator, policy: Policy, seed: int, max_steps: int,
                      rate_hz: float) -> dict[str, Any]:
    """Run ``max_steps`` ticks of ``simulator`` under ``timing`` with ``policy``'s chunks (its conventions give the
    chunk length and the ensemble's window and sharpness); returns the control loop's report (a dict)."""
    conventions = policy.conventions
    delay_ticks = timing.delay_ticks(rate_hz)
    config = ControlLoopConfig(
        rate_hz=rate_hz, refill_threshold=refill_threshold(conventions.chunk_length, timing.replan_every),
        execution=timing.execution,
        ensemble_alpha=conventions.ensemble_alpha if conventions.ensemble_alpha is not None else DEFAULT_ALPHA,
        ensemble_horizon=conventions.ensemble_horizon or 1, rtc_delay_ticks=delay_ticks or 0,
        rtc_soft_rows=timing.rtc_soft_rows,
        # a fixed simulated latency has nothing to watch; in real time a stalled inference must stop the arm
        watchdog_s=float("inf") if timing.mode == "delay" else WALLCLOCK_WATCHDOG_S,
    )
    predictor = policy_predictor(policy, seed=lambda tick: seed * 1000 + tick)
    if timing.mode == "delay":
        virtual = VirtualTime(timing.latency_ms / 1e3)
        loop = ControlLoop(simulator, simulator, predictor, config, clock=virtual.clock, sleep=virtual.sleep,
                           executor=virtual)
    else:
        loop = ControlLoop(simulator, simulator, predictor, config)
    try:
        report = loop.run(ticks=max_steps)
    finally:
        loop.close()
    result = report.to_dict()
    if report.last_error is not None and report.inferences == 0:
        raise RuntimeError(f"no inference succeeded: {report.last_error}")
    return result
