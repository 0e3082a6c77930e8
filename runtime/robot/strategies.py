"""Execution strategies: how a new action chunk joins the robot's plan, and what the plan executes at a tick.

The plan maps each future tick to its predictions (oldest first), each with the tick of the observation it was
predicted from. A strategy is one small class in ``STRATEGIES``; ``ControlLoopConfig.execution`` names it:

- ``hold``: the newest chunk replaces the plan.
- ``ensemble``: CogACT's adaptive ensemble: the predictions for a tick made less than ``ensemble_horizon`` ticks
  before it (at most that many; always the newest) are blended with adaptive weights, the newest the reference. In
  lockstep that is CogACT's rule exactly (the chunk of k ticks ago contributes its row k, k < horizon); under a
  delay of d ticks a chunk lands every d ticks, and an age limit in chunks instead of ticks would blend in
  predictions up to d x horizon ticks old.
- ``blend``: LeRobot's async-inference aggregation: where the old plan and the new chunk overlap, the action is
  ``blend_old_weight * old + (1 - blend_old_weight) * new`` (0.3 / 0.7), elsewhere the new chunk's.
- ``rtc``: real-time chunking. The request carries the plan for the ticks from the observation on
  (``ChunkContinuation``): its first d rows, which will execute before the chunk can arrive, are frozen and the new
  chunk (sampled to reproduce them and continue the rest) then replaces the plan. d is the largest inference delay,
  in ticks, of the last ``rtc_delay_window`` chunks (``rtc_delay_ticks`` before the first). ``rtc_soft_rows`` caps
  the overlap sent after the frozen rows: 0 (default) sends only the frozen rows, RTC's hard mask, which the
  held-out grid chose over the soft one (docs/realtime.md); None sends the whole remaining plan, RTC's soft region
  up to H - s, which with a new chunk every d ticks makes the plan keep repeating itself.

Needs numpy only (runs on the robot side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from policies.api.ensemble import adaptive_blend
from policies.api.interface import ChunkContinuation

if TYPE_CHECKING:
    from runtime.robot.control_loop import ControlLoopConfig


class Prediction(NamedTuple):
    origin: int  # the tick of the observation it was predicted from
    action: np.ndarray


Plan = dict[int, list[Prediction]]


class ExecutionStrategy:
    """The plan keeps each chunk row for a tick still to come, at most ``ensemble_horizon`` per tick; the action is
    the newest prediction; no continuation is sent. Subclasses change one of the three."""

    name = ""
    replaces_plan = False

    def __init__(self, config: ControlLoopConfig) -> None:
        self.config = config

    def merge(self, plan: Plan, chunk: np.ndarray, origin: int, now: int) -> Plan:
        """``chunk`` (T, A), predicted from the observation of tick ``origin``, joined to ``plan`` at tick ``now``
        (its rows for ticks before ``now`` are stale and dropped)."""
        plan = {} if self.replaces_plan else plan
        for row, action in enumerate(chunk):
            tick = origin + row
            if tick >= now:
                self.add(plan.setdefault(tick, []), Prediction(origin, action))
        return plan

    def add(self, predictions: list[Prediction], new: Prediction) -> None:
        predictions.append(new)
        del predictions[: -self.config.ensemble_horizon]

    def action(self, predictions: list[Prediction], tick: int) -> np.ndarray:
        """The action for ``tick`` from its predictions (oldest first)."""
        return predictions[-1].action

    def continuation(self, plan: Plan, tick: int, delays: list[int], hold: np.ndarray) -> Optional[ChunkContinuation]:
        """What the chunk asked for at ``tick`` must continue; ``delays`` are the past inference delays in ticks,
        ``hold`` the hold action (no motion, the gripper where it is)."""
        return None


class Hold(ExecutionStrategy):
    name = "hold"
    replaces_plan = True


class Ensemble(ExecutionStrategy):
    name = "ensemble"

    def action(self, predictions: list[Prediction], tick: int) -> np.ndarray:
        young = [p.action for p in predictions if tick - p.origin < self.config.ensemble_horizon]
        if len(young) <= 1:
            return predictions[-1].action
        return adaptive_blend(young, self.config.ensemble_alpha).astype(np.float32)


class Blend(ExecutionStrategy):
    name = "blend"

    def add(self, predictions: list[Prediction], new: Prediction) -> None:
        if not predictions:
            predictions.append(new)
            return
        weight = self.config.blend_old_weight
        blended = (weight * predictions[-1].action + (1.0 - weight) * new.action).astype(np.float32)
        predictions[:] = [Prediction(new.origin, blended)]


class RealTimeChunking(ExecutionStrategy):
    name = "rtc"
    replaces_plan = True

    def continuation(self, plan: Plan, tick: int, delays: list[int], hold: np.ndarray) -> Optional[ChunkContinuation]:
        """The plan from ``tick`` on as RTC's prefix, its first d rows frozen: d is the largest recent delay. Ticks
        the plan does not cover before d are the hold action, which is what will execute there (the gripper where
        the row before leaves it)."""
        if not plan:
            return None
        config = self.config
        delay = max(delays[-config.rtc_delay_window:], default=config.rtc_delay_ticks)
        length = max(max(plan) - tick + 1, delay)
        if config.rtc_soft_rows is not None:
            length = min(length, delay + config.rtc_soft_rows)
        rows: list[np.ndarray] = []
        for offset in range(length):
            predictions = plan.get(tick + offset)
            if predictions:
                rows.append(predictions[-1].action)
            elif offset < delay:
                action = hold.copy()
                if rows and config.gripper_index is not None:
                    action[config.gripper_index] = rows[-1][config.gripper_index]
                rows.append(action)
            else:
                break
        return ChunkContinuation(np.stack(rows).astype(np.float32), delay) if rows else None


STRATEGIES: dict[str, type[ExecutionStrategy]] = {cls.name: cls for cls in (Hold, Ensemble, Blend, RealTimeChunking)}
