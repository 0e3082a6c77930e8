"""The narrow interface between a policy and whoever drives it (server, evaluation runner, profiler).

Imports only numpy, so the bridge and the robot side can use these types without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional, Protocol, Sequence, Union

import numpy as np

from runtime.core.safe_repr import bounded_repr

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
IMAGE_PLACEHOLDER = "<image>"  # CogACT's prompt builder (Prismatic's) removes it from the lowercased instruction


def image_problem(image: object, max_side: Optional[int] = None) -> Optional[str]:
    """What is wrong with ``image`` as an RGB frame ((H, W, 3) uint8, each side in 1..``max_side``), or None. The
    server (before inference) and the policy (for in-process callers) refuse the same frames with the same words."""
    if not isinstance(image, np.ndarray):
        return f"expected a numpy uint8 array of shape (H, W, 3), got {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"expected dtype uint8 (RGB 0..255), got {image.dtype}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"expected shape (H, W, 3), got {tuple(image.shape)}"
    if image.shape[0] < 1 or image.shape[1] < 1:
        return f"image is empty, shape {tuple(image.shape)}"
    if max_side is not None and (image.shape[0] > max_side or image.shape[1] > max_side):
        return f"height and width must be between 1 and {max_side}, got {tuple(image.shape)}"
    return None


def instruction_problem(instruction: object, max_chars: Optional[int] = None) -> Optional[str]:
    """What is wrong with ``instruction`` (a non-empty string of at most ``max_chars`` characters, with words besides
    ``<image>`` placeholders, which the prompt builder removes), or None."""
    if not isinstance(instruction, str):
        return f"expected a non-empty string, got {type(instruction).__name__}"
    if not instruction.strip():
        return "expected a non-empty string, got an empty one"
    if max_chars is not None and len(instruction) > max_chars:
        return f"expected at most {max_chars} characters, got {len(instruction)}"
    if not instruction.lower().replace(IMAGE_PLACEHOLDER, "").strip():
        return (f"{bounded_repr(instruction)} is empty once CogACT's prompt builder removes {IMAGE_PLACEHOLDER!r} "
                "and whitespace")
    return None


@dataclass
class Observation:
    """What the robot sends: one RGB frame (H, W, 3) uint8, the instruction, optional proprioception (unused by
    CogACT)."""

    image: np.ndarray
    instruction: str
    proprio: Optional[np.ndarray] = None


@dataclass(frozen=True)
class ChunkContinuation:
    """What a new chunk must continue (real-time chunking): the robot's current plan from the observation's tick on.

    ``prefix`` (P, A) unnormalised actions, row k for the k-th tick after the observation. Its first ``delay_ticks``
    rows will execute while the new chunk is being inferred, so the new chunk reproduces them (weight 1); the rest,
    rows [delay_ticks, P), is the old plan's overlap, which the new chunk follows with a weight decaying towards 0 at
    row P; rows from P on are free. ``delay_ticks = 0`` with an empty prefix is an ordinary, unguided sample.
    """

    prefix: np.ndarray
    delay_ticks: int


def continuation_problem(
    prefix: object, delay_ticks: object, chunk_length: int, action_dim: int
) -> Optional[tuple[str, str]]:
    """(field, what is wrong) with a continuation request, or None; fields are ``prefix`` and ``delay_ticks``."""
    if not isinstance(delay_ticks, int) or isinstance(delay_ticks, bool) or not 0 <= delay_ticks < chunk_length:
        return "delay_ticks", f"expected an integer in [0, {chunk_length}), got {bounded_repr(delay_ticks)}"
    if not isinstance(prefix, np.ndarray) or prefix.dtype.kind not in "fiu":
        return "prefix", f"expected a numeric array of shape (P, {action_dim}), got {type(prefix).__name__}"
    if prefix.ndim != 2 or prefix.shape[1] != action_dim or prefix.shape[0] > chunk_length:
        return "prefix", f"expected shape (P, {action_dim}) with P <= {chunk_length}, got {tuple(prefix.shape)}"
    if prefix.shape[0] < delay_ticks:
        return "prefix", (
            f"expected at least delay_ticks = {delay_ticks} rows (the frozen actions), got {prefix.shape[0]}"
        )
    if not np.all(np.isfinite(prefix)):
        return "prefix", "contains NaN or infinity"
    return None


@dataclass
class PolicyOutput:
    """actions (T, A) unnormalised chunk; normalized_actions (T, A) clipped, gripper binarised; action (A,) the one to
    execute now (ensembled when the ensemble is on, else the chunk's first row); timings_ms per stage (``total``: the
    policy's own time; ``round_trip``: a remote caller's wait); budget_over: a latency budget's stage was over."""

    actions: np.ndarray
    normalized_actions: np.ndarray
    action: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    budget_over: bool = False

    @property
    def latency_ms(self) -> float:
        """What the caller waited for this output: the round trip of a remote policy, else the policy's total."""
        return self.timings_ms.get("round_trip", self.timings_ms.get("total", 0.0))


@dataclass(frozen=True)
class Conventions:
    """What a client must know to use the actions (announced by the server in ``hello``). ``ensemble_horizon`` and
    ``ensemble_alpha`` are the adaptive ensemble's window and sharpness (None: the policy does not ensemble)."""

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
    ensemble_alpha: Optional[float] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, announced: dict[str, Any]) -> "Conventions":
        """The conventions a server announced; a key an older server does not send takes its default."""
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in announced.items() if key in names}
        for key in ("action_names", "image_keys"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


class Policy(Protocol):
    """The interface the server, the evaluation runner and the profiler use, and nothing else."""

    @property
    def conventions(self) -> Conventions: ...

    def reset(self) -> None: ...

    def predict_action(
        self, obs: Observation, seed: Optional[int] = None, continuation: Optional[ChunkContinuation] = None
    ) -> PolicyOutput: ...


class ServablePolicy(Policy, Protocol):
    """A policy a server can share between clients: each client gets a ``session()`` with its own state."""

    @property
    def metadata(self) -> dict[str, Any]: ...

    def session(self) -> Policy: ...


@dataclass
class PredictRequest:
    """One row of a batched prediction: ``session.predict_action(obs, seed, continuation)``, run with others."""

    session: Policy
    obs: Observation
    seed: Optional[int] = None
    continuation: Optional[ChunkContinuation] = None


class BatchingPolicy(ServablePolicy, Protocol):
    """A servable policy that runs several sessions' requests as one forward pass (the server's dynamic batching).
    Output i is request i's ``PolicyOutput``, or the exception that request alone raised."""

    def predict_batch(self, requests: Sequence[PredictRequest]) -> list[Union[PolicyOutput, Exception]]: ...
