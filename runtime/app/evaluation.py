"""``vlart eval``: run a policy on simulator tasks and report success rates that can be trusted.

Episodes run in worker processes (``--workers``), each with its own simulator and its own policy connection: through a
policy server (``runtime.app.policy_service``) and the thin ZeroMQ client (``--via zmq``, the path a robot takes; the
server is started here unless ``--connect`` names one) or with the policy loaded in the worker (``--via inproc``). The
parent deals the episodes to the workers in a fixed order (so a rerun is the same run), watches each worker, and records
an episode that crashes, hangs past its time limit or kills its worker as a failure with the reason; the run goes on. An
episode is ``envs.episodes.run_episode``. Episodes come from SIMPLER's official grid or, with ``grid="heldout"``, from
placements off it (``envs/placements.py``). results.json also records where the result came from: the git commit,
package versions and the model's resolved config.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from envs.episodes import PolicyConnection, connect_remote, failed_record, serve_jobs
from envs.eval_config import EpisodeJob, EvalConfig
from envs.real2sim_workers import Real2SimWorkerProcess
from envs.registry import TaskSpec, current_suite, resolve_suite
from envs.results import EpisodeRecord, summary_table, write_results
from runtime.app.policy_service import ServerProcess, ServerSpec
from runtime.core.budgets import budget_from_file
from runtime.core.provenance import provenance

DEFAULT_EPISODES_WITHOUT_GRID = 10
DEFAULT_HELDOUT_EPISODES = 24
SIM_BUILD_TIMEOUT_S = 600.0  # the episode watchdog starts once the simulator is built; building has its own


@dataclass(frozen=True)
class EvalPlan:
    """A run's suite resolved once: its tasks, the run's settings completed with their robot's conventions, the
    simulator they all run in and the episode jobs, in the order they are dealt to the workers."""

    config: EvalConfig
    tasks: tuple[TaskSpec, ...]
    backend: str
    jobs: tuple[EpisodeJob, ...]

    @property
    def rates_hz(self) -> dict[str, float]:
        return {spec.name: spec.control_rate_hz for spec in self.tasks}


def plan_eval(config: EvalConfig) -> EvalPlan:
    """Resolve ``config.suite`` and check that the run can go ahead (one simulator, one robot's conventions, a grid
    to draw the episodes from) before anything starts."""
    config = dataclasses.replace(config, suite=current_suite(config.suite))
    tasks = tuple(resolve_suite(config.suite))
    config = _with_task_conventions(config, tasks)
    return EvalPlan(config, tasks, _suite_backend(config, tasks), tuple(_jobs(config, tasks)))


def _jobs(config: EvalConfig, tasks: tuple[TaskSpec, ...]) -> list[EpisodeJob]:
    jobs = []
    for spec in tasks:
        if config.grid == "heldout":
            if spec.grid_size is None:
                raise ValueError(f"--grid: {spec.name} has no official grid to hold out from")
            count = config.episodes or DEFAULT_HELDOUT_EPISODES
        else:
            count = config.episodes or spec.grid_size or DEFAULT_EPISODES_WITHOUT_GRID
            if spec.grid_size is not None and count > spec.grid_size:
                raise ValueError(f"--episodes: {spec.name} has {spec.grid_size} episodes in its official grid")
        # SIMPLER's registered horizon unless asked for another (CogACT's Bridge script runs every task for 120)
        steps = config.max_steps or spec.max_steps
        jobs.extend(EpisodeJob(spec.name, i, config.seed + i, steps) for i in range(count))
    return jobs


def _suite_backend(config: EvalConfig, tasks: tuple[TaskSpec, ...]) -> str:
    """The simulator every task of the suite runs in: one per run, since its workers run in that one's interpreter."""
    backends = {spec.backend for spec in tasks}
    if len(backends) > 1:
        raise ValueError(f"--suite: {config.suite} mixes simulators ({', '.join(sorted(backends))}); evaluate them "
                         "in separate runs")
    backend = backends.pop()
    if backend == "real2sim":
        if config.via != "zmq":
            raise ValueError("--via: the simplerenv/ tasks run in the SimplerEnv interpreter, which has no policy; "
                             "use --via zmq (the default)")
        from envs.real2sim_workers import real2sim_python

        real2sim_python()  # fails here, before a server starts, if the environment is missing
    return backend


def _with_task_conventions(config: EvalConfig, tasks: tuple[TaskSpec, ...]) -> EvalConfig:
    """The suite's action conventions where the user set none: the unnormalisation statistics and ensemble window of
    its robot (the Google robot: ``fractal20220817_data``, horizon 2, as CogACT's SIMPLER wrapper sets them)."""
    keys = {spec.unnorm_key for spec in tasks}
    horizons = {spec.ensemble_horizon for spec in tasks}
    if len(keys) > 1 or len(horizons) > 1:
        raise ValueError(f"--suite: {config.suite} mixes robots with different action conventions (vlart eval runs "
                         "such a suite in one part per robot; a sweep cell takes one robot's tasks)")
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


