"""The policy server's dynamic batcher: which queued jobs the inference worker runs together, and their replies.

The infers of different clients that are queued, or arrive within ``batch_wait_ms`` while an active client is missing
from the batch (up to ``max_batch``), run as one forward pass (``predict_batch``), each row with its own seed,
instruction, continuation and ensemble; a client's second infer waits for the next batch. Whatever goes wrong in one
job becomes that job's error reply.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Optional

from bridge import protocol
from bridge.protocol import ProtocolError
from bridge.server.requests import Job
from bridge.server.sessions import Sessions
from policies.api.interface import Observation, PolicyOutput, PredictRequest, ServablePolicy
from runtime.core.budgets import LatencyBudget

log = logging.getLogger("vlart.bridge.server")

Reply = tuple[str, dict[str, Any], Optional[bytes]]  # type, payload, and the body for a ROUTER client's seq


class Batcher:
    """Takes the worker's jobs from ``jobs``: up to ``max_batch`` infers of different clients per forward pass, and
    waits up to ``batch_wait_ms`` for more only while a client that is active (an infer within ``active_window_s``
    plus two passes) is missing from the batch. With a ``budget``, every inference is checked against it."""

    def __init__(self, policy: ServablePolicy, jobs: "queue.Queue[Job]", sessions: Sessions,
                 budget: Optional[LatencyBudget], max_batch: int, batch_wait_ms: float,
                 active_window_s: float) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch: expected an integer >= 1, got {max_batch!r}")
        if not batch_wait_ms >= 0:
            raise ValueError(f"batch_wait_ms: expected a number >= 0, got {batch_wait_ms!r}")
        self.policy = policy
        self.jobs = jobs
        self.sessions = sessions
        self.budget = budget
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1e3
        self.active_window_s = active_window_s
        self.busy = threading.Event()  # a batch or a reset is running
        self.inferences = 0  # requests inferred (a retried request counts once)
        self.batches = 0  # forward passes run for them
        self._last_pass_s = 0.0
        self._deferred: "deque[Job]" = deque()  # taken from the queue by the worker, left for a later batch

    def queued(self) -> int:
        """The jobs waiting for the worker: queued, or deferred to a later batch."""
        return self.jobs.qsize() + len(self._deferred)

    def next_job(self, timeout: float) -> Optional[Job]:
        """The oldest job not yet run: a deferred one first, else the queue's (waiting up to ``timeout``; 0: only
        what is queued already)."""
        if self._deferred:
            return self._deferred.popleft()
        try:
            return self.jobs.get(timeout=timeout) if timeout > 0 else self.jobs.get_nowait()
        except queue.Empty:
            return None

    def gather(self, first: Job, answer: Callable[[Job, Reply], None]) -> list[Job]:
        """``first`` and the infers of other sessions that are queued, or arrive within the batch wait, up to
        ``max_batch``. A job of a session already in the batch (and every later job of that session) is deferred to
        the next round, keeping each session's order; a reset of any other session runs and is ``answer``-ed here."""
        batch, members = [first], {id(first.session)}
        held: list[Job] = []
        held_sessions: set[int] = set()
        deadline = time.perf_counter() + self.batch_wait_s
        active = self._active_sessions()
        while len(batch) < self.max_batch:
            # Waiting is only worth it for an active client that is not in the batch yet: a lone client never waits,
            # and lockstep clients close the batch as soon as the last of them has sent.
            waiting_for = active - members - held_sessions
            job = self.next_job(timeout=deadline - time.perf_counter() if waiting_for else 0.0)
            if job is None:
                break
            session = id(job.session)
            if session in members or session in held_sessions:
                held.append(job)
                held_sessions.add(session)
            elif job.kind == protocol.RESET:
                answer(job, self.run([job])[0])
            else:
                batch.append(job)
                members.add(session)
        self._deferred.extendleft(reversed(held))  # before anything left in the deque: they were taken before it
        return batch

    def _active_sessions(self) -> set[int]:
        """Sessions that sent an infer recently: within a second plus two forward passes (a client of a slow model
        sends rarely, yet is as active as one of a fast model)."""
        window = self.active_window_s + 2 * self._last_pass_s
        return self.sessions.active_since(time.monotonic() - window)

    def run(self, jobs: list[Job]) -> list[Reply]:
        """Each job's reply (type, payload) and its body for the job's seq, encoded here so that a reply that cannot
        be encoded never reaches the send: any failure becomes that job's error reply."""
        self.busy.set()
        try:
            if jobs[0].kind == protocol.RESET:
                jobs[0].session.policy.reset()
                return [self._encoded(jobs[0], protocol.RESET, {"ok": True})]
            started = time.perf_counter()
            try:
                outputs = self._predict(jobs)
            except Exception as exc:  # the server must survive any failure in one batch
                outputs = [exc for _ in jobs]
            self.inferences += len(jobs)
            self.batches += 1
            self._last_pass_s = time.perf_counter() - started
            replies = []
            for job, output in zip(jobs, outputs):
                try:
                    if isinstance(output, Exception):
                        raise output
                    replies.append(self._encoded(job, protocol.INFER, self._infer_payload(job, output, started,
                                                                                       len(jobs))))
                except Exception as exc:
                    log.error("%s failed for seq %d: %s", job.kind, job.seq,
                              "".join(traceback.format_exception(exc)))
                    error = ProtocolError(protocol.INFERENCE_FAILED, f"{type(exc).__name__}: {exc}")
                    replies.append(self._encoded(job, protocol.ERROR, error.payload()))
            return replies
        finally:
            self.busy.clear()

    @staticmethod
    def _encoded(job: Job, kind: str, payload: dict[str, Any]) -> Reply:
        """The reply with its body for a ROUTER client (an in-process one takes the payload as it is)."""
        return kind, payload, None if job.deliver is not None else protocol.pack(kind, job.seq, payload)

    def _predict(self, jobs: list[Job]) -> list[Any]:
        """One output (or the exception it raised) per infer job, as one batch when the policy can batch."""
        key = self.policy.conventions.image_keys[0]
        requests = []
        for job in jobs:
            request = job.request
            assert request is not None
            obs = Observation(image=request.images[key], instruction=request.instruction, proprio=request.proprio)
            requests.append(PredictRequest(job.session.policy, obs, request.seed, request.continuation))
        predict_batch = getattr(self.policy, "predict_batch", None)
        if predict_batch is not None:
            return predict_batch(requests)
        return [self._predict_alone(request) for request in requests]

    @staticmethod
    def _predict_alone(request: PredictRequest) -> Any:
        try:
            if request.continuation is None:  # policies that predate continuation have no such keyword
                return request.session.predict_action(request.obs, seed=request.seed)
            return request.session.predict_action(request.obs, seed=request.seed, continuation=request.continuation)
        except Exception as exc:
            return exc

    def _infer_payload(self, job: Job, output: PolicyOutput, started: float, batch_size: int) -> dict[str, Any]:
        timing = {f"{name}_ms": round(ms, 4) for name, ms in output.timings_ms.items()}
        timing["policy_total_ms"] = timing.pop("total_ms", round((time.perf_counter() - started) * 1e3, 4))
        timing["decode_ms"] = round(job.decode_ms, 4)
        timing["queue_ms"] = round((started - job.received) * 1e3 - job.decode_ms, 4)
        payload: dict[str, Any] = {
            "actions": output.actions,
            "normalized_actions": output.normalized_actions,
            "action": output.action,
            "server_timing": timing,
            "batch_size": batch_size,
        }
        timing["server_total_ms"] = round((time.perf_counter() - job.received) * 1e3, 4)
        if self.budget is not None:
            steps = {**output.timings_ms, "total": timing["server_total_ms"]}
            over = self.budget.observe(steps)
            payload["budget"] = {"name": self.budget.config.name, "over": over,
                                 "violations": dict(self.budget.violations)}
        return payload
