"""Demonstrations in vlart's HDF5 layout (``docs/demonstrations.md``) as training samples.

A sample is one step t of one episode: the frame before step t, the instruction, and the action chunk
actions[t : t + T] normalised with CogACT's ``BOUNDS_Q99`` rule. Past the episode's end a chunk is padded as
CogACT pads it: the relative dimensions with the normalised value of a zero action, the gripper with its last value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.normalization import ActionStatistics


def episode_files(data_dir: Path) -> list[Path]:
    return sorted((Path(data_dir) / "episodes").glob("*/*.h5"))


def read_episode(path: Path) -> dict[str, Any]:
    """``{"attrs", "images" (T, S, S, 3) uint8, "actions" (T, 7) float32}`` of one episode file."""
    import h5py

    with h5py.File(path, "r") as file:
        return {"attrs": dict(file.attrs), "images": file["observation/image"][()], "actions": file["action"][()]}


@dataclass
class Batch:
    images: np.ndarray  # (B, S, S, 3) uint8
    instructions: list[str]
    actions: np.ndarray  # (B, T, A) float32, normalised


class DemoDataset:
    """Every episode of ``data_dir`` in memory (frames are stored at the policy's input size)."""

    def __init__(self, data_dir: Path, statistics: ActionStatistics, chunk_length: int = 16) -> None:
        files = episode_files(data_dir)
        if not files:
            raise FileNotFoundError(f"--data: no episodes under {Path(data_dir) / 'episodes'} (make them with vlart demos)")
        self.statistics = statistics
        self.chunk_length = chunk_length
        self.episodes = [read_episode(path) for path in files]
        self.index = [(e, t) for e, episode in enumerate(self.episodes) for t in range(len(episode["actions"]))]
        self._normalized = [statistics.normalize(e["actions"].astype(np.float64)) for e in self.episodes]
        self._pad_relative = statistics.normalize(np.zeros((1, len(statistics.q01))))[0]

    def __len__(self) -> int:
        return len(self.index)

    def chunk(self, episode: int, step: int) -> np.ndarray:
        """Normalised actions[step : step + T] of ``episode``, padded past its end: (T, A) float32."""
        actions = self._normalized[episode]
        chunk = actions[step : step + self.chunk_length]
        missing = self.chunk_length - len(chunk)
        if missing:
            pad = np.repeat(self._pad_relative[None], missing, axis=0)
            pad[:, ~self.statistics.mask] = actions[-1, ~self.statistics.mask]
            chunk = np.concatenate([chunk, pad])
        return chunk.astype(np.float32)

    def sample(self, batch: int, rng: np.random.Generator) -> Batch:
        picks = [self.index[i] for i in rng.integers(len(self.index), size=batch)]
        return Batch(
            images=np.stack([self.episodes[e]["images"][t] for e, t in picks]),
            instructions=[str(self.episodes[e]["attrs"]["instruction"]) for e, _ in picks],
            actions=np.stack([self.chunk(e, t) for e, t in picks]),
        )
