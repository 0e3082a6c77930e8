"""The real-time side of vlart: stage timing, latency budgets, the control loop, the command line."""

from runtime.control_loop import ControlLoop, ControlLoopConfig, ControlLoopReport

__all__ = ["ControlLoop", "ControlLoopConfig", "ControlLoopReport"]
