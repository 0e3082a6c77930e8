"""FIBER (coarse-grained, "fusion in the backbone") as a front end: a transformers Swin and a transformers RoBERTa,
with gated cross-attention in the top ``M = num_fusion_blocks`` image blocks and text layers.

Schedule (reference section 2.2): the Swin blocks below the top M and the RoBERTa layers below the top M run alone;
then step j pairs the j-th fused image block with the j-th fused text layer, and both are computed from the states
before the step: ``image' = block_j(image, ctx=text)``, ``text = layer_j(text, ctx=image)``, ``image = image'``
(a patch merging between stages sits between steps, as in FIBER).

- Image side (i2t): inside the block, the window attention's output ``a`` (after its output projection, back on the
  un-windowed token map) gets ``alpha * Attn(LN(a), text tokens)`` added before the block's residual; the
  cross-attention uses the stage's heads and the text padding mask.
- Text side (t2i): the self-attention output ``s`` (output dense + dropout, before the residual and LayerNorm) gets
  ``alpha * Attn(s, image tokens)`` (the text encoder's heads) added, then the layer's own LayerNorm(s + input).
- ``alpha`` is one scalar per module, initialised to 0 (no tanh): with every gate at 0 both streams equal the
  unfused backbones exactly. The fusion modules are built here around the already-built Swin and RoBERTa (never by
  a ``PreTrainedModel`` init), so no ``_init_weights`` can re-draw the gates.

Visual tokens: the last Swin stage ((S / 32)^2 = 49 at 224 px), no final Swin norm (FIBER's fused path has none)
-> ``image_transform`` (FIBER's Linear_V) -> a LayerNorm (added here, as the reference suggests, to give the projector
normalised tokens). Pooled: [tanh(W text_transform(text)[:, 0]); tanh(W mean(image_transform(image)))]. Everything
is trainable, as in FIBER. Two deviations, both only for the text stream: the last text layer keeps its output
LayerNorm (FIBER's ``last_norm=False`` would break the zero-gate equality), and there is no uni-modal (ITC) mode.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import nn
from transformers import RobertaConfig, RobertaModel, SwinConfig, SwinModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.swin.modeling_swin import window_partition, window_reverse

from policies.flops import attention_flops, conv_macs, linear_macs
from policies.front_ends.base import FrontEnd, FrontEndOutput, tokenize_text
from policies.front_ends.common import IMAGENET_MEAN, IMAGENET_STD, GatedCrossAttention, init_linear, normalize_frames

# For annotations only: the config reads the front-end registry, which builds this module.
if TYPE_CHECKING:
    from policies.vision_config import VisionConfig


def build_swin(config: VisionConfig) -> SwinModel:
    swin = config.fiber.swin
    hf_config = SwinConfig(
        image_size=config.image_size,
        patch_size=swin.patch_size,
        num_channels=3,
        embed_dim=swin.embed_dim,
        depths=list(swin.depths),
        num_heads=list(swin.num_heads),
        window_size=swin.window_size or config.image_size // 32,
        mlp_ratio=swin.mlp_ratio,
        qkv_bias=True,
        hidden_act="gelu",
        drop_path_rate=0.1,  # FIBER's (timm Swin's class default); identity at inference
        use_absolute_embeddings=False,
        layer_norm_eps=1e-5,
        attn_implementation="sdpa",
    )
    return SwinModel(hf_config, add_pooling_layer=False)


def build_roberta(text, attn_implementation: str = "sdpa") -> RobertaModel:
    hf_config = RobertaConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        num_hidden_layers=text.num_layers,
        num_attention_heads=text.num_heads,
        intermediate_size=text.intermediate_size,
        max_position_embeddings=text.max_position_embeddings,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        attn_implementation=attn_implementation,
    )
    return RobertaModel(hf_config, add_pooling_layer=False)


class FiberFrontEnd(FrontEnd):
    """Image + instruction -> FIBER-fused image tokens (B, (S/32)^2, output_dim)."""

    uses_instruction = True

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        fiber = config.fiber
        self.config = config
        self.fiber = fiber
        self.swin = build_swin(config)
        self.text = build_roberta(fiber.text)
        self.image_size = config.image_size
        self.tokenizer_name = fiber.text.tokenizer
        self.text_vocab_size = fiber.text.vocab_size
        stages = fiber.swin.num_stages
        self.num_tokens = (config.image_size // (fiber.swin.patch_size * 2 ** (stages - 1))) ** 2
        self.token_dim = fiber.output_dim
        self.pooled_dim = 2 * fiber.output_dim

        # (stage, block) of every Swin block in order; the last M are fused, paired with the last M text layers.
        blocks = [(s, b) for s, depth in enumerate(fiber.swin.depths) for b in range(depth)]
        m = fiber.num_fusion_blocks
        self.fused_blocks = blocks[len(blocks) - m:]
        self.first_fused_text = fiber.text.num_layers - m
        text_width, text_heads = fiber.text.hidden_size, fiber.text.num_heads
        self.image_fusion = nn.ModuleList([
            GatedCrossAttention(fiber.swin.stage_dim(s), text_width, fiber.swin.num_heads[s], query_norm=True)
            for s, _ in self.fused_blocks
        ])
        self.text_fusion = nn.ModuleList([
            GatedCrossAttention(text_width, fiber.swin.stage_dim(s), text_heads, query_norm=False)
            for s, _ in self.fused_blocks
        ])
        width = fiber.swin.stage_dim(stages - 1)
        self.image_transform = nn.Linear(width, fiber.output_dim)
        self.text_transform = nn.Linear(text_width, fiber.output_dim)
        self.token_norm = nn.LayerNorm(fiber.output_dim)
        self.image_pooler = nn.Linear(fiber.output_dim, fiber.output_dim)
        self.text_pooler = nn.Linear(fiber.output_dim, fiber.output_dim)
        init_linear(nn.ModuleList([self.image_transform, self.text_transform, self.token_norm, self.image_pooler,
                                   self.text_pooler]))

    # ---------------------------------------------------------------------------------------------------- inputs

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Frames -> ``{"pixel_values": (B, 3, S, S)}``, ImageNet mean/std (FIBER's transform)."""
        return {"pixel_values": normalize_frames(images, self.image_size, IMAGENET_MEAN, IMAGENET_STD, self.device)}

    def tokenize(self, instructions: list[str]) -> dict[str, torch.Tensor]:
        return tokenize_text(self, instructions, self.fiber.max_text_tokens)

    def gates(self) -> list[nn.Parameter]:
        """Every alpha (image side first)."""
        return [module.alpha for module in (*self.image_fusion, *self.text_fusion)]

    # ---------------------------------------------------------------------------------------------------- forward

    def _image_block(self, block: nn.Module, hidden: torch.Tensor, dims: tuple[int, int], text: torch.Tensor,
                     text_mask: torch.Tensor, fusion: GatedCrossAttention) -> torch.Tensor:
        """One transformers ``SwinLayer`` step with FIBER's gated i2t cross-attention added to the attention output;
        the same operations in the same order as ``SwinLayer.forward``, so alpha = 0 gives its output bit for bit."""
        block.set_shift_and_window_size(dims)
        height, width = dims
        batch, _, channels = hidden.shape
        shortcut = hidden
        hidden = block.layernorm_before(hidden).view(batch, height, width, channels)
        hidden, pad_values = block.maybe_pad(hidden, height, width)
        _, height_pad, width_pad, _ = hidden.shape
        size = block.window_size
        windows = window_partition(block.cyclic_shift(hidden), size).view(-1, size * size, channels)
        mask = block.get_attn_mask(height_pad, width_pad, dtype=hidden.dtype, device=windows.device)
        attention, _ = block.attention(windows, mask)
        attention = block.dropout(attention).view(-1, size, size, channels)
        attention = block.cyclic_shift(window_reverse(attention, size, height_pad, width_pad), reverse=True)
        if pad_values[3] > 0 or pad_values[5] > 0:
            attention = attention[:, :height, :width, :].contiguous()
        attention = attention.view(batch, height * width, channels)
        attention = attention + fusion(attention, text, text_mask)
        hidden = shortcut + block.drop_path(attention)
        return block.dropout(block.mlp(block.layernorm_after(hidden))) + hidden

    @staticmethod
    def _text_layer(layer: nn.Module, text: torch.Tensor, text_mask_4d: Optional[torch.Tensor], image: torch.Tensor,
                    fusion: GatedCrossAttention) -> torch.Tensor:
        """One transformers ``RobertaLayer`` with FIBER's gated t2i cross-attention added to the self-attention
        output before the residual and LayerNorm (alpha = 0 gives the layer's output bit for bit)."""
        attended, _ = layer.attention.self(text, text_mask_4d)
        output = layer.attention.output
        hidden = output.dropout(output.dense(attended))
        hidden = hidden + fusion(hidden, image)
        hidden = output.LayerNorm(hidden + text)
        return layer.output(layer.intermediate(hidden), hidden)

    def streams(self, pixel_values: torch.Tensor, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) + text ids -> (image tokens of the last stage (B, N, C), text tokens (B, L, text width)),
        both before the output transforms."""
        ids, text_mask = text["input_ids"], text["attention_mask"]
        text_hidden = self.text.embeddings(input_ids=ids)
        text_mask_4d = create_bidirectional_mask(config=self.text.config, inputs_embeds=text_hidden,
                                                 attention_mask=text_mask)
        text_layers = self.text.encoder.layer
        for layer in text_layers[: self.first_fused_text]:
            text_hidden = layer(text_hidden, text_mask_4d)

        image, dims = self.swin.embeddings(pixel_values.to(self.dtype))
        step = 0
        fused = set(self.fused_blocks)
        for s, stage in enumerate(self.swin.encoder.layers):
            for b, block in enumerate(stage.blocks):
                if (s, b) not in fused:
                    image = block(image, dims)[0]
                    continue
                new_image = self._image_block(block, image, dims, text_hidden, text_mask, self.image_fusion[step])
                text_hidden = self._text_layer(text_layers[self.first_fused_text + step], text_hidden, text_mask_4d,
                                               image, self.text_fusion[step])
                image = new_image
                step += 1
            if stage.downsample is not None:
                image = stage.downsample(image, dims)
                dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
        return image, text_hidden

    def encode(self, pixels: dict[str, torch.Tensor], text: Optional[dict[str, torch.Tensor]] = None) -> FrontEndOutput:
        image, text_hidden = self.streams(pixels["pixel_values"], self._require_text(text))
        image_feats = self.image_transform(image)
        text_feats = self.text_transform(text_hidden)
        pooled = torch.cat([torch.tanh(self.text_pooler(text_feats[:, 0])),
                            torch.tanh(self.image_pooler(image_feats.mean(dim=1)))], dim=-1)
        return FrontEndOutput(tokens=self.token_norm(image_feats), mask=None, pooled=pooled)

    # ---------------------------------------------------------------------------------------------------- FLOPs

    def flop_count(self, text_tokens: int = 16) -> dict[str, int]:
        fiber = self.fiber
        grid = self.image_size // fiber.swin.patch_size
        macs = conv_macs(self.swin.embeddings.patch_embeddings.projection, grid * grid)
        attention = 0
        fused = {block: j for j, block in enumerate(self.fused_blocks)}
        text_width = fiber.text.hidden_size
        for s, stage in enumerate(self.swin.encoder.layers):
            tokens = grid * grid
            window = self.swin.config.window_size
            size = grid if grid <= window else window  # SwinLayer shrinks the window to a small map
            padded = (math.ceil(grid / size) * size) ** 2
            channels = fiber.swin.stage_dim(s)
            for b, block in enumerate(stage.blocks):
                projections = block.attention
                macs += linear_macs([projections.q_proj, projections.k_proj, projections.v_proj,
                                     projections.o_proj]) * padded + linear_macs([block.mlp]) * tokens
                attention += attention_flops(size * size, size * size, channels) * (padded // (size * size))
                if (s, b) in fused:
                    j = fused[(s, b)]
                    macs += self.image_fusion[j].attention.macs(tokens, text_tokens)
                    macs += self.text_fusion[j].attention.macs(text_tokens, tokens)
                    attention += attention_flops(tokens, text_tokens, channels)
                    attention += attention_flops(text_tokens, tokens, text_width)
            if stage.downsample is not None:
                grid = (grid + 1) // 2
                macs += linear_macs([stage.downsample]) * grid * grid
        for layer in self.text.encoder.layer:
            macs += linear_macs([layer]) * text_tokens
            attention += attention_flops(text_tokens, text_tokens, text_width)
        macs += linear_macs([self.image_transform]) * grid * grid + linear_macs([self.text_transform]) * text_tokens
        macs += linear_macs([self.image_pooler, self.text_pooler])
        return {"paper": 2 * macs, "executed": 2 * macs, "attention": attention}
