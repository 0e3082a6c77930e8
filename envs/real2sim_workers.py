"""Evaluation workers in the SimplerEnv interpreter, for the simplerenv/ tasks (Google robot and WidowX).

SIMPLER's original tasks need SAPIEN 2.2.2 and numpy < 2, which cannot share an environment with vlart's
ManiSkill3; ``./setup.sh`` builds a second one (``.venv-real2sim``). ``vlart eval`` starts such a worker as a child
process of that interpreter (``python -m envs.real2sim_worker_main``) with this checkout on its path, so both sides
run the same code; the worker reaches the policy server through the thin ZeroMQ client, like a robot.

Parent and child speak JSON lines over the child's stdin/stdout (its own stdout is moved to stderr first, so what the
simulator prints cannot corrupt them): the parent sends the run's settings; the child asks for each job ("next"),
gets one (or null: no more), and reports what ``serve_jobs`` emits. A job is handed out only when asked for, so one
that a dead worker never started goes to its replacement. ``Real2SimWorkerProcess`` gives the parent the part of
``multiprocessing.Process`` that ``run_eval`` watches (``is_alive``, ``exitcode``, ``kill``, ``join``);
``Real2SimEpisodeWorker`` drives one job at a time, as ``vlart sweep``'s episode actors do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from envs.eval_config import EpisodeJob, EvalConfig
from envs.results import EpisodeRecord
from envs.timed_episode import TimingConfig

REPO = Path(__file__).resolve().parents[1]
PYTHON_ENV = "VLART_REAL2SIM_PYTHON"
DEFAULT_PYTHON = REPO / ".venv-real2sim" / "bin" / "python"


def real2sim_python() -> Path:
    """The SimplerEnv interpreter: $VLART_REAL2SIM_PYTHON, or .venv-real2sim beside this checkout's code."""
    path = Path(os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)
    if not path.exists():
        raise RuntimeError(
            f"the simplerenv/ tasks (SIMPLER as published) run in the original SimplerEnv's own environment, and "
            f"{path} does not exist: run ./setup.sh (it builds .venv-real2sim), or set {PYTHON_ENV} to a Python that "
            "has sapien==2.2.2, numpy<2, mani_skill2_real2sim and vlart's base install"
        )
    return path


def _plain(value: Any) -> Any:
    """JSON for what crosses the pipe: dataclasses, paths, numpy scalars and arrays."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def encode(message: Any) -> bytes:
    return (json.dumps(_plain(message), allow_nan=True) + "\n").encode()


def config_from_dict(data: dict[str, Any]) -> EvalConfig:
    return EvalConfig(**{**data, "out": Path(data["out"]), "timing": TimingConfig(**data["timing"])})


def payload_from_dict(kind: str, payload: Any) -> Any:
    """A reported payload back into the parent's types (``run_eval`` reads jobs and records, not dicts)."""
    if kind in ("building", "start"):
        return EpisodeJob(**payload)
    if kind == "done":
        return EpisodeRecord(**payload)
    return payload


# -- the parent's side -----------------------------------------------------------------------------------------------


class Real2SimWorkerProcess:
    """One worker in the SimplerEnv interpreter, fed from ``jobs`` (a queue of EpisodeJob, None at its end) and
    reporting into ``results`` as the multiprocessing workers do."""

    def __init__(self, worker_id: int, config: EvalConfig, endpoint: Optional[str], jobs: Any, results: Any) -> None:
        if not endpoint:
            raise ValueError("--via: the simplerenv/ tasks run in the SimplerEnv interpreter, which has no torch; "
                             "they reach the policy through a server (--via zmq)")
        self.worker_id = worker_id
        self.jobs = jobs
        self.results = results
        self.settings = {"worker_id": worker_id, "endpoint": endpoint, "config": config}
        self.process: Optional[subprocess.Popen] = None
        self.name = f"vlart-eval-{worker_id}"

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        self.process = subprocess.Popen([str(real2sim_python()), "-m", "envs.real2sim_worker_main"], cwd=str(REPO),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.process.stdin is not None
        self.process.stdin.write(encode(self.settings))
        self.process.stdin.flush()
        threading.Thread(target=self._relay, name=f"{self.name}-relay", daemon=True).start()

    def _relay(self) -> None:
        """Answer the child's requests for jobs and pass its reports on, until its stdout closes."""
        assert self.process is not None and self.process.stdout is not None and self.process.stdin is not None
        for line in self.process.stdout:
            try:
                kind, worker_id, payload, stamp = json.loads(line)
            except ValueError:
                continue  # not one of ours (the child's stdout is redirected, but be safe)
            if kind == "next":
                try:
                    self.process.stdin.write(encode(self.jobs.get()))
                    self.process.stdin.flush()
                except (BrokenPipeError, OSError):
                    return
            else:
                self.results.put((kind, worker_id, payload_from_dict(kind, payload), stamp))

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exitcode(self) -> Optional[int]:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        if self.is_alive():
            assert self.process is not None
            self.process.kill()

    def join(self, timeout: Optional[float] = None) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass


class Real2SimEpisodeWorker:
    """``runtime.app.evaluation.EpisodeWorker``'s interface (``prepare``, ``run``, ``close``, ``model_config``) over one
    worker in the SimplerEnv interpreter, handed one job at a time (``vlart sweep``'s episode actors). A worker that
    dies raises ``RuntimeError`` with its exit code."""

    def __init__(self, config: EvalConfig, endpoint: Optional[str], start_timeout_s: float = 300.0) -> None:
        self.jobs: "queue.Queue[Optional[EpisodeJob]]" = queue.Queue()
        self.results: "queue.Queue[tuple[str, int, Any, float]]" = queue.Queue()
        self.process = Real2SimWorkerProcess(0, config, endpoint, self.jobs, self.results)
        self.process.start()
        self.pending: Optional[EpisodeJob] = None  # handed out, its simulator built, the episode not yet reported
        self.model_config = self._report(("model_config",), start_timeout_s)[1]

    def _report(self, kinds: tuple[str, ...], timeout_s: Optional[float] = None) -> tuple[str, Any]:
        """The worker's next report of one of ``kinds`` (others skipped)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            try:
                kind, _, payload, _ = self.results.get(timeout=0.5)
            except queue.Empty:
                if not self.process.is_alive() and self.results.empty():
                    raise RuntimeError(f"the SimplerEnv worker died (exit code {self.process.exitcode})") from None
                continue
            if kind in kinds:
                return kind, payload
        raise RuntimeError(f"the SimplerEnv worker sent no {'/'.join(kinds)} within {timeout_s} s")

    def prepare(self, job: EpisodeJob) -> Optional[EpisodeRecord]:
        """Hand ``job`` to the worker and wait until its simulator is built: None, or the record of a failed build."""
        self.jobs.put(job)
        kind, payload = self._report(("start", "done"))
        if kind == "done":
            return payload
        self.pending = job
        return None

    def run(self, job: EpisodeJob) -> EpisodeRecord:
        if self.pending != job:
            failed = self.prepare(job)
            if failed is not None:
                return failed
        self.pending = None
        return self._report(("done",))[1]

    def close(self) -> None:
        self.jobs.put(None)
        self.process.join(10)
        self.process.kill()
