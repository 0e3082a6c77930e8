"""The CogACT policy: camera frame + instruction -> 16-step action chunk and the ensembled action to execute.

preprocess -> front end (DINOv2+SigLIP by default: (B, 256, 2176)) -> projector (B, N, hidden) -> LLaMA -> cognition
(B, hidden) -> DiT + DDIM (10 steps) + CFG -> normalised chunk (B, 16, 7) -> clip, binarise gripper, q01/q99 ->
ensemble. The front end (``vision.type``, ``policies.front_ends``) may also read the instruction (FIBER, BridgeTower,
HiCroPL), tokenised with its own tokenizer; the LLM gets it again in CogACT's prompt. A ``ChunkContinuation`` makes
the chunk continue the robot's current plan (inpainting in the DDIM loop, ``policies.continuation``).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from policies.action_head import DiffusionTransformer
from policies.compilation import CompileReport
from policies.config import PolicyConfig
from policies.continuation import ChunkInpainting, inpainting_for
from policies.diffusion import DDIMActionSampler
from policies.api.ensemble import AdaptiveActionEnsemble
from policies.front_ends.registry import build_front_end
from policies.image_transforms import center_crop, validate_image
from policies.api.interface import (
    ACTION_NAMES,
    ChunkContinuation,
    Conventions,
    Observation,
    PolicyOutput,
    PredictRequest,
)
from policies.language_model import CognitionLanguageModel
from policies.normalization import ActionStatistics
from policies.projector import FusedMLPProjector
from policies.sessions import (
    PolicySession,
    PredictionRow,
    predict_requests,
    predict_rows,
    require_statistics,
    validate_instruction,
)
from runtime.core.timing import StageTimer


class CogACTPolicy(nn.Module):
    """A CogACT-shape policy built from a ``PolicyConfig``. Weights are random until loaded (``policies.checkpoint``).

    ``statistics`` are the action statistics of the chosen unnorm key; without them ``predict_action`` refuses to
    run (an unnormalised action is meaningless without them), while ``sample_normalized`` still works.
    """

    def __init__(self, config: PolicyConfig, statistics: Optional[ActionStatistics] = None) -> None:
        super().__init__()
        self.config = config
        self.vision = build_front_end(config)
        self.projector = FusedMLPProjector(self.vision.token_dim, config.llm.hidden_size)
        self.language_model = CognitionLanguageModel(config.llm)
        self.vision.attach_language_model(self.language_model)
        self.action_head = DiffusionTransformer(config.action_head, cognition_dim=config.llm.hidden_size)
        self.sampler = DDIMActionSampler(config.sampler)
        self.statistics = statistics
        self.preset = "baseline"
        self.compilation: Optional[CompileReport] = None  # set by policies.compilation.compile_policy
        self.ensemble = self.new_ensemble()

    def new_ensemble(self) -> Optional[AdaptiveActionEnsemble]:
        actions = self.config.actions
        return AdaptiveActionEnsemble(actions.ensemble_horizon, actions.ensemble_alpha) if actions.ensemble else None

    def session(self) -> PolicySession:
        """A Policy with its own ensemble history that shares this model (one per client of a server)."""
        return PolicySession(self, self.new_ensemble())

    @property
    def metadata(self) -> dict:
        """What a server announces about the model (``config``: the resolved model config, for provenance)."""
        return {
            "name": self.config.name,
            "family": "cogact",
            "parameters": self.parameter_counts()["total"],
            "device": str(self.device),
            "dtype": self.config.runtime.dtype,
            "preset": self.preset,
            "compiled": self.compilation.parts if self.compilation is not None else [],
            "num_inference_steps": self.config.sampler.num_inference_steps,
            "cfg_scale": self.config.sampler.cfg_scale,
            "continuation_method": self.config.sampler.continuation_method,
            "config": self.config.to_dict(),
        }

    @property
    def device(self) -> torch.device:
        return self.action_head.positional_embedding.device

    @property
    def conventions(self) -> Conventions:
        head = self.config.action_head
        return Conventions(
            action_dim=head.action_dim,
            action_names=ACTION_NAMES if head.action_dim == len(ACTION_NAMES) else tuple(f"a{i}" for i in range(head.action_dim)),
            rotation="euler_xyz_delta",
            gripper="absolute: 1 = open, 0 = close",
            chunk_length=head.chunk_length,
            control_rate_hz=self.config.actions.control_rate_hz,
            image_size=self.vision.image_size,
            image_keys=("primary",),
            unnorm_key=self.statistics.unnorm_key if self.statistics is not None else None,
            ensemble_horizon=self.config.actions.ensemble_horizon if self.config.actions.ensemble else None,
            ensemble_alpha=self.config.actions.ensemble_alpha if self.config.actions.ensemble else None,
        )

    def reset(self) -> None:
        """Start of an episode or a new instruction: forget the ensemble's history."""
        if self.ensemble is not None:
            self.ensemble.reset()

    def initial_noise(self, batch: int, seed: Optional[int]) -> torch.Tensor:
        """(B, T, A) standard normal on the CPU (so a seed gives the same noise on every device)."""
        head = self.config.action_head
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn((batch, head.chunk_length, head.action_dim), generator=generator)

    def cognition_features(
        self, images: list[np.ndarray], instructions: list[str], timer: Optional[StageTimer] = None,
        crop_area: float = 1.0,
    ) -> torch.Tensor:
        """B frames (H, W, 3) uint8 + B instructions -> cognition features (B, C): preprocess (the central
        ``crop_area`` of each frame), front end, projector, LLM. Differentiable (training calls it on frames it has
        cropped itself); ``sample_normalized`` runs it under inference mode with ``vision.inference_crop_area``."""
        timer = timer or StageTimer(enabled=False)
        if len(images) != len(instructions):
            raise ValueError(f"instructions: expected {len(images)} (one per image), got {len(instructions)}")
        with timer.stage("preprocess"):
            frames = [center_crop(validate_image(image, f"images[{i}]"), crop_area) for i, image in enumerate(images)]
            texts = [validate_instruction(text, f"instructions[{i}]") for i, text in enumerate(instructions)]
            pixels = self.vision.preprocess(frames)
            vision_text = self.vision.tokenize(texts) if self.vision.uses_instruction else None
            prompt = self.language_model.tokenize(texts)
        with timer.stage("vision"):
            encoded = self.vision.encode(pixels, vision_text)
        with timer.stage("projector"):
            visual = self.projector(encoded.tokens.to(self.projector.projector[0].weight.dtype))
        with timer.stage("llm"):
            return self.language_model(visual, prompt, visual_mask=encoded.mask)

    @torch.inference_mode()
    def sample_normalized(
        self,
        images: list[np.ndarray],
        instructions: list[str],
        seed: Optional[int] = None,
        cfg_scale: Optional[float] = None,
        timer: Optional[StageTimer] = None,
        continuation: Optional[ChunkContinuation] = None,
    ) -> torch.Tensor:
        """B frames (H, W, 3) uint8 + B instructions -> sampled normalised chunks (B, T, A) float32, not clipped.

        ``continuation`` (one for the whole batch) inpaints its prefix, normalised with ``statistics``, into every
        chunk; ``ValueError`` naming the field when it does not fit (T, A) or there are no statistics to normalise
        it with. Without one, or with one that constrains nothing, the sample is the plain one, bit for bit."""
        # Before the forward pass, so that a bad continuation costs nothing.
        inpainting = self.inpainting(continuation, seed)
        return self.sample_from_noise(images, instructions, self.initial_noise(len(images), seed), inpainting,
                                      cfg_scale, timer)

    def inpainting(self, continuation: Optional[ChunkContinuation], seed: Optional[int]) -> Optional[ChunkInpainting]:
        """The action head's inpainting of ``continuation`` for a request seeded with ``seed`` (None: no
        constraint); ``ValueError`` naming the field when it does not fit."""
        head = self.config.action_head
        return inpainting_for(
            continuation, self.statistics, (head.chunk_length, head.action_dim), seed, self.device,
            self.action_head.positional_embedding.dtype, self.config.sampler.continuation_method,
        )

    @torch.inference_mode()
    def sample_from_noise(
        self,
        images: list[np.ndarray],
        instructions: list[str],
        noise: torch.Tensor,
        inpainting: Optional[ChunkInpainting] = None,
        cfg_scale: Optional[float] = None,
        timer: Optional[StageTimer] = None,
    ) -> torch.Tensor:
        """``sample_normalized`` from the initial ``noise`` (B, T, A) on the CPU -> (B, T, A) float32."""
        timer = timer or StageTimer(enabled=False)
        head_dtype = self.action_head.positional_embedding.dtype
        cognition = self.cognition_features(images, instructions, timer, self.config.vision.inference_crop_area)
        with timer.stage("action_head"):
            self.action_head.begin_sample()
            actions = self.sampler.sample(
                self.action_head,
                noise.to(self.device, head_dtype),
                cognition.to(head_dtype),
                uncondition=self.action_head.z_embedder.uncondition,
                cfg_scale=cfg_scale,
                timer=timer,
                inpainting=inpainting,
            )
        return actions.float()

    def predict_action(
        self, obs: Observation, seed: Optional[int] = None, continuation: Optional[ChunkContinuation] = None
    ) -> PolicyOutput:
        """One control step, continuing ``continuation``'s plan when given. Raises ``ValueError`` naming the field
        for a bad image, instruction or continuation."""
        return self.predict_with_ensemble(obs, seed, self.ensemble, continuation)

    def predict_with_ensemble(
        self,
        obs: Observation,
        seed: Optional[int],
        ensemble: Optional[AdaptiveActionEnsemble],
        continuation: Optional[ChunkContinuation] = None,
    ) -> PolicyOutput:
        """``predict_action`` with the chunk added to ``ensemble`` (a session's own, or none)."""
        require_statistics(self)
        return predict_rows(self, [PredictionRow(obs, seed, ensemble, self.inpainting(continuation, seed))])[0]

    def predict_batch(self, requests: Sequence[PredictRequest]) -> list[Union[PolicyOutput, Exception]]:
        """Several sessions' requests as one forward pass (vision, projector, LLM, the DiT's guided batch): output i
        is what ``requests[i].session.predict_action`` alone would give (the same seeded noise, the prompt
        right-padded and masked, its own continuation and ensemble), to float rounding.

        A request that fails its checks gets its ``ValueError`` in place of an output; if the batched pass fails, each
        request runs alone, so only the one that fails gets its exception."""
        return predict_requests(self, requests)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per module (vision front end, projector, llm, action_head) and in total."""
        modules = {
            "vision": self.vision,
            "projector": self.projector,
            "llm": self.language_model,
            "action_head": self.action_head,
        }
        counts = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
        counts["total"] = sum(counts.values())
        return counts
