"""Episode videos: H.264 mp4 through imageio's ffmpeg plugin."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:limit] or "episode"


def video_name(task: str, episode_id: int, success: bool, instruction: str) -> str:
    outcome = "success" if success else "failure"
    return f"{slug(task)}__ep{episode_id:03d}__{outcome}__{slug(instruction)}.mp4"


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """(H, W, 3) uint8 frames -> an mp4 playable anywhere (yuv420p)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(str(path), fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16,
                            ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
