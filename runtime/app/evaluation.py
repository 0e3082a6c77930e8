"""``vlart eval``: run a policy on simulator tasks and report success rates that can be trusted.

Episodes run in worker processes (``--workers``), each with its own simulator and its own policy connection: through
a ``vlart serve`` process and the thin ZeroMQ client (``--via zmq``, the path a robot takes; the server is started
here unless ``--connect`` names one) or with the policy loaded in the worker (``--via inproc``). The parent deals the
episodes to the workers in a fixed order (so a rerun is the same run), watches each worker, and records an episode
that crashes, hangs past its time limit or kills its worker as a failure with the reason; the run goes on. Each
episode: reset the task at its ``episode_id`` (seeded), reset the policy's ensemble, then step up to the task's limit
with the policy's ensembled action converted as CogACT's SIMPLER wrapper does, recording SIMPLER's official success
(at the final step) and success at any step. Episodes come from SIMPLER's official grid or, with
``grid="heldout"``, from placements off it (``envs/placements.py``). results.json also records where the result came
from: the git commit, package versions and the model's resolved config.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from envs.eval_config import EpisodeJob, EvalConfig
from envs.real2sim_workers import Real2SimWorkerProcess
from envs.registry import TASKS, resolve_suite
from envs.results import EpisodeRecord, latency_stats, summary_table, write_results
from envs.timed_episode import EpisodeSimulator, run_timed_episode
from runtime.core.provenance import provenance

DEFAULT_EPISODES_WITHOUT_GRID = 10
DEFAULT_HELDOUT_EPISODES = 24
SERVER_START_TIMEOUT_S = 300.0
SIM_BUILD_TIMEOUT_S = 600.0  # the episode watchdog starts once the simulator is built; building has its own


def plan_jobs(config: EvalConfig) -> list[EpisodeJob]:
    jobs = []
    for spec in resolve_suite(config.suite):
        if config.grid == "heldout":
            if spec.grid_size is None:
                raise ValueError(f"--grid: {spec.name} has no official grid to hold out from")
            count = config.episodes or DEFAULT_HELDOUT_EPISODES
        else:
            count = config.episodes or spec.grid_size or DEFAULT_EPISODES_WITHOUT_GRID
            if spec.grid_size is not None and count > spec.grid_size:
                raise ValueError(f"--episodes: {spec.name} has {spec.grid_size} episodes in its official grid")
        steps = min(config.max_steps or spec.max_steps, spec.max_steps)
        jobs.extend(EpisodeJob(spec.name, i, config.seed + i, steps) for i in range(count))
    return jobs


def suite_backend(config: EvalConfig) -> str:
    """The simulator every task of the suite runs in: one per run, since its workers run in that one's interpreter."""
    backends = {spec.backend for spec in resolve_suite(config.suite)}
    if len(backends) > 1:
        raise ValueError(f"--suite: {config.suite} mixes simulators ({', '.join(sorted(backends))}); evaluate them "
                         "in separate runs")
    backend = backends.pop()
    if backend == "real2sim":
        if config.via != "zmq":
            raise ValueError("--via: the Google-robot tasks run in the SimplerEnv interpreter, which has no policy; "
                             "use --via zmq (the default)")
        from envs.real2sim_workers import real2sim_python

        real2sim_python()  # fails here, before a server starts, if the environment is missing
    return backend


def with_task_conventions(config: EvalConfig) -> EvalConfig:
    """The suite's action conventions where the user set none: the unnormalisation statistics and ensemble window of
    its robot (the Google robot: ``fractal20220817_data``, horizon 2, as CogACT's SIMPLER wrapper sets them)."""
    specs = resolve_suite(config.suite)
    keys = {spec.unnorm_key for spec in specs}
    horizons = {spec.ensemble_horizon for spec in specs}
    if len(keys) > 1 or len(horizons) > 1:
        raise ValueError(f"--suite: {config.suite} mixes robots with different action conventions")
    key, horizon = keys.pop(), horizons.pop()
    overrides = list(config.overrides)
    if horizon is not None and not any(item.startswith("actions.ensemble_horizon=") for item in overrides):
        overrides.append(f"actions.ensemble_horizon={horizon}")
    return dataclasses.replace(config, unnorm_key=config.unnorm_key or key, overrides=overrides)


