"""What ``vlart eval`` is asked to run: the run's settings and its episode jobs.

Apart from the runner so that the workers in the SimplerEnv interpreter (``envs/real2sim_workers.py``) can rebuild
them from what crosses the pipe without importing the orchestration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from envs.placements import GRIDS
from envs.timed_episode import TimingConfig


@dataclass
class EvalConfig:
    suite: str
    model: Optional[str] = None
    via: str = "zmq"
    connect: Optional[str] = None
    episodes: Optional[int] = None
    max_steps: Optional[int] = None
    workers: int = 1
    out: Path = Path("runs/eval")
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    unnorm_key: Optional[str] = None
    budget: Optional[str] = None
    step_timeout_s: float = 120.0
    episode_timeout_s: Optional[float] = None
    video: bool = True
    preset: Optional[str] = None
    plan: Optional[str] = None
    grid: str = "official"  # "heldout": placements off the official grid, never seen when choosing the model
    timing: TimingConfig = field(default_factory=TimingConfig)
    max_batch: Optional[int] = None  # the server's dynamic batching (--via zmq with --model): None = one row a worker
    # Long enough for lockstep workers to meet in one batch (chosen with benchmarks/serving_scale.py); a worker that
    # is building a simulator stops being waited for once it has not sent for a second.
    batch_wait_ms: float = 100.0

    @property
    def server_max_batch(self) -> int:
        return self.max_batch if self.max_batch is not None else self.workers

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ValueError(f"--grid: expected one of {', '.join(GRIDS)}, got {self.grid!r}")
        if self.via not in ("zmq", "inproc"):
            raise ValueError(f"--via: expected zmq or inproc, got {self.via!r}")
        if self.via == "inproc" and not self.model:
            raise ValueError("--model: --via inproc needs a model to load")
        if self.via == "zmq" and not (self.model or self.connect):
            raise ValueError("--model or --connect: --via zmq needs a model to serve or a server to connect to")
        if self.workers < 1:
            raise ValueError("--workers: expected >= 1")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError("--max-batch: expected >= 1")
        if not self.batch_wait_ms >= 0:
            raise ValueError("--batch-wait-ms: expected >= 0")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError("--episodes: expected >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("--max-steps: expected >= 1")


@dataclass(frozen=True)
class EpisodeJob:
    task: str
    episode_id: int
    seed: int
    max_steps: int
