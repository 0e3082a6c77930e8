"""Many clients on one ``CogACTPolicy``: ``PolicySession`` (a client's own ensemble over the shared weights) and the
batched prediction of their requests (``predict_requests``), each checked on its own and run as one forward pass."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch

from policies.api.ensemble import AdaptiveActionEnsemble
from policies.api.interface import (
    ChunkContinuation,
    Conventions,
    Observation,
    PolicyOutput,
    PredictRequest,
    instruction_problem,
)
from policies.continuation import ChunkInpainting
from policies.image_transforms import validate_image
from runtime.core.timing import StageTimer

# For annotations only: the policy builds its sessions from this module.
if TYPE_CHECKING:
    from policies.policy import CogACTPolicy


def validate_instruction(instruction: object, field_name: str = "instruction") -> str:
    problem = instruction_problem(instruction)
    if problem is not None:
        raise ValueError(f"{field_name}: {problem}")
    return instruction  # type: ignore[return-value]


@dataclass
class PredictionRow:
    """One checked request of a batch: its observation, seed, ensemble (or none) and inpainting (or none)."""

    obs: Observation
    seed: Optional[int]
    ensemble: Optional[AdaptiveActionEnsemble]
    inpainting: Optional[ChunkInpainting]


class PolicySession:
    """One client's view of a shared ``CogACTPolicy``: its own ensemble, the model's weights."""

    def __init__(self, model: CogACTPolicy, ensemble: Optional[AdaptiveActionEnsemble]) -> None:
        self.model = model
        self.ensemble = ensemble

    @property
    def conventions(self) -> Conventions:
        return self.model.conventions

    def reset(self) -> None:
        if self.ensemble is not None:
            self.ensemble.reset()

    def predict_action(
        self, obs: Observation, seed: Optional[int] = None, continuation: Optional[ChunkContinuation] = None
    ) -> PolicyOutput:
        return self.model.predict_with_ensemble(obs, seed, self.ensemble, continuation)


def require_statistics(model: CogACTPolicy) -> None:
    if model.statistics is None:
        raise ValueError(
            "actions.statistics / actions.unnorm_key: this policy has no action statistics, so its actions "
            "cannot be unnormalised"
        )


def predict_rows(model: CogACTPolicy, rows: list[PredictionRow]) -> list[PolicyOutput]:
    """Checked rows -> their outputs, one forward pass; any failure is raised."""
    return [_finish_row(model, row, *sample) for row, sample in zip(rows, _sample_rows(model, rows))]


def predict_requests(model: CogACTPolicy, requests: Sequence[PredictRequest]) -> list[Union[PolicyOutput, Exception]]:
    """``CogACTPolicy.predict_batch``: each request's output, or its own exception."""
    try:
        require_statistics(model)
    except ValueError as exc:
        return [exc for _ in requests]
    results: list[Union[PolicyOutput, Exception, None]] = [None] * len(requests)
    rows: list[tuple[int, PredictionRow]] = []
    for i, request in enumerate(requests):
        try:
            rows.append((i, _prediction_row(model, request)))
        except ValueError as exc:
            results[i] = exc
    if not rows:
        return results  # type: ignore[return-value]
    try:
        sampled: list[Union[tuple[np.ndarray, dict[str, float]], Exception]] = list(
            _sample_rows(model, [row for _, row in rows]))
    except Exception:
        if len(rows) == 1:
            raise
        sampled = [_sample_alone(model, row) for _, row in rows]
    for (i, row), sample in zip(rows, sampled):
        try:
            results[i] = sample if isinstance(sample, Exception) else _finish_row(model, row, *sample)
        except Exception as exc:  # this row's own failure; the others keep their outputs
            results[i] = exc
    return results  # type: ignore[return-value]


def _prediction_row(model: CogACTPolicy, request: PredictRequest) -> PredictionRow:
    session = request.session
    if not isinstance(session, PolicySession) or session.model is not model:
        raise ValueError(f"session: expected a session() of this policy, got {type(session).__name__}")
    validate_image(request.obs.image, "image")
    validate_instruction(request.obs.instruction)
    inpainting = model.inpainting(request.continuation, request.seed)
    return PredictionRow(request.obs, request.seed, session.ensemble, inpainting)


def _sample_alone(model: CogACTPolicy, row: PredictionRow) -> Union[tuple[np.ndarray, dict[str, float]], Exception]:
    try:
        return _sample_rows(model, [row])[0]
    except Exception as exc:  # this row's own failure, returned so that the others keep their outputs
        return exc


def _sample_rows(model: CogACTPolicy, rows: list[PredictionRow]) -> list[tuple[np.ndarray, dict[str, float]]]:
    """B checked rows -> B normalised chunks (T, A), one forward pass, and its stage timings. No side effects,
    so a failed batch can be rerun row by row."""
    mode = model.config.runtime.timing
    timer = StageTimer(device=str(model.device), enabled=mode != "off", step_detail=mode == "steps")
    head = model.config.action_head
    with timer.stage("total"):
        noise = torch.cat([model.initial_noise(1, row.seed) for row in rows])
        inpainting = ChunkInpainting.stacked(
            [row.inpainting for row in rows], (head.chunk_length, head.action_dim), model.device,
            model.action_head.positional_embedding.dtype,
        )
        normalized = model.sample_from_noise(
            [row.obs.image for row in rows], [row.obs.instruction for row in rows], noise, inpainting, timer=timer
        ).cpu().numpy()
    timings = timer.results_ms()
    return [(chunk, timings) for chunk in normalized]


def _finish_row(model: CogACTPolicy, row: PredictionRow, chunk: np.ndarray, timings: dict[str, float]) -> PolicyOutput:
    """Normalised chunk (T, A) -> unnormalised, clipped; added to the row's ensemble."""
    assert model.statistics is not None
    started = time.perf_counter()
    actions, clipped = model.statistics.unnormalize(chunk)
    action = row.ensemble.add(actions) if row.ensemble is not None else actions[0].copy()
    timings = dict(timings)
    if timings:
        postprocess = (time.perf_counter() - started) * 1e3
        timings["postprocess"] = postprocess
        timings["total"] = timings.get("total", 0.0) + postprocess
    return PolicyOutput(actions=actions, normalized_actions=clipped, action=action, timings_ms=timings)