def check_server_conventions(endpoint: str, config: EvalConfig) -> None:
    """A server started elsewhere must unnormalise with the suite's statistics, or every action is off."""
    if config.unnorm_key is None:
        return
    from bridge.client import PolicyClient

    client = PolicyClient(endpoint, timeout_s=config.step_timeout_s, retries=1, name="vlart-eval-check")
    try:
        served = client.hello()["conventions"].get("unnorm_key")
    finally:
        client.close()
    if served != config.unnorm_key:
        raise ValueError(f"--connect: the server at {endpoint} unnormalises actions with {served!r}, the suite's "
                         f"robot needs {config.unnorm_key!r} (start it with vlart serve --unnorm-key "
                         f"{config.unnorm_key}, or pass --unnorm-key to use another)")


# -- inside a worker process -----------------------------------------------------------------------------------------


class RemotePolicy:
    """The policy behind a ``vlart serve`` endpoint, through the thin client."""

    def __init__(self, endpoint: str, timeout_s: float) -> None:
        from bridge.client import PolicyClient

        self.client = PolicyClient(endpoint, timeout_s=timeout_s, retries=1, name=f"vlart-eval-{os.getpid()}")
        hello = self.client.hello()
        self.model_config: Optional[dict[str, Any]] = hello["model"].get("config")
        self.conventions: dict[str, Any] = hello["conventions"]

    def reset(self) -> None:
        self.client.reset()

    def act(self, obs: Any, seed: int) -> tuple[Any, float, bool]:
        result = self.client.infer(obs.image, obs.instruction, seed=seed)
        over = bool(result.budget and result.budget.get("over"))
        return result.action, result.round_trip_ms, over

    def chunk(self, obs: Any, seed: int, continuation: Any) -> Any:
        from runtime.robot.control_loop import continuation_arguments

        return self.client.infer(obs.image, obs.instruction, seed=seed, **continuation_arguments(continuation)).actions


class LocalPolicy:
    """The policy loaded in this worker process."""

    def __init__(self, config: EvalConfig) -> None:
        from runtime.app.policy_loader import load_policy_with_preset

        policy = load_policy_with_preset(config.model, config.preset, config.plan, unnorm_key=config.unnorm_key,
                                         overrides=config.overrides)
        self.session = policy.session()
        self.model_config: Optional[dict[str, Any]] = policy.metadata["config"]  # what a server's hello announces
        self.conventions: dict[str, Any] = policy.conventions.to_dict()
        self.budget = None
        if config.budget:
            from runtime.core.budgets import LatencyBudget, load_budget

            self.budget = LatencyBudget(load_budget(config.budget))

    def reset(self) -> None:
        self.session.reset()

    def act(self, obs: Any, seed: int) -> tuple[Any, float, bool]:
        output = self.session.predict_action(obs, seed=seed)
        over = bool(self.budget.observe(output.timings_ms)) if self.budget is not None else False
        return output.action, output.timings_ms.get("total", 0.0), over

    def chunk(self, obs: Any, seed: int, continuation: Any) -> Any:
        kwargs = {"continuation": continuation} if continuation is not None else {}
        return self.session.predict_action(obs, seed=seed, **kwargs).actions


def _fault_for(config: EvalConfig, job: EpisodeJob) -> Optional[tuple[str, int]]:
    if config.inject_fault is None:
        return None
    kind, episode, step = config.inject_fault.split(":")
    return (kind, int(step)) if int(episode) == job.episode_id else None


