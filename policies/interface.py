"""The narrow interface between a policy and whoever drives it (server, evaluation runner, profiler).

Imports only numpy, so the bridge and the robot side can use these types without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Protocol

import numpy as np

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")


@dataclass
class Observation:
    """What the robot sends: one RGB frame (H, W, 3) uint8, the instruction, optional proprioception (unused by
    CogACT)."""

    image: np.ndarray
    instruction: str
    proprio: Optional[np.ndarray] = None


@dataclass
class PolicyOutput:
    """actions (T, A) unnormalised chunk; normalized_actions (T, A) clipped, gripper binarised; action (A,) the one to
    execute now (ensembled when the ensemble is on, else the chunk's first row); timings_ms per stage."""

    actions: np.ndarray
    normalized_actions: np.ndarray
    action: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Conventions:
    """What a client must know to use the actions (announced by the server in ``hello``)."""

    action_dim: int
    action_names: tuple[str, ...]
    rotation: str
    gripper: str
    chunk_length: int
    control_rate_hz: float
    image_size: int
    image_keys: tuple[str, ...]
    unnorm_key: Optional[str]
    ensemble_horizon: Optional[int]

    def to_dict(self) -> dict:
        return asdict(self)


class Policy(Protocol):
    """The interface the server, the evaluation runner and the profiler use, and nothing else."""

    @property
    def conventions(self) -> Conventions: ...

    def reset(self) -> None: ...

    def predict_action(self, obs: Observation, seed: Optional[int] = None) -> PolicyOutput: ...


class ServablePolicy(Policy, Protocol):
    """A policy a server can share between clients: each client gets a ``session()`` with its own state."""

    @property
    def metadata(self) -> dict[str, Any]: ...

    def session(self) -> Policy: ...
