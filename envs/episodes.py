"""One evaluation episode and the worker that runs a shard of them, in either simulator's interpreter.

Each episode: reset the task at its ``episode_id`` (seeded), reset the policy's ensemble, then step up to the task's
limit with the policy's ensembled action converted as CogACT's SIMPLER wrapper does (lockstep), or run the robot's
control loop under the run's timing (``envs.timed_episode``); record SIMPLER's official success (at the final step),
success at any step, the grasp, latencies, the executed actions and a video. An exception inside an episode becomes
a failed record with its reason. The policy is any ``Policy``: a server's through the thin client (``connect_remote``)
or one loaded in the worker (``runtime.app.evaluation`` loads it).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from envs.eval_config import EpisodeJob, EvalConfig
from envs.registry import TASKS
from envs.results import EpisodeRecord, latency_stats
from envs.timed_episode import EpisodeSimulator, run_timed_episode
from policies.api.interface import Policy

PolicyConnection = tuple[Policy, Optional[dict[str, Any]]]  # the policy and its resolved config


def connect_remote(endpoint: str, timeout_s: float) -> PolicyConnection:
    """The policy behind a ``vlart serve`` endpoint, through the thin client (one retry per request)."""
    from bridge.client import PolicyClient, RemotePolicy

    client = PolicyClient(endpoint, timeout_s=timeout_s, retries=1, name=f"vlart-eval-{os.getpid()}")
    policy = RemotePolicy(client)
    return policy, policy.metadata.get("config")


def new_record(job: EpisodeJob, config: EvalConfig) -> EpisodeRecord:
    """An episode's record before it runs: which episode, in which simulator, on which grid, to which horizon."""
    return EpisodeRecord(task=job.task, episode_id=job.episode_id, seed=job.seed, max_steps=job.max_steps,
                         simulator=TASKS[job.task].simulator, grid=config.grid)


def failed_record(job: EpisodeJob, config: EvalConfig, reason: str) -> EpisodeRecord:
    """The record of an episode that could not run (no simulator, a dead or hung worker): a failure, with why."""
    record = new_record(job, config)
    record.failure = reason
    return record


def run_episode(task: Any, policy: Policy, job: EpisodeJob, config: EvalConfig,
                video_dir: Optional[Path]) -> EpisodeRecord:
    """One episode; an exception inside becomes a failed record with the reason (the caller decides about the env).
    Lockstep asks the policy for each step's (ensembled) action; the real-time modes run the control loop."""
    from envs.video import video_name, write_video

    record = new_record(job, config)
    started = time.perf_counter()
    latencies: list[float] = []
    simulator: Optional[EpisodeSimulator] = None

    try:
        first = task.reset(job.episode_id, job.seed)
        record.instruction = first.instruction
        policy.reset()
        simulator = EpisodeSimulator(task, first)
        if config.timing.mode == "lockstep":
            instruction = first.instruction
            for step in range(job.max_steps):
                observation = simulator.observe()
                if observation.instruction != instruction:  # a multi-stage task's next stage: a new ensemble, as
                    policy.reset()                            # CogACT's wrapper starts one on a new instruction
                    instruction = observation.instruction
                output = policy.predict_action(observation, seed=job.seed * 1000 + step)
                latencies.append(output.latency_ms)
                record.budget_violation_steps += int(output.budget_over)
                simulator.act(output.action)
        else:
            record.control = run_timed_episode(config.timing, simulator, policy, job.seed, job.max_steps,
                                               TASKS[job.task].control_rate_hz)
            latencies = record.control.pop("inference_latencies_ms")
        record.success_final = simulator.success
    except Exception as exc:  # the run continues; the failure and its reason are recorded
        record.failure = f"{type(exc).__name__}: {exc}"
        record.success_final = False
        traceback.print_exc()
    record.wall_time_s = round(time.perf_counter() - started, 3)
    record.policy_latency_ms = latency_stats(latencies)
    if simulator is not None:
        record.steps = len(simulator.env_step_ms)
        record.success_any = simulator.success_any
        record.grasped = simulator.grasped
        record.env_step_ms = latency_stats(simulator.env_step_ms)
        if simulator.actions:
            record.trace = str(simulator.write_trace(config.out / "traces" / f"{job.task.replace('/', '_')}_"
                                                                              f"{job.episode_id:03d}.npz"))
        if video_dir is not None:
            name = video_name(job.task, job.episode_id, record.success_final, record.instruction)
            try:
                record.video = str(write_video(video_dir / name, simulator.frames, TASKS[job.task].control_rate_hz))
            except Exception as exc:  # the episode's outcome stands; only its video is missing
                record.video_error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
    return record


class EpisodeWorker:
    """One worker's policy (a server's or one loaded in this process) and its simulators, one per task, built on
    first use and rebuilt after an episode fails (its state is then unknown). Episodes run one after another; which
    ones share a simulator, and in what order, is the caller's deal. ``model_config``: the policy's resolved config
    (what a server's hello announces), for the results' provenance."""

    def __init__(self, config: EvalConfig, policy: Policy, model_config: Optional[dict[str, Any]]) -> None:
        self.config = config
        self.policy = policy
        self.model_config = model_config
        self.video_dir = config.out / "videos" if config.video else None
        self.tasks: dict[str, Any] = {}

    def prepare(self, job: EpisodeJob, emit: Callable[[str], None] = lambda stage: None) -> Optional[EpisodeRecord]:
        """Build ``job``'s simulator unless it is built (``emit("building")`` first); a failed record if it cannot
        be built, else None."""
        from envs.tasks import make_task

        if job.task in self.tasks:
            return None
        emit("building")
        try:
            self.tasks[job.task] = make_task(TASKS[job.task], grid=self.config.grid)
        except Exception as exc:  # the environment could not even be built
            traceback.print_exc()
            return failed_record(job, self.config, f"{type(exc).__name__}: {exc}")
        return None

    def run(self, job: EpisodeJob, emit: Callable[[str], None] = lambda stage: None) -> EpisodeRecord:
        """One episode's record; ``emit("building")`` before a simulator is built, ``emit("start")`` before the
        episode runs."""
        failed = self.prepare(job, emit)
        if failed is not None:
            return failed
        emit("start")
        record = run_episode(self.tasks[job.task], self.policy, job, self.config, self.video_dir)
        if record.failure is not None:
            self.tasks.pop(job.task).close()
        return record

    def close(self) -> None:
        for task in self.tasks.values():
            task.close()
        self.tasks.clear()


def serve_jobs(worker_id: int, config: EvalConfig, connect: Callable[[], PolicyConnection],
               next_job: Callable[[], Optional[EpisodeJob]],
               emit: Callable[[tuple[str, int, Any, float]], None]) -> None:
    """A worker's life: ``connect()`` to the policy, then run the jobs ``next_job`` hands out (None: no more),
    reporting each through ``emit`` as (kind, worker_id, payload, monotonic time)."""
    worker = EpisodeWorker(config, *connect())
    emit(("model_config", worker_id, worker.model_config, time.monotonic()))
    while True:
        job = next_job()
        if job is None:
            break
        record = worker.run(job, lambda stage: emit((stage, worker_id, job, time.monotonic())))
        emit(("done", worker_id, record, time.monotonic()))