def run_episode(task: Any, policy: Any, job: EpisodeJob, config: EvalConfig,
                video_dir: Optional[Path]) -> EpisodeRecord:
    """One episode; an exception inside becomes a failed record with the reason (the caller decides about the env).
    Lockstep asks the policy for each step's (ensembled) action; the real-time modes run the control loop."""
    from envs.video import video_name, write_video

    record = EpisodeRecord(task=job.task, episode_id=job.episode_id, seed=job.seed)
    started = time.perf_counter()
    latencies: list[float] = []
    fault = _fault_for(config, job)
    simulator: Optional[EpisodeSimulator] = None

    def check_fault(step: int) -> None:
        if fault is not None and fault[1] == step:
            if fault[0] == "hang":
                time.sleep(10**6)
            raise RuntimeError(f"injected env.step failure at step {step}")

    try:
        first = task.reset(job.episode_id, job.seed)
        record.instruction = first.instruction
        policy.reset()
        simulator = EpisodeSimulator(task, first, check_fault)
        if config.timing.mode == "lockstep":
            instruction = first.instruction
            for step in range(job.max_steps):
                observation = simulator.observe()
                if observation.instruction != instruction:  # a multi-stage task's next stage: a new ensemble, as
                    policy.reset()                            # CogACT's wrapper starts one on a new instruction
                    instruction = observation.instruction
                action, latency_ms, over = policy.act(observation, seed=job.seed * 1000 + step)
                latencies.append(latency_ms)
                record.budget_violation_steps += int(over)
                simulator.act(action)
        else:
            conventions = policy.conventions
            record.control = run_timed_episode(
                config.timing, simulator, policy.chunk, job.seed, job.max_steps, TASKS[job.task].control_rate_hz,
                ensemble_horizon=conventions.get("ensemble_horizon") or 1,
                ensemble_alpha=float(((policy.model_config or {}).get("actions") or {}).get("ensemble_alpha", 0.1)),
                chunk_length=int(conventions["chunk_length"]),
            )
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
    """One worker's policy connection (``endpoint``: a server's; None: the policy loaded here) and its simulators,
    one per task, built on first use and rebuilt after an episode fails (its state is then unknown). Episodes run one
    after another; which ones share a simulator, and in what order, is the caller's deal."""

    def __init__(self, config: EvalConfig, endpoint: Optional[str]) -> None:
        self.config = config
        self.policy = RemotePolicy(endpoint, config.step_timeout_s) if endpoint else LocalPolicy(config)
        self.video_dir = config.out / "videos" if config.video else None
        self.tasks: dict[str, Any] = {}

    @property
    def model_config(self) -> Optional[dict[str, Any]]:
        """The policy's resolved config (what the server's hello announces)."""
        return self.policy.model_config

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
            return EpisodeRecord(job.task, job.episode_id, job.seed, failure=f"{type(exc).__name__}: {exc}")
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


def serve_jobs(worker_id: int, config: EvalConfig, endpoint: Optional[str],
               next_job: Callable[[], Optional[EpisodeJob]],
               emit: Callable[[tuple[str, int, Any, float]], None]) -> None:
    """A worker's life: connect to the policy, then run the jobs ``next_job`` hands out (None: no more), reporting
    each through ``emit`` as (kind, worker_id, payload, monotonic time)."""
    worker = EpisodeWorker(config, endpoint)
    emit(("model_config", worker_id, worker.model_config, time.monotonic()))
    while True:
        job = next_job()
        if job is None:
            break
        record = worker.run(job, lambda stage: emit((stage, worker_id, job, time.monotonic())))
        emit(("done", worker_id, record, time.monotonic()))