def connect_policy(config: EvalConfig, endpoint: Optional[str]) -> PolicyConnection:
    """A worker's policy: the server's at ``endpoint``, or (None) the policy loaded in this process, with the run's
    latency budget checked on each prediction as a server checks it."""
    if endpoint:
        return connect_remote(endpoint, config.step_timeout_s)
    from policies.api.budgeted import with_budget
    from runtime.app.policy_loader import load_policy_with_preset

    policy = load_policy_with_preset(config.model, config.preset, config.plan, unnorm_key=config.unnorm_key,
                                     overrides=config.overrides)
    return with_budget(policy.session(), budget_from_file(config.budget)), policy.metadata["config"]


def worker_main(worker_id: int, config: EvalConfig, endpoint: Optional[str], jobs: Any, results: Any) -> None:
    """A ManiSkill3 worker: a multiprocessing child of ``vlart eval`` (jobs and results are its queues)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    serve_jobs(worker_id, config, lambda: connect_policy(config, endpoint), jobs.get, results.put)


# -- the parent ------------------------------------------------------------------------------------------------------


def server_spec(config: EvalConfig) -> ServerSpec:
    """The server ``vlart eval --via zmq --model`` starts: on a free loopback port, batching its workers' rows."""
    return ServerSpec(model=str(config.model), preset=config.preset, plan=config.plan, unnorm_key=config.unnorm_key,
                      overrides=tuple(config.overrides), budget=config.budget, bind="tcp://127.0.0.1:*",
                      max_batch=config.server_max_batch, batch_wait_ms=config.batch_wait_ms)


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


def robot_parts(suite: str) -> list[str]:
    """The suite's tasks in groups that one policy server and one set of workers can run (one simulator, one robot's
    action conventions), in the suite's order, each as a comma-separated task list."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for spec in resolve_suite(suite):
        groups.setdefault((spec.backend, spec.unnorm_key, spec.ensemble_horizon), []).append(spec.name)
    return [",".join(names) for names in groups.values()]


def run_eval(config: EvalConfig, progress: bool = True, worker: Callable[..., None] = worker_main) -> dict[str, Any]:
    """Run every episode of the suite; write ``results.json`` (and videos) under ``config.out``; return the result.
    A suite of several robots (``simplerenv``: WidowX and Google robot) runs in parts, one per robot, each with its
    own server, under ``out/partN``; ``results.json`` then holds every episode and each part's settings.
    ``worker``: a ManiSkill3 worker process's entry point (``worker_main``'s arguments; a test's wraps it)."""
    config = dataclasses.replace(config, suite=current_suite(config.suite))  # an old name warns here, once
    parts = robot_parts(config.suite)
    if len(parts) == 1:
        return _run_part(config, progress, worker)
    started = time.perf_counter()
    results = [_run_part(dataclasses.replace(config, suite=part, out=config.out / f"part{index}"), progress, worker)
               for index, part in enumerate(parts, 1)]
    header = {"suite": config.suite, "grid": config.grid,
              "parts": [{key: value for key, value in result.items()
                         if key not in ("tasks", "episodes", "success_rules")} for result in results],
              "wall_time_s": round(time.perf_counter() - started, 3), "provenance": provenance()}
    records = [EpisodeRecord(**episode) for result in results for episode in result["episodes"]]
    return write_results(config.out / "results.json", header, records)


def _run_part(config: EvalConfig, progress: bool, worker: Callable[..., None]) -> dict[str, Any]:
    """One robot's tasks: a server, its workers, ``results.json`` under ``config.out``."""
    from tqdm import tqdm

    plan = plan_eval(config)
    config, jobs, backend = plan.config, plan.jobs, plan.backend
    if backend == "maniskill3" and any(spec.simpler for spec in plan.tasks):
        from envs.rendering import check_simpler_assets

        check_simpler_assets()  # once, before anything starts, not once per episode in every worker
    config.out.mkdir(parents=True, exist_ok=True)
    server = None
    endpoint = None
    if config.via == "zmq":
        if config.connect:
            endpoint = config.connect
            check_server_conventions(endpoint, config)
        else:
            server = ServerProcess(server_spec(config), config.out / "server.log")
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
                        context.Process(target=worker, args=args, name=f"vlart-eval-{worker_id}", daemon=True))
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
                finish(failed_record(job, config, reason))
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
                        finish(failed_record(job, config, "lost: no worker left"))
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
        "timing": config.timing.describe(plan.rates_hz),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "provenance": {**provenance(), "model_config": model_config},
    }
    return write_results(config.out / "results.json", header, records)


def describe(result: dict[str, Any]) -> str:
    return summary_table(result) + f"\nwall time {result['wall_time_s']:.1f} s; results in results.json"
