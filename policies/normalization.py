"""Action (un)normalisation with CogACT's ``dataset_statistics.json`` (OpenVLA/Prismatic ``BOUNDS_Q99``).

The file maps dataset names (unnorm keys, e.g. ``bridge_orig``, ``fractal20220817_data``) to
``{"action": {"q01": [7], "q99": [7], "mask": [7], ...}, ...}``. Dims whose mask is True were normalised to [-1, 1]
between q01 and q99; the others (the gripper) are absolute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runtime.core.yaml_config import ConfigError, read_mapping


@dataclass(frozen=True)
class ActionStatistics:
    """q01, q99 and mask of one dataset's actions, each of shape (A,)."""

    unnorm_key: str
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray

    def unnormalize(self, normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., A) sampled actions -> (actions, normalized_actions), both (..., A) float32.

        As CogACT: clip to [-1, 1]; binarise the gripper (last dim) at 0.5 in normalised space; map masked dims
        with a = 0.5 (x + 1)(q99 - q01) + q01; unmasked dims pass through.
        """
        if normalized.shape[-1] != self.q01.shape[0]:
            raise ValueError(
                f"actions: expected last dimension {self.q01.shape[0]} (from statistics {self.unnorm_key!r}), "
                f"got shape {normalized.shape}"
            )
        x = np.clip(normalized.astype(np.float64), -1.0, 1.0)
        x[..., -1] = np.where(x[..., -1] < 0.5, 0.0, 1.0)
        actions = np.where(self.mask, 0.5 * (x + 1.0) * (self.q99 - self.q01) + self.q01, x)
        return actions.astype(np.float32), x.astype(np.float32)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) raw actions -> training targets in [-1, 1] on masked dims (``BOUNDS_Q99``); the rest unchanged."""
        scaled = 2.0 * (actions - self.q01) / (self.q99 - self.q01 + 1e-8) - 1.0
        return np.where(self.mask, np.clip(scaled, -1.0, 1.0), actions).astype(np.float32)


def read_statistics_file(path: str | Path) -> dict[str, Any]:
    expected = "a JSON object mapping unnorm keys to statistics"
    data = read_mapping(path, "dataset statistics file", expected)
    if not data:
        raise ConfigError(f"{path}: expected {expected}")
    return data


def select_statistics(all_stats: dict[str, Any], unnorm_key: Optional[str], action_dim: int) -> ActionStatistics:
    """Pick one dataset's action statistics. With no key, a file holding exactly one dataset is unambiguous."""
    available = sorted(all_stats)
    if unnorm_key is None:
        if len(available) != 1:
            raise ValueError(f"unnorm_key: the statistics hold several datasets, choose one of: {', '.join(available)}")
        unnorm_key = available[0]
    if unnorm_key not in all_stats:
        raise ValueError(f"unnorm_key: {unnorm_key!r} is not in the dataset statistics; available: {', '.join(available)}")
    try:
        action = all_stats[unnorm_key]["action"]
        q01 = np.asarray(action["q01"], dtype=np.float64)
        q99 = np.asarray(action["q99"], dtype=np.float64)
        mask = np.asarray(action.get("mask", [True] * len(action["q01"])), dtype=bool)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"statistics[{unnorm_key!r}].action: expected q01, q99 and mask lists ({exc})") from None
    for name, value in (("q01", q01), ("q99", q99), ("mask", mask)):
        if value.shape != (action_dim,):
            raise ValueError(
                f"statistics[{unnorm_key!r}].action.{name}: expected {action_dim} values, got shape {value.shape}"
            )
    return ActionStatistics(unnorm_key, q01, q99, mask)
