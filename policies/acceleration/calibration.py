"""Calibration of LLM layer importance and MLP channel importance on real observations (hooks, no retraining).

Layer importance (EfficientVLA / ShortGPT's block influence): 1 - mean cosine similarity between a decoder layer's
input and output hidden states over every token position of every calibration sample, read with forward hooks on
the layers while the policy computes its cognition features as it does when it acts (transformers'
``output_hidden_states`` would give the post-norm state for the last layer).

MLP channel importance, rule ``activation`` (what vlart ships; EfficientVLA used PruneNet, a REINFORCE-trained
policy over the gate_proj spectrum, which needs training this runtime does not do): channel j of a SwiGLU MLP adds
h_j * W_down[:, j] to the residual stream with h = silu(gate(x)) * up(x), so its expected contribution has size
E|h_j| * ||W_down[:, j]||. Channels with the smallest expected contribution are removed. Rule ``weight`` needs no data:
||W_gate[j]|| * ||W_up[j]|| * ||W_down[:, j]||.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from policies.api.interface import Observation

MLP_RULES = ("activation", "weight")


@dataclass
class CalibrationPlan:
    """Scores of one model: ``layer_importance[i]`` for decoder layer i, and for each layer its MLP channels in
    decreasing importance (``mlp_channel_order[i]``)."""

    model: str
    samples: int
    layer_importance: list[float]
    mlp_rule: str
    mlp_channel_order: list[list[int]]

    @property
    def num_layers(self) -> int:
        return len(self.layer_importance)

    def layers_to_drop(self, keep: int) -> list[int]:
        """The ``num_layers - keep`` least important layers (any subset, not necessarily contiguous), ascending."""
        if not 1 <= keep <= self.num_layers:
            raise ValueError(f"layers.keep: expected 1..{self.num_layers}, got {keep}")
        ranked = sorted(range(self.num_layers), key=lambda i: self.layer_importance[i])
        return sorted(ranked[: self.num_layers - keep])

    def channels_to_keep(self, layer: int, keep: int) -> list[int]:
        return sorted(self.mlp_channel_order[layer][:keep])

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers_to_drop"] = {str(k): self.layers_to_drop(k) for k in range(1, self.num_layers)}
        return data

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationPlan":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"--plan: no calibration plan at {path} (make one with `vlart calibrate`)") from None
        data.pop("layers_to_drop", None)
        return cls(**data)

    @classmethod
    def placeholder(cls, model: str, num_layers: int, intermediate: int) -> "CalibrationPlan":
        """A plan with arbitrary scores: for structural uses (FLOP counting), where which units go does not matter."""
        return cls(model, 0, [float(num_layers - i) for i in range(num_layers)], "none",
                   [list(range(intermediate)) for _ in range(num_layers)])


@torch.inference_mode()
def calibrate(policy: Any, observations: list[Observation], mlp_rule: str = "activation") -> CalibrationPlan:
    """Score every decoder layer and every MLP channel of ``policy``'s LLM on ``observations``."""
    if mlp_rule not in MLP_RULES:
        raise ValueError(f"mlp_rule: expected one of {', '.join(MLP_RULES)}, got {mlp_rule!r}")
    if not observations:
        raise ValueError("calibration needs at least one observation")
    layers = policy.language_model.llm.model.layers
    similarity_sums = torch.zeros(len(layers), dtype=torch.float64)
    activation_sums = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    token_counts = [0] * len(layers)
    handles = []

    def layer_hook(index: int):
        def hook(module, args, kwargs, output):
            hidden_in = args[0] if args else kwargs["hidden_states"]
            hidden_out = output[0] if isinstance(output, tuple) else output
            cosine = F.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
            similarity_sums[index] += cosine.mean().item()
        return hook

    def down_proj_hook(index: int):
        def hook(module, args):
            hidden = args[0].float().abs().reshape(-1, args[0].shape[-1])
            activation_sums[index] += hidden.sum(dim=0).double().cpu()
            token_counts[index] += hidden.shape[0]
        return hook

    for index, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(layer_hook(index), with_kwargs=True))
        if mlp_rule == "activation":
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(down_proj_hook(index)))
    try:
        for observation in observations:
            # The policy's own path (the DiT is not needed), so the LLM sees what it sees when it acts: the central
            # ``inference_crop_area`` of the frame for a model trained on crops.
            policy.cognition_features([observation.image], [observation.instruction],
                                      crop_area=policy.config.vision.inference_crop_area)
    finally:
        for handle in handles:
            handle.remove()
    importance = [1.0 - float(s) / len(observations) for s in similarity_sums]
    orders = []
    for index, layer in enumerate(layers):
        mlp = layer.mlp
        down_norm = mlp.down_proj.weight.float().norm(dim=0).double().cpu()
        if mlp_rule == "activation":
            score = activation_sums[index] / max(token_counts[index], 1) * down_norm
        else:
            score = (mlp.gate_proj.weight.float().norm(dim=1) * mlp.up_proj.weight.float().norm(dim=1)).double().cpu()
            score = score * down_norm
        orders.append(score.argsort(descending=True).tolist())
    return CalibrationPlan(policy.config.name, len(observations), importance, mlp_rule, orders)
