"""The child side of ``envs/real2sim_workers.py``: an evaluation worker in the SimplerEnv interpreter.

Started by ``Real2SimWorkerProcess`` as ``python -m envs.real2sim_worker_main``; reads its settings and jobs as JSON
lines on stdin and reports on the stdout it was started with.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any, Optional

from envs.episodes import connect_remote, serve_jobs
from envs.eval_config import EpisodeJob
from envs.real2sim_workers import config_from_dict, encode


def child_main(requests: IO[bytes], replies: IO[bytes]) -> None:
    settings = json.loads(requests.readline())
    config = config_from_dict(settings["config"])
    worker_id = settings["worker_id"]

    def emit(message: tuple[str, int, Any, float]) -> None:
        replies.write(encode(message))
        replies.flush()

    def next_job() -> Optional[EpisodeJob]:
        emit(("next", worker_id, None, time.monotonic()))
        line = requests.readline()
        data = json.loads(line) if line else None
        return EpisodeJob(**data) if data else None

    serve_jobs(worker_id, config, lambda: connect_remote(settings["endpoint"], config.step_timeout_s), next_job, emit)


if __name__ == "__main__":
    # The protocol keeps the real stdout; anything else printed to fd 1 (SAPIEN, Vulkan) goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    child_main(sys.stdin.buffer, protocol_out)
