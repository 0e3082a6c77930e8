"""A sweep's episodes on disk, one JSON line each, written the moment each finishes: what a resumed sweep skips.

``DIR/episodes.jsonl`` holds every attempt: ``vlart eval``'s episode record plus ``cell`` (the cell's name) and
``attempt`` (1, or 2 for the retry of an episode whose run failed: a crash, a hang, a lost worker). An episode is done
once it has an attempt that ran to its end, or two that failed (the second failure stands). A line cut short by a
kill is ignored, so that episode runs again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from envs.results import EpisodeRecord

log = logging.getLogger("vlart.sweep")

MAX_ATTEMPTS = 2  # a failed run is retried once
EpisodeKey = tuple[str, str, int]  # (cell, task, episode_id)


class EpisodeStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "episodes.jsonl"
        directory.mkdir(parents=True, exist_ok=True)
        self.attempts: dict[EpisodeKey, list[dict[str, Any]]] = {}
        self._read()

    def _read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as lines:
            for number, line in enumerate(lines, 1):
                try:
                    entry = json.loads(line)
                    key = (entry["cell"], entry["task"], int(entry["episode_id"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d is not a whole episode record (cut short by a kill?); that episode runs "
                                "again", self.path, number)
                    continue
                self.attempts.setdefault(key, []).append(entry)

    def attempt_count(self, key: EpisodeKey) -> int:
        return len(self.attempts.get(key, []))

    def is_done(self, key: EpisodeKey) -> bool:
        attempts = self.attempts.get(key, [])
        return len(attempts) >= MAX_ATTEMPTS or any(entry.get("failure") is None for entry in attempts)

    def final(self, key: EpisodeKey) -> Optional[dict[str, Any]]:
        """The attempt that stands: the one that ran to its end, else the last failure."""
        attempts = self.attempts.get(key, [])
        finished = [entry for entry in attempts if entry.get("failure") is None]
        return (finished or attempts or [None])[-1]

    def add(self, cell: str, record: EpisodeRecord) -> dict[str, Any]:
        """Append one attempt's record and make it durable before returning (a kill right after loses nothing)."""
        key = (cell, record.task, record.episode_id)
        entry = {"cell": cell, "attempt": self.attempt_count(key) + 1, **record.to_dict()}
        with self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.attempts.setdefault(key, []).append(entry)
        return entry