def worker_main(worker_id: int, config: EvalConfig, endpoint: Optional[str], jobs: Any, results: Any) -> None:
    """A ManiSkill3 worker: a multiprocessing child of ``vlart eval`` (jobs and results are its queues)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    serve_jobs(worker_id, config, endpoint, jobs.get, results.put)


# -- the parent ------------------------------------------------------------------------------------------------------


class ServerProcess:
    """``vlart serve`` in a child process on a free loopback port; its output goes to ``log_path``."""

    def __init__(self, config: EvalConfig, log_path: Path) -> None:
        command = [sys.executable, "-m", "runtime.app.cli", "serve", "--model", str(config.model),
                   "--bind", "tcp://127.0.0.1:*", "--max-batch", str(config.server_max_batch),
                   "--batch-wait-ms", str(config.batch_wait_ms)]
        for item in config.overrides:
            command += ["--set", item]
        if config.unnorm_key:
            command += ["--unnorm-key", config.unnorm_key]
        if config.budget:
            command += ["--budget", config.budget]
        if config.preset:
            command += ["--preset", config.preset]
        if config.plan:
            command += ["--plan", config.plan]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_path.open("w")
        repo = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.endpoint = self._wait_ready()
        threading.Thread(target=self._copy_output, daemon=True).start()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            self.log.write(line)
            match = re.search(r"ready on (tcp://\S+)", line)
            if match:
                self.log.flush()
                return match.group(1)
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"vlart serve did not start; see {self.log.name}")

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class _Watch(NamedTuple):
    """What a worker is doing (building a simulator or running an episode) since when, and for how long at most."""

    job: EpisodeJob
    since: float
    limit_s: float
    what: str


def episode_timeout(config: EvalConfig, job: EpisodeJob) -> float:
    if config.episode_timeout_s is not None:
        return config.episode_timeout_s
    return 120.0 + job.max_steps * (config.step_timeout_s + 10.0)


def run_eval(config: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """Run every episode of the suite; write ``results.json`` (and videos) under ``config.out``; return the result."""
    from tqdm import tqdm

    config = with_task_conventions(config)
    jobs = plan_jobs(config)
    backend = suite_backend(config)
    config.out.mkdir(parents=True, exist_ok=True)
    server = None
    endpoint = None
    if config.via == "zmq":
        if config.connect:
            endpoint = config.connect
            check_server_conventions(endpoint, config)
        else:
            server = ServerProcess(config, config.out / "server.log")
            endpoint = server.endpoint
    context = mp.get_context("spawn")
    result_queue = context.Queue()
    # Episodes are dealt to the workers in a fixed order (episode i to shard i mod W), not taken from one shared
    # queue: which episodes share a simulator, and in what order, then never depends on timing, and a simulator's
    # history shifts its physics by float rounding, so a shared queue made reruns differ by a few episodes.
    shards = [context.Queue() for _ in range(min(config.workers, len(jobs)))]
    for index, job in enumerate(jobs):
        shards[index % len(shards)].put(job)
    for shard in shards:
        shard.put(None)

    def start_worker(worker_id: int, shard: int) -> Any:
        args = (worker_id, config, endpoint, shards[shard], result_queue)
        process: Any = (Real2SimWorkerProcess(*args) if backend == "real2sim" else
                        context.Process(target=worker_main, args=args, name=f"vlart-eval-{worker_id}", daemon=True))
        process.start()
        return process

    started = time.perf_counter()
    workers = {i: start_worker(i, i) for i in range(len(shards))}
    shard_of = {i: i for i in workers}
    running: dict[int, _Watch] = {}
    records: list[EpisodeRecord] = []
    model_config: Optional[dict[str, Any]] = None
    next_id = len(workers)
    bar = tqdm(total=len(jobs), desc=f"eval {config.suite}", unit="episode", disable=not progress, file=sys.stderr)

    def finish(record: EpisodeRecord) -> None:
        records.append(record)
        successes = sum(r.success_final for r in records)
        bar.set_postfix_str(f"success {successes}/{len(records)} ({100 * successes / len(records):.0f}%)")
        bar.update(1)

    try:
        while len(records) < len(jobs):
            try:
                kind, worker_id, payload, stamp = result_queue.get(timeout=0.5)
                if kind == "model_config":
                    model_config = model_config or payload
                elif kind == "building":
                    running[worker_id] = _Watch(payload, stamp, SIM_BUILD_TIMEOUT_S, "simulator build")
                elif kind == "start":
                    running[worker_id] = _Watch(payload, stamp, episode_timeout(config, payload), "episode")
                else:
                    running.pop(worker_id, None)
                    finish(payload)
            except queue.Empty:
                pass
            now = time.monotonic()
            for worker_id, process in list(workers.items()):
                watch = running.get(worker_id)
                if watch is None:
                    continue
                timed_out = now - watch.since > watch.limit_s
                if not timed_out and process.is_alive():
                    continue
                job = watch.job
                reason = (f"timeout: no result after {watch.limit_s:.0f} s ({watch.what} watchdog)"
                          if timed_out else f"worker process died (exit code {process.exitcode})")
                process.kill()
                process.join(10)
                running.pop(worker_id)
                finish(EpisodeRecord(job.task, job.episode_id, job.seed, failure=reason))
                del workers[worker_id]
                shard = shard_of.pop(worker_id)
                if len(records) < len(jobs):  # a new worker goes on with the dead one's episodes
                    workers[next_id] = start_worker(next_id, shard)
                    shard_of[next_id] = shard
                    next_id += 1
            if not any(p.is_alive() for p in workers.values()) and not running and len(records) < len(jobs):
                done = {(r.task, r.episode_id) for r in records}
                for job in jobs:
                    if (job.task, job.episode_id) not in done:
                        finish(EpisodeRecord(job.task, job.episode_id, job.seed, failure="lost: no worker left"))
    finally:
        bar.close()
        for process in workers.values():
            process.join(5)
            if process.is_alive():
                process.kill()
        if server is not None:
            server.stop()
    header = {
        "suite": config.suite,
        "model": config.model,
        "preset": config.preset or "baseline",
        "via": config.via,
        "endpoint": endpoint,
        "workers": config.workers,
        "server_batching": ({"max_batch": config.server_max_batch, "batch_wait_ms": config.batch_wait_ms}
                            if server is not None else None),
        "seed": config.seed,
        "grid": config.grid,
        "timing": config.timing.describe({spec.name: spec.control_rate_hz for spec in resolve_suite(config.suite)}),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "provenance": {**provenance(), "model_config": model_config},
    }
    return write_results(config.out / "results.json", header, records)


def describe(result: dict[str, Any]) -> str:
    return summary_table(result) + f"\nwall time {result['wall_time_s']:.1f} s; results in results.json"
