"""What the benchmarks that drive `vlart serve` share: the server in a child process.

Imported by the benchmark scripts (run as ``python -m benchmarks.NAME``), never by vlart itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.evidence import REPO


class ServeProcess:
    """``vlart serve --model MODEL EXTRA...`` in a child process; ``url`` once it says it is ready. Its output goes
    to a log file (``log()``), so that a benchmark can check what the server said."""

    def __init__(self, model: str, *extra: str, warmup: int = 2, ready_timeout_s: float = 600.0) -> None:
        command = [sys.executable, "-m", "runtime.app.cli", "serve", "--model", model, "--warmup", str(warmup), *extra]
        self._log = tempfile.NamedTemporaryFile("w+", prefix="vlart-serve-", suffix=".log")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env=dict(os.environ, PYTHONPATH=str(REPO)))
        deadline = time.monotonic() + ready_timeout_s
        while not (match := re.search(r"ready on (\S+)", self.log())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vlart serve {' '.join(extra)} did not start: {self.log()[-2000:]}")
            time.sleep(0.2)
        self.url = match.group(1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return Path(self._log.name).read_text()

    def stop(self) -> int:
        """SIGTERM, as a supervisor stops it; returns its exit code."""
        if self.alive():
            self.process.terminate()
        return self.process.wait(60)

