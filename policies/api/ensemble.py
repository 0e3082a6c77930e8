"""CogACT's adaptive action ensemble (AAE). Needs numpy only: the robot-side control loop blends with it too."""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np


def adaptive_blend(predictions: Sequence[np.ndarray], alpha: float) -> np.ndarray:
    """Several predictions (K, A) of one step's action -> their adaptive blend (A,), float64.

    The last prediction is the newest, the reference: each prediction a_k gets weight exp(alpha * cos(ref, a_k))
    (cosine over all dims, gripper included, 1e-7 added to the norm product), weights normalised to sum 1.
    """
    stacked = np.stack(predictions).astype(np.float64)
    ref = stacked[-1]
    cos = stacked @ ref / (np.linalg.norm(stacked, axis=1) * np.linalg.norm(ref) + 1e-7)
    weights = np.exp(alpha * cos)
    weights /= weights.sum()
    return weights @ stacked


class AdaptiveActionEnsemble:
    """Blends the current step's predictions from the last ``horizon`` chunks with ``adaptive_blend``.

    The chunk predicted k steps ago contributes its row k; the newest chunk's row 0 is the reference. Call
    ``reset()`` at every new episode or instruction.
    """

    def __init__(self, horizon: int, alpha: float = 0.1) -> None:
        if horizon < 1:
            raise ValueError(f"horizon: expected >= 1, got {horizon}")
        self.horizon = horizon
        self.alpha = alpha
        self._history: deque[np.ndarray] = deque(maxlen=horizon)

    def reset(self) -> None:
        self._history.clear()

    def __len__(self) -> int:
        return len(self._history)

    def add(self, chunk: np.ndarray) -> np.ndarray:
        """chunk (T, A) unnormalised actions -> the ensembled action (A,) for the current step."""
        if chunk.ndim != 2:
            raise ValueError(f"chunk: expected shape (T, A), got {chunk.shape}")
        if chunk.shape[0] < self.horizon:
            raise ValueError(f"chunk: {chunk.shape[0]} rows cannot cover ensemble horizon {self.horizon}")
        self._history.append(np.asarray(chunk, dtype=np.float64))
        n = len(self._history)
        predictions = [past[n - 1 - i] for i, past in enumerate(self._history)]
        return adaptive_blend(predictions, self.alpha).astype(np.float32)
