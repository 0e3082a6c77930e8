"""The two kinds of Ray actor a sweep places (``runtime.app.sweep``): a policy server of one (model, preset), and an
episode worker that runs one shard of a cell at a time as a ``vlart eval`` worker does."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from envs.eval_config import EpisodeJob, EvalConfig
from envs.results import EpisodeRecord
from runtime.app.evaluation import plan_eval


class PolicyServerActor:
    """A policy server of one (model, preset) inside a Ray actor; its episode workers reach it over ZeroMQ."""

    def __init__(self, config: EvalConfig, host: Optional[str], max_batch: int, threads: int) -> None:
        import torch

        from runtime.app.evaluation import server_spec
        from runtime.app.policy_service import start_policy_server

        torch.set_num_threads(threads)
        if host is None:  # on a cluster: this node's address, which the other nodes can reach
            import ray

            host = ray.util.get_node_ip_address()
        spec = dataclasses.replace(server_spec(config), bind=f"tcp://{host}:*", max_batch=max_batch)
        self.server = start_policy_server(spec)

    def endpoint(self) -> str:
        return self.server.endpoint

    def counters(self) -> dict[str, int]:
        return {"inferences": self.server.inferences, "batches": self.server.batches}


class EpisodeActor:
    """An episode worker inside a Ray actor: one shard at a time, on fresh simulators for each shard."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.worker: Any = None
        self.start_error = "no shard started"

    def start_shard(self, config: EvalConfig, endpoint: Optional[str]) -> Optional[dict[str, Any]]:
        """Connect to ``endpoint`` (None: load the policy here); returns the model config its hello announces. The
        Google-robot tasks run in a worker of SimplerEnv's interpreter, as in vlart eval."""
        from envs.episodes import EpisodeWorker
        from envs.real2sim_workers import Real2SimEpisodeWorker
        from runtime.app.evaluation import connect_policy

        if self.worker is not None:
            self.worker.close()
            self.worker = None
        try:
            self.worker = (Real2SimEpisodeWorker(config, endpoint) if plan_eval(config).backend == "real2sim" else
                           EpisodeWorker(config, *connect_policy(config, endpoint)))
        except Exception as exc:
            self.start_error = f"{type(exc).__name__}: {exc}"
            raise
        return self.worker.model_config

    def _started(self) -> Any:
        if self.worker is None:  # the episodes of a worker that could not connect fail with the reason
            raise RuntimeError(f"the episode worker did not start: {self.start_error}")
        return self.worker

    def prepare(self, job: EpisodeJob) -> Optional[EpisodeRecord]:
        """Build the job's simulator if due (a failed record if it cannot be); its own watchdog, as in vlart eval."""
        return self._started().prepare(job)

    def run(self, job: EpisodeJob) -> EpisodeRecord:
        return self._started().run(job)
