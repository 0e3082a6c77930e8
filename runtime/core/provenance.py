"""Where a result came from: the vlart checkout's git commit, the versions of the packages it ran with.

Versions are read from the installed distributions' metadata, so nothing heavy is imported to learn them. A layer-1
building block: imports nothing of vlart's.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ("vlart", "numpy", "torch", "transformers", "mani-skill", "sapien")


def git_state(repo: Path = REPO) -> Optional[dict[str, Any]]:
    """{"commit", "dirty"} when vlart runs from a git checkout (tracked files changed: dirty); None otherwise."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        # An installed vlart may sit inside some other repository (a venv in a checkout): only its own counts.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != repo.resolve():
            return None
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Python's version and those of the installed ``DISTRIBUTIONS`` (the missing ones left out)."""
    found = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def provenance() -> dict[str, Any]:
    return {"git": git_state(), "versions": versions()}
