"""``vlart sweep``: the cells of a sweep YAML (``runtime.app.sweep_config``) evaluated on Ray, resumable.

Without an address Ray starts in this process with this machine's cores; with one (``auto``, ``ray://HOST:PORT``)
the sweep runs on that cluster. Two kinds of actor, placed by the YAML's ``resources``:

- a **policy server** per (model, preset, conventions): ``runtime.app.policy_service.start_policy_server`` with
  dynamic batching (up to one row per episode worker), bound to its node's address; started when its first cell
  starts and stopped when its last cell is done (cells are ordered so that those sharing a server run together);
- **episode workers** (``parallel`` of them): each runs the episodes of one shard at a time through
  ``envs.episodes.EpisodeWorker``, the code of a ``vlart eval`` worker, reaching its server through the thin client
  (or, with ``via: inproc``, loading the policy itself); for the Google-robot tasks through a worker in SimplerEnv's
  interpreter (``envs.real2sim_workers.Real2SimEpisodeWorker``), as ``vlart eval`` runs them.

A cell's episodes are dealt to ``workers`` shards as ``vlart eval --workers`` deals them (episode i to shard i mod
workers, in order, each shard on fresh simulators), so an episode's outcome is the one ``vlart eval`` gives for the same
cell. Every finished episode is appended to ``DIR/episodes.jsonl`` at once (``runtime.app.sweep_store``); a rerun of the
same command skips what is done. An episode whose run fails (a crash, a hang past its watchdog, a dead worker) is
recorded with the reason and retried once; a hung or dead worker is replaced. At the end ``DIR/results.json`` holds
every episode in ``vlart eval``'s format with its ``cell``, and per-cell aggregates with Wilson intervals.

Files an episode writes (videos, traces) land under ``DIR/cells/CELL`` on the node that ran it: on a cluster, give
the nodes a shared filesystem, the same paths (vlart, its checkpoints, ``MS_ASSET_DIR``) and the same environment.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from envs.episodes import failed_record
from envs.eval_config import EpisodeJob
from envs.results import EpisodeRecord
from runtime.app.evaluation import SIM_BUILD_TIMEOUT_S, episode_timeout, plan_eval
from runtime.app.sweep_actors import EpisodeActor, PolicyServerActor
from runtime.app.sweep_config import Cell, SweepConfig
from runtime.app.sweep_results import server_label, write_sweep_results
from runtime.app.sweep_store import EpisodeStore

log = logging.getLogger("vlart.sweep")

REPO = Path(__file__).resolve().parents[2]
# The driver's settings that the actors need (assets, rendering, offline model files); a cluster's nodes must have
# the same paths.
PASSED_ENV = ("MS_ASSET_DIR", "MS2_REAL2SIM_ASSET_DIR", "VK_ICD_FILENAMES", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
              "VLART_REAL2SIM_PYTHON")
OBJECT_STORE_BYTES = 256 * 2**20  # episodes pass small records, never frames


@dataclass
class Shard:
    cell: Cell
    index: int
    jobs: deque[EpisodeJob]  # those not done, in the order vlart eval's worker would run them


@dataclass
class ServerHandle:
    actor: Any
    endpoint: str
    shards_left: int


@dataclass
class Running:
    actor: Any
    shard: Shard
    job: EpisodeJob
    since: float
    limit_s: float
    stage: str  # "simulator build" or "episode": what the watchdog is watching


@dataclass
class SweepPlan:
    cells: list[Cell]
    shards: list[Shard]
    total: int  # episodes of the sweep
    done: int  # of those, done before this run
    server_shards: dict[tuple, int] = field(default_factory=dict)


def plan_sweep(config: SweepConfig, out: Path, store: EpisodeStore) -> SweepPlan:
    """The cells (with their tasks' conventions), and the shards of episodes still to run, cells sharing a server
    next to each other."""
    cells, jobs_of = [], {}
    for cell in config.cells(out):
        try:  # one simulator per cell; the Google robot only through a server
            eval_plan = plan_eval(cell.eval_config)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"cell {cell.name}: {exc}") from None
        cells.append(Cell(cell.name, cell.values, eval_plan.config))
        jobs_of[cell.name] = eval_plan.jobs
    order = list(dict.fromkeys(cell.server_key for cell in cells))
    cells.sort(key=lambda cell: order.index(cell.server_key))
    shards, total, done = [], 0, 0
    plan = SweepPlan(cells, shards, 0, 0)
    for cell in cells:
        jobs = jobs_of[cell.name]
        total += len(jobs)
        count = min(cell.eval_config.workers, len(jobs))
        for index in range(count):
            left = deque(job for job in jobs[index::count] if not store.is_done((cell.name, job.task, job.episode_id)))
            done += len(jobs[index::count]) - len(left)
            if left:
                shards.append(Shard(cell, index, left))
                plan.server_shards[cell.server_key] = plan.server_shards.get(cell.server_key, 0) + 1
    plan.total, plan.done = total, done
    return plan


def _actor_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


class SweepRunner:
    def __init__(self, config: SweepConfig, out: Path, address: Optional[str],
                 episode_actor: type[EpisodeActor] = EpisodeActor) -> None:
        self.episode_actor = episode_actor
        self.config = config
        self.out = out
        self.address = address
        self.store = EpisodeStore(out)
        self.plan = plan_sweep(config, out, self.store)
        self.servers: dict[tuple, ServerHandle] = {}
        self.running: dict[Any, Running] = {}
        self.model_configs: dict[str, Any] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.ran = 0
        self.retried = 0
        self.replaced_workers = 0

    # -- actors ----------------------------------------------------------------------------------------------------

    def _options(self, role: str) -> dict[str, Any]:
        resources = dict(self.config.resources[role])
        if "memory" in resources:
            resources["memory"] = int(resources["memory"])
        return resources

    def _threads(self, role: str) -> int:
        cpus = self.config.resources[role].get("num_cpus", 1)
        return max(1, int(cpus)) if cpus else max(1, os.cpu_count() or 1)

    def _pool_size(self, ray: Any) -> int:
        if self.config.parallel is not None:
            return min(self.config.parallel, max(1, len(self.plan.shards)))
        cpus = float(ray.cluster_resources().get("CPU", 1))
        per_episode = float(self.config.resources["episode"].get("num_cpus", 1))
        if per_episode <= 0:
            raise ValueError("parallel: with resources.episode.num_cpus 0, say how many episode workers to run")
        server_cpus = float(self.config.resources["server"].get("num_cpus", 0)) if any(
            cell.eval_config.via == "zmq" for cell in self.plan.cells) else 0.0
        return max(1, min(int((cpus - server_cpus) // per_episode), len(self.plan.shards)))

    def _check_resources(self, ray: Any) -> None:
        available = ray.cluster_resources()
        for role in ("server", "episode"):
            for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
                wanted = float(self.config.resources[role].get(key, 0))
                if wanted > float(available.get(name, 0)):
                    raise ValueError(f"resources.{role}.{key}: {wanted:g} wanted, the Ray cluster has "
                                     f"{float(available.get(name, 0)):g} {name} in all")

    def _new_actor(self, ray: Any) -> Any:
        return ray.remote(self.episode_actor).options(**self._options("episode")).remote(self._threads("episode"))

    def _server_for(self, ray: Any, cell: Cell) -> Optional[str]:
        if cell.eval_config.via == "inproc":
            return None
        handle = self.servers.get(cell.server_key)
        if handle is None:
            host = None if self.address else "127.0.0.1"
            max_batch = cell.eval_config.max_batch or self.pool_size  # default: a row for every episode worker
            actor = ray.remote(PolicyServerActor).options(**self._options("server")).remote(
                cell.eval_config, host, max_batch, self._threads("server"))
            from ray.exceptions import RayError

            try:
                endpoint = ray.get(actor.endpoint.remote())
            except RayError as exc:  # a model or preset that cannot load: every cell of it would fail alike
                raise RuntimeError(f"cell {cell.name}: the policy server ({cell.eval_config.model}, preset "
                                   f"{cell.eval_config.preset or 'baseline'}) did not start: "
                                   f"{str(exc).strip().splitlines()[-1]}") from None
            handle = ServerHandle(actor, endpoint, self.plan.server_shards[cell.server_key])
            self.servers[cell.server_key] = handle
            log.info("policy server for %s at %s", cell.name, handle.endpoint)
        return handle.endpoint

    def _shard_finished(self, ray: Any, shard: Shard) -> None:
        if shard.cell.eval_config.via == "inproc":
            return
        handle = self.servers[shard.cell.server_key]
        handle.shards_left -= 1
        if handle.shards_left == 0:
            self.counters[server_label(shard.cell)] = ray.get(handle.actor.counters.remote())
            ray.kill(handle.actor)
            del self.servers[shard.cell.server_key]

    # -- scheduling ------------------------------------------------------------------------------------------------

    def _start_shard(self, ray: Any, actor: Any, shard: Shard) -> None:
        started = actor.start_shard.remote(shard.cell.eval_config, self._server_for(ray, shard.cell))
        self.model_configs.setdefault(shard.cell.name, started)
        self._submit(actor, shard)

    def _submit(self, actor: Any, shard: Shard, stage: str = "simulator build") -> None:
        """The shard's next episode: first its simulator build (if due), then the episode, each with the watchdog
        vlart eval gives it."""
        job = shard.jobs[0]
        if stage == "simulator build":
            ref, limit = actor.prepare.remote(job), SIM_BUILD_TIMEOUT_S
        else:
            ref, limit = actor.run.remote(job), episode_timeout(shard.cell.eval_config, job)
        self.running[ref] = Running(actor, shard, job, time.monotonic(), limit, stage)

    def _finish(self, ray: Any, run: Running, record: EpisodeRecord, actor: Any) -> Optional[Any]:
        """Store ``record``; go on with the shard on ``actor``. Returns the actor if it is free for another shard."""
        entry = self.store.add(run.shard.cell.name, record)
        self.ran += 1
        key = (run.shard.cell.name, run.job.task, run.job.episode_id)
        if self.store.is_done(key):
            run.shard.jobs.popleft()
            self.bar.update(1)
        else:
            self.retried += 1
            log.warning("%s episode %d of %s failed (%s); retrying once", run.job.task, run.job.episode_id,
                        run.shard.cell.name, entry["failure"])
        if run.shard.jobs:
            if actor is run.actor:
                self._submit(actor, run.shard)
            else:
                self._start_shard(ray, actor, run.shard)
            return None
        self._shard_finished(ray, run.shard)
        return actor

    def run(self, progress: bool = True) -> dict[str, Any]:
        import ray
        from ray.exceptions import RayActorError, RayError
        from tqdm import tqdm

        started = time.perf_counter()
        owns_ray = not ray.is_initialized()
        if owns_ray:
            options: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"env_vars": _actor_env()}}
            if self.address:
                ray.init(address=self.address, **options)
            else:
                # Ray runs its workers at nice 15 by default; here they do the sweep's work (simulators, the
                # policy), so they get the priority vlart eval's workers have.
                ray.init(num_cpus=os.cpu_count(), object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                         _system_config={"worker_niceness": 0}, **options)
        self.bar = tqdm(total=self.plan.total, initial=self.plan.done, desc=f"sweep {self.config.name}",
                        unit="episode", disable=not progress, file=sys.stderr)
        try:
            self._check_resources(ray)
            self.pool_size = self._pool_size(ray)
            cluster = {"address": self.address or "local", "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                       "resources": {k: v for k, v in ray.cluster_resources().items()
                                     if k in ("CPU", "GPU", "memory")}}
            pending = deque(self.plan.shards)
            free = [self._new_actor(ray) for _ in range(min(self.pool_size, len(pending)))]
            while pending or self.running:
                while free and pending:
                    self._start_shard(ray, free.pop(), pending.popleft())
                ready, _ = ray.wait(list(self.running), num_returns=1, timeout=1.0)
                for ref in ready:
                    run = self.running.pop(ref)
                    actor = run.actor
                    try:
                        record = ray.get(ref)
                        if record is None:  # the simulator is built: now the episode
                            self._submit(actor, run.shard, "episode")
                            continue
                    except RayActorError as exc:
                        record = failed_record(run.job, run.shard.cell.eval_config,
                                               f"worker process died ({type(exc).__name__})")
                        actor = self._replace(ray, actor)
                    except RayError as exc:  # the shard's worker could not start (no server, no model)
                        record = failed_record(run.job, run.shard.cell.eval_config,
                                               f"{type(exc).__name__}: {str(exc).splitlines()[-1]}")
                        actor = self._replace(ray, actor)
                    released = self._finish(ray, run, record, actor)
                    if released is not None:
                        free.append(released)
                now = time.monotonic()
                for ref, run in list(self.running.items()):
                    if now - run.since <= run.limit_s:
                        continue
                    del self.running[ref]
                    actor = self._replace(ray, run.actor)
                    record = failed_record(run.job, run.shard.cell.eval_config,
                                           f"timeout: no result after {run.limit_s:.0f} s ({run.stage} watchdog)")
                    released = self._finish(ray, run, record, actor)
                    if released is not None:
                        free.append(released)
            model_configs = {}
            for name, ref in self.model_configs.items():
                try:
                    model_configs[name] = ray.get(ref, timeout=60)
                except RayError:
                    model_configs[name] = None
        finally:
            self.bar.close()
            if owns_ray:
                ray.shutdown()
        return self.write_results(time.perf_counter() - started, cluster, model_configs)

    def _replace(self, ray: Any, actor: Any) -> Any:
        ray.kill(actor)
        self.replaced_workers += 1
        return self._new_actor(ray)

    # -- results ---------------------------------------------------------------------------------------------------

    def write_results(self, wall_s: float, cluster: dict[str, Any], model_configs: dict[str, Any]) -> dict[str, Any]:
        return write_sweep_results(self.out, self.config, self.plan.cells, self.store, {
            "wall_time_s": round(wall_s, 3), "episodes_run": self.ran, "retried": self.retried,
            "replaced_workers": self.replaced_workers, "resumed_with_done": self.plan.done, "ray": cluster,
            "server_counters": self.counters,
        }, model_configs)


def run_sweep(config: SweepConfig, out: Path, address: Optional[str] = None, progress: bool = True,
              episode_actor: type[EpisodeActor] = EpisodeActor) -> dict[str, Any]:
    """Run (or resume) the sweep; ``episode_actor``: the episode workers' actor class (a test's subclass injects
    faults)."""
    return SweepRunner(config, out, address, episode_actor).run(progress)
