"""Faults injected into real simulator tasks, for the tests of the failure handling of ``vlart eval`` and ``vlart
sweep``: an episode whose ``env.step`` raises, or never returns, at a chosen step. Production code has no such hook;
these reach the worker processes and Ray actors through their injectable entry points (``run_eval(worker=...)``,
``run_sweep(episode_actor=...)``) as module-level callables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from runtime.app.evaluation import worker_main
from runtime.app.sweep_actors import EpisodeActor


@dataclass(frozen=True)
class Fault:
    """``kind`` "crash" (raise) or "hang" (block) at step ``step`` of episode ``episode``."""

    kind: str
    episode: int
    step: int


class FaultyTask:
    """A real task whose ``step`` fails as ``fault`` says in the faulty episode; everything else is the task's."""

    def __init__(self, task: Any, fault: Fault) -> None:
        self.task = task
        self.fault = fault
        self.episode: Optional[int] = None
        self.steps = 0

    def reset(self, episode_id: int, seed: int) -> Any:
        self.episode, self.steps = episode_id, 0
        return self.task.reset(episode_id, seed)

    def step(self, action: Any) -> Any:
        if self.episode == self.fault.episode and self.steps == self.fault.step:
            if self.fault.kind == "hang":
                time.sleep(10**6)
            raise RuntimeError(f"injected env.step failure at step {self.steps}")
        self.steps += 1
        return self.task.step(action)

    def close(self) -> None:
        self.task.close()


def install(fault: Fault) -> None:
    """From now on, in this process, every task built for an episode is a ``FaultyTask``."""
    import envs.tasks

    make_task = envs.tasks.make_task
    envs.tasks.make_task = lambda spec, grid="official": FaultyTask(make_task(spec, grid=grid), fault)


def faulty_worker_main(fault: Fault, *args: Any) -> None:
    """``vlart eval``'s worker with ``fault`` installed: ``run_eval(config, worker=partial(faulty_worker_main,
    fault))``."""
    install(fault)
    worker_main(*args)


def faulty_episode_actor(fault: Fault) -> type[EpisodeActor]:
    """The sweep's episode actor with ``fault`` installed in its process."""

    class FaultyEpisodeActor(EpisodeActor):
        def __init__(self, threads: int) -> None:
            install(fault)
            super().__init__(threads)

    return FaultyEpisodeActor
