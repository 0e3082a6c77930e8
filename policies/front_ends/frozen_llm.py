"""A frozen LLM block as a visual encoder layer (LM4VisualEncoding) after CogACT's ViT tokens.

ViT tokens (B, N, D) (the DINOv2 + SigLIP tokens of ``policies.front_ends.dinosiglip``, or one tower) ->
Linear(D -> H, no bias) -> one transformers ``LlamaDecoderLayer`` with no rotary embedding (the identity rotation,
cos = 1 and sin = 0) and no causal mask (``is_causal=False`` and no mask: bidirectional under sdpa) -> RMSNorm(H)
with its weight left at 1 -> Linear(H -> D, no bias). N and D are the ViT's, so the projector and the LLM see the
shapes they would without the block. The block's weights are copied from layer ``llm_layer`` of the policy's own LLM
when the policy is built (the copy is the block's own, so fine-tuning the LLM later leaves it as it was), or drawn at
random with ``llm_layer: null``. The block and the trailing RMSNorm are frozen; the ViT and both Linears are
trainable, as in LM4VE. The instruction is not used (LM4VE is vision-only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm

from policies.flops import attention_flops, linear_macs
from policies.front_ends.base import FrontEnd, FrontEndOutput
from policies.front_ends.dinosiglip import DinoSigLIPFrontEnd
from policies.llm_config import LLMConfig

# For annotations only: the config reads the front-end registry, which builds this module.
if TYPE_CHECKING:
    from policies.vision_config import VisionConfig


class FrozenLLMFrontEnd(FrontEnd):
    """RGB frames -> ViT tokens refined by a frozen LLaMA block, (B, N, D) as the ViT's."""

    uses_instruction = False

    def __init__(self, config: VisionConfig, llm: LLMConfig) -> None:
        super().__init__()
        fl = config.frozenllm
        self.config = config
        self.frozenllm = fl
        shape = fl.block_shape(llm)
        towers = ("dino", "siglip") if fl.tower == "dinosiglip" else (fl.tower,)
        self.vit = DinoSigLIPFrontEnd(config, towers)
        self.image_size = config.image_size
        self.num_tokens = self.vit.num_tokens
        self.token_dim = self.vit.token_dim
        self.pooled_dim = self.token_dim
        hidden = shape["hidden_size"]
        self.block_config = LlamaConfig(
            vocab_size=1,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
            hidden_size=hidden,
            intermediate_size=shape["intermediate_size"],
            num_hidden_layers=1,
            num_attention_heads=shape["num_heads"],
            num_key_value_heads=shape["num_kv_heads"],
            rms_norm_eps=llm.rms_norm_eps,
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            attn_implementation="sdpa",
        )
        self.head_dim = hidden // shape["num_heads"]
        self.in_proj = nn.Linear(self.token_dim, hidden, bias=False)
        self.block = LlamaDecoderLayer(self.block_config, layer_idx=0)
        self.norm = LlamaRMSNorm(hidden, eps=fl.rms_norm_eps)
        self.out_proj = nn.Linear(hidden, self.token_dim, bias=False)
        for linear in (self.in_proj, self.out_proj):
            nn.init.trunc_normal_(linear.weight, std=0.02)
        if fl.llm_layer is None:  # a random block, drawn like a LLaMA layer
            for module in self.block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
        self.block.requires_grad_(False)
        self.norm.requires_grad_(False)

    def attach_language_model(self, language_model: nn.Module) -> None:
        """Copy layer ``llm_layer`` of the policy's LLM into the block (weights loaded later replace the copy)."""
        index = self.frozenllm.llm_layer
        if index is not None:
            self.block.load_state_dict(language_model.llm.model.layers[index].state_dict())

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return self.vit.preprocess(images)

    def encode(self, pixels: dict[str, torch.Tensor], text: Optional[dict[str, torch.Tensor]] = None) -> FrontEndOutput:
        hidden = self.in_proj(self.vit.encode(pixels).tokens)
        batch, tokens, _ = hidden.shape
        cos = torch.ones(batch, tokens, self.head_dim, dtype=hidden.dtype, device=hidden.device)
        sin = torch.zeros_like(cos)
        hidden = self.block(hidden, attention_mask=None, position_embeddings=(cos, sin), is_causal=False)
        out = self.out_proj(self.norm(hidden))
        return FrontEndOutput(tokens=out, mask=None, pooled=out.mean(dim=1))

    def flop_count(self, text_tokens: int = 0) -> dict[str, int]:
        vit = self.vit.flop_count()
        tokens = self.num_tokens
        macs = linear_macs([self.in_proj, self.block, self.out_proj]) * tokens
        attention = attention_flops(tokens, tokens, self.block_config.num_attention_heads * self.head_dim)
        return {"paper": vit["paper"] + 2 * macs, "executed": vit["executed"] + 2 * macs,
                "attention": vit["attention"] + attention}
