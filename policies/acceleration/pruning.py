"""Structural pruning of the LLM: whole decoder layers, and MLP intermediate channels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from policies.acceleration.calibration import CalibrationPlan


def scaled_depth(keep_of_reference: int, reference_depth: int, depth: int) -> int:
    """A depth target given for a reference model (22 of 32 layers) scaled to a model of ``depth`` layers."""
    return max(1, min(depth, round(keep_of_reference * depth / reference_depth)))


def drop_layers(policy: Any, drop: list[int]) -> None:
    """Remove the decoder layers at ``drop`` (indices into the current list); the residual stream passes through.
    Kept layers are renumbered so their attention's ``layer_idx`` (cache slot) stays consistent."""
    model = policy.language_model.llm.model
    keep = [i for i in range(len(model.layers)) if i not in set(drop)]
    if not keep:
        raise ValueError("layer pruning would remove every layer")
    model.layers = nn.ModuleList([model.layers[i] for i in keep])
    for new_index, layer in enumerate(model.layers):
        layer.self_attn.layer_idx = new_index
    model.config.num_hidden_layers = len(keep)


def _sliced_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            new.bias.copy_(bias.index_select(0, index.to(bias.device)) if dim == 0 else bias)
    return new


def prune_mlp_channels(policy: Any, plan: CalibrationPlan, keep_ratio: float) -> None:
    """Keep the ``keep_ratio`` most important intermediate channels of every layer's MLP: the same channels leave
    gate_proj and up_proj (rows) and down_proj (columns). 11008 -> 8256 at 0.75 on LLaMA-2-7B."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"mlp.keep_ratio: expected (0, 1], got {keep_ratio}")
    layers = policy.language_model.llm.model.layers
    if len(layers) != plan.num_layers:
        raise ValueError("prune MLP channels before dropping layers (the plan indexes the original layers)")
    for index, layer in enumerate(layers):
        mlp = layer.mlp
        keep = round(mlp.gate_proj.out_features * keep_ratio)
        channels = torch.tensor(plan.channels_to_keep(index, keep), dtype=torch.long)
        mlp.gate_proj = _sliced_linear(mlp.gate_proj, channels, 0)
        mlp.up_proj = _sliced_linear(mlp.up_proj, channels, 0)
        mlp.down_proj = _sliced_linear(mlp.down_proj, channels, 1)
        mlp.intermediate_size = keep
