"""BridgeTower as a front end: transformers ``BridgeTowerModel`` (eager attention, the only one it supports).

A CLIP-style ViT and a RoBERTa of the same depth L run in full; the top ``num_cross_layers`` (C) layers of both feed C
two-stream cross-modal layers through bridge layers (LayerNorm(Linear(uni-modal layer) + token-type embedding +
previous cross-modal output), the "add" link tower of the paper): the image stream self-attends and cross-attends to
the text stream (text padding masked), the text stream likewise, both from the same inputs (reference section 3.2).

Visual tokens: the last cross-modal image stream, CLS included ((S / patch)^2 + 1 = 197 at 224 px with patch 16),
text-encoder wide, so they depend on the instruction; pooled: BridgeTower's ``pooler_output``
([tanh(W text CLS); tanh(W image CLS)]). Frames are squashed to ``image_size`` (CogACT's resize, not BridgeTower's
shortest-edge resize and centre crop) and normalised with OpenAI CLIP's mean/std. Everything is trainable, as in
BridgeTower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from transformers import BridgeTowerConfig as HFBridgeTowerConfig
from transformers import BridgeTowerModel

from policies.flops import attention_flops, conv_macs, linear_macs
from policies.front_ends.base import FrontEnd, FrontEndOutput, tokenize_text
from policies.front_ends.common import CLIP_MEAN, CLIP_STD, normalize_frames

# For annotations only: the config reads the front-end registry, which builds this module.
if TYPE_CHECKING:
    from policies.vision_config import VisionConfig


def build_bridgetower(config: VisionConfig) -> BridgeTowerModel:
    bt = config.bridgetower
    text = bt.text
    hf_config = HFBridgeTowerConfig(
        hidden_size=text.hidden_size,
        num_attention_heads=text.num_heads,
        num_hidden_layers=bt.num_cross_layers,
        share_cross_modal_transformer_layers=True,
        share_link_tower_layers=False,
        link_tower_type="add",
        text_config={
            "vocab_size": text.vocab_size,
            "hidden_size": text.hidden_size,
            "num_hidden_layers": text.num_layers,
            "num_attention_heads": text.num_heads,
            "intermediate_size": text.intermediate_size,
            "max_position_embeddings": text.max_position_embeddings,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        vision_config={
            "hidden_size": bt.vision.hidden_size,
            "num_hidden_layers": bt.vision.depth,
            "patch_size": bt.vision.patch_size,
            "image_size": config.image_size,
        },
        attn_implementation="eager",
    )
    return BridgeTowerModel(hf_config)


class BridgeTowerFrontEnd(FrontEnd):
    """Image + instruction -> BridgeTower's cross-modal image tokens (B, (S/patch)^2 + 1, text width)."""

    uses_instruction = True

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        bt = config.bridgetower
        self.config = config
        self.bridgetower = bt
        self.model = build_bridgetower(config)
        self.image_size = config.image_size
        self.tokenizer_name = bt.text.tokenizer
        self.text_vocab_size = bt.text.vocab_size
        self.patches = (config.image_size // bt.vision.patch_size) ** 2
        self.num_tokens = self.patches + 1
        self.token_dim = bt.text.hidden_size
        self.pooled_dim = 2 * bt.text.hidden_size

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Frames -> ``{"pixel_values": (B, 3, S, S)}``, OpenAI CLIP mean/std."""
        return {"pixel_values": normalize_frames(images, self.image_size, CLIP_MEAN, CLIP_STD, self.device)}

    def tokenize(self, instructions: list[str]) -> dict[str, torch.Tensor]:
        return tokenize_text(self, instructions, self.bridgetower.max_text_tokens)

    def encode(self, pixels: dict[str, torch.Tensor], text: Optional[dict[str, torch.Tensor]] = None) -> FrontEndOutput:
        text = self._require_text(text)
        output = self.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                            pixel_values=pixels["pixel_values"].to(self.dtype))
        return FrontEndOutput(tokens=output.image_features, mask=None, pooled=output.pooler_output)

    def flop_count(self, text_tokens: int = 16) -> dict[str, int]:
        model = self.model
        image_tokens, text_width = self.num_tokens, self.token_dim
        vision_width = self.bridgetower.vision.hidden_size
        visual = model.vision_model.visual
        macs = conv_macs(visual.embeddings.patch_embedding, self.patches)
        attention = 0
        for block in visual.transformer.resblocks:  # nn.MultiheadAttention: in_proj is a bare Parameter
            macs += (block.attn.in_proj_weight.numel() + linear_macs([block])) * image_tokens
            attention += attention_flops(image_tokens, image_tokens, vision_width)
        for layer in model.text_model.encoder.layer:
            macs += linear_macs([layer]) * text_tokens
            attention += attention_flops(text_tokens, text_tokens, text_width)
        cross = self.bridgetower.num_cross_layers  # the shared bridge transforms run once per cross-modal layer
        macs += cross * (linear_macs([model.cross_modal_image_transform]) * image_tokens
                         + linear_macs([model.cross_modal_text_transform]) * text_tokens)
        for stream, tokens, context in ((model.cross_modal_image_layers, image_tokens, text_tokens),
                                        (model.cross_modal_text_layers, text_tokens, image_tokens)):
            for layer in stream:
                kv = linear_macs([layer.crossattention.self.key, layer.crossattention.self.value])
                macs += (linear_macs([layer]) - kv) * tokens + kv * context
                attention += attention_flops(tokens, tokens, text_width) + attention_flops(tokens, context, text_width)
        macs += linear_macs([model.cross_modal_image_pooler, model.cross_modal_text_pooler])
        return {"paper": 2 * macs, "executed": 2 * macs, "attention": attention}
