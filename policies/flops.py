"""FLOPs of one control step, counted from a built policy's module shapes (so a meta-device 7B model costs nothing).

Paper convention (EfficientVLA, reproduced in the reference's section 4.7): 2 x multiply-accumulates of the linear and
convolution layers; attention-score matmuls (QK^T and AV) are reported separately. ``paper`` counts what CogACT
runs: every ViT block (CogACT runs the last one and discards it) and the LM head over the whole sequence.
``executed`` counts what vlart runs: without the last ViT blocks and the LM head, attention scores included
(``executed_linear`` without them: what torch's FlopCounterMode sees on CPU, where it does not count SDPA).
Each front end counts its own FLOPs (``FrontEnd.flop_count``); the LLM sees its ``num_tokens`` visual tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from torch import nn

PAPER_TEXT_TOKENS = 26  # BOS + CogACT's Google-robot prompt (282 tokens with 256 visual ones, reference 1.5)


def linear_macs(modules: Iterable[nn.Module]) -> int:
    """Multiply-accumulates per token of every nn.Linear in ``modules`` (recursively)."""
    return sum(m.in_features * m.out_features for module in modules for m in module.modules()
               if isinstance(m, nn.Linear))


def conv_macs(conv: nn.Conv2d, positions: int) -> int:
    return conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] * positions


@dataclass
class StepShape:
    """Token counts of one step: ``text_tokens`` is every non-visual LLM token (BOS, prompt, cognition token);
    ``instruction_tokens`` the instruction in a fusion front end's own tokenizer, special tokens included."""

    text_tokens: int = PAPER_TEXT_TOKENS
    instruction_tokens: int = 16


def attention_flops(queries: int, keys: int, width: int) -> int:
    """QK^T and AV of ``queries`` queries over ``keys`` keys, ``width`` channels over all heads; 2 FLOPs per MAC."""
    return 2 * 2 * queries * keys * width


def _attention_flops(tokens: int, width: int) -> int:
    return attention_flops(tokens, tokens, width)


def vit_tower_flops(encoder_layers: nn.ModuleList, patch_conv: nn.Conv2d, tokens: int, patches: int,
                    width: int) -> dict[str, int]:
    """A ViT whose second-to-last block gives the features: ``paper`` runs every block, ``executed`` all but the
    last (vlart never runs it)."""
    per_layer = [2 * linear_macs([layer]) * tokens for layer in encoder_layers]
    return {
        "paper": 2 * conv_macs(patch_conv, patches) + sum(per_layer),
        "executed": 2 * conv_macs(patch_conv, patches) + sum(per_layer[:-1]),
        "attention": _attention_flops(tokens, width) * (len(encoder_layers) - 1),
    }


def count_flops(policy: Any, shape: StepShape = StepShape()) -> dict[str, Any]:
    """Per-module GFLOPs of one ``predict_action`` of ``policy`` (with whatever preset is applied to it)."""
    front_end = policy.vision
    vision = front_end.flop_count(shape.instruction_tokens if front_end.uses_instruction else 0)
    patches = front_end.num_tokens
    projector = 2 * linear_macs([policy.projector]) * patches

    language_model = policy.language_model
    layers = language_model.llm.model.layers
    hidden = language_model.config.hidden_size
    full = patches + shape.text_tokens
    selector = language_model.token_selector
    llm = llm_attention = 0
    for index, layer in enumerate(layers):
        tokens = full
        if selector is not None and index > selector.layer:
            tokens = shape.text_tokens + min(selector.keep, patches)
        llm += 2 * linear_macs([layer]) * tokens
        llm_attention += _attention_flops(tokens, hidden)
    lm_head = 2 * linear_macs([language_model.llm.lm_head]) * full
    selection = 0  # executed only: the selector's explicit text-to-visual attention and its diversity scores
    if selector is not None and selector.layer < len(layers) and patches > selector.keep:
        attention = layers[selector.layer].self_attn
        selection = 2 * linear_macs([attention.q_proj, attention.k_proj]) * full + 2 * shape.text_tokens * full * hidden
        if hasattr(selector, "key"):
            task = int(selector.alpha * (selector.keep - selector.key))
            selection += 2 * (patches - selector.key - task) * selector.key * hidden

    head = policy.action_head
    steps = policy.config.sampler.num_inference_steps
    guided = policy.config.sampler.cfg_scale != 1.0
    batch = 2 if guided else 1
    chunk = head.config.chunk_length
    cache = head.feature_cache
    full_steps = steps if cache is None else len([k for k in range(steps) if k % cache.interval == 0])
    per_step_rest = (linear_macs([head.x_embedder]) * chunk + linear_macs([head.t_embedder, head.z_embedder])
                     + linear_macs([head.final_layer]) * (chunk + 1))
    action_head = 2 * batch * (steps * per_step_rest + full_steps * linear_macs(head.blocks) * (chunk + 1))
    dit_attention = batch * full_steps * len(head.blocks) * _attention_flops(chunk + 1, head.config.hidden_size)

    vision_paper = vision["paper"]
    vision_executed = vision["executed"]
    paper_total = vision_paper + projector + llm + lm_head + action_head
    attention = vision["attention"] + llm_attention + dit_attention
    executed_linear = vision_executed + projector + llm + selection + action_head
    gflops = 1e-9
    return {
        "model": policy.config.name,
        "preset": getattr(policy, "preset", "baseline"),
        "front_end": policy.config.vision.type,
        "visual_tokens": patches,
        "text_tokens": shape.text_tokens,
        "instruction_tokens": shape.instruction_tokens if front_end.uses_instruction else None,
        "llm_tokens": full,
        "gflops": {
            "vision": round(vision_paper * gflops, 6),
            "projector": round(projector * gflops, 6),
            "llm": round(llm * gflops, 6),
            "lm_head": round(lm_head * gflops, 6),
            "action_head": round(action_head * gflops, 6),
            "total": round(paper_total * gflops, 6),
        },
        "executed_gflops_by_stage": {  # what each profiled stage runs, attention scores included
            "vision": round((vision_executed + vision["attention"]) * gflops, 6),
            "projector": round(projector * gflops, 6),
            "llm": round((llm + selection + llm_attention) * gflops, 6),
            "action_head": round((action_head + dit_attention) * gflops, 6),
            "total": round((executed_linear + attention) * gflops, 6),
        },
        "attention_scores_gflops": round(attention * gflops, 6),
        "executed_linear_gflops": round(executed_linear * gflops, 6),
        "executed_gflops": round((executed_linear + attention) * gflops, 6),
    }
