"""HiCroPL (hierarchical cross-modal prompt learning) on a frozen transformers CLIP, as a front end.

Deep prompts (reference section 4): ``num_prompts`` (n) learnable tokens per layer in both branches for the first
``prompt_depth`` (L_p) layers. Text: ``[SOS] P_t^0 instruction [EOT]`` (the instruction takes the class name's
place), positions 1..n replaced by P_t^l before layer l. Vision: P_v^0 appended after the patch tokens (after the
positional embedding, before ``pre_layrnorm``), the last n tokens replaced by P_v^l before layer l.

Knowledge flow, cross layer k:
- vision -> text (layers k..L_p-1): a layer-specific knowledge proxy (LKP: one learned query attention-pools a
  layer's prompts, ``LN2(q + MHA(LN1 q, LN1 P, LN1 P))``) per visual layer l >= k; the hierarchical mapper
  (``Q' = W_q Q, K' = W_k K, V' = W_v V; H = Q' + MHA(LN1 Q', LN1 K', LN1 V'); out = H + FFN(LN2 H)``, FFN 4x with
  QuickGELU) maps the stacked late text prompts, attending to all those proxies, to the late text prompts.
- text -> vision (layers 0..k-1): the same with the roles swapped: proxies of the early text layers, mapper onto the
  stacked early visual prompts.

Differentiable version (reference 4.6): the mapper outputs are the prompts the encoders consume (no in-place copy
into the prompt Parameters), so the mappers, the LKP nets and the proxy queries receive gradients.

Task-aware extension (reference 6.3, not in the paper; ``task_aware: true``, the default): the text proxy of early
layer l attention-pools that layer's input hidden states of the prompted instruction (prompt positions and
instruction tokens, padding masked) instead of the prompts alone, so the early visual prompts, hence the visual
tokens, depend on the instruction. ``task_aware: false`` is the published flow: the visual tokens do not depend on
the instruction (the text branch then only gives the pooled text feature).

Visual tokens: the last layer's patch tokens (CLS and prompt tokens dropped, no norm), 196 at 224 px with patch 16;
pooled: [visual_projection(post_layernorm(CLS)); text_projection(final_layer_norm(EOT))]. CLIP (both encoders,
projections, logit scale) is frozen; the prompts, proxies and mappers are trainable, as in HiCroPL. Frames are
squashed to ``image_size`` and normalised with OpenAI CLIP's mean/std.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel
from transformers.activations import QuickGELUActivation

from policies.flops import attention_flops, conv_macs, linear_macs
from policies.front_ends.base import FrontEnd, FrontEndOutput
from policies.front_ends.common import CLIP_MEAN, CLIP_STD, MultiHeadAttention, init_linear, normalize_frames

# For annotations only: the config reads the front-end registry, which builds this module.
if TYPE_CHECKING:
    from policies.vision_config import VisionConfig


def build_clip(config: VisionConfig) -> CLIPModel:
    hc = config.hicropl
    text, vision = hc.text, hc.vision
    special = {}
    if text.vocab_size < 49408:  # CLIP's default SOS/EOT ids would not exist; they are unused here
        special = {"bos_token_id": text.vocab_size - 2, "eos_token_id": text.vocab_size - 1,
                   "pad_token_id": text.vocab_size - 1}
    hf_config = CLIPConfig(
        text_config={
            "vocab_size": text.vocab_size,
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_layers,
            "num_attention_heads": text.num_heads,
            "max_position_embeddings": text.max_position_embeddings,
            "hidden_act": "quick_gelu",
            "projection_dim": hc.projection_dim,
            **special,
        },
        vision_config={
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.depth,
            "num_attention_heads": vision.num_heads,
            "image_size": config.image_size,
            "patch_size": vision.patch_size,
            "hidden_act": "quick_gelu",
            "projection_dim": hc.projection_dim,
        },
        projection_dim=hc.projection_dim,
        attn_implementation="sdpa",
    )
    return CLIPModel(hf_config)


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of a view of a Parameter, for use as a module input: torch's module tracker (``FlopCounterMode``)
    fails on inputs that are Parameter views under no_grad / inference mode. Gradients flow through the copy."""
    return tensor.clone()


class KnowledgeProxy(nn.Module):
    """LKP: one learned query token attention-pools a layer's tokens into one proxy token."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim))
        self.norm_in = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, dim, heads)
        self.norm_out = nn.LayerNorm(dim)
        init_linear(self.attention)

    def forward(self, tokens: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens (B, M, dim), mask (B, M) 1 = valid -> proxy (B, 1, dim)."""
        query = _owned(self.query.to(tokens.dtype).expand(tokens.shape[0], -1, -1))
        normed = self.norm_in(tokens)
        return self.norm_out(query + self.attention(self.norm_in(query), normed, mask))

    def macs(self, tokens: int) -> int:
        return self.attention.macs(1, tokens)


class KnowledgeMapper(nn.Module):
    """The hierarchical knowledge mapper: target prompts (B, Q, dim) attend to source proxies (B, K, source_dim)."""

    def __init__(self, dim: int, source_dim: int, heads: int) -> None:
        super().__init__()
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(source_dim, dim)
        self.to_value = nn.Linear(source_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), QuickGELUActivation(), nn.Linear(4 * dim, dim))
        init_linear(self)

    def forward(self, prompts: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
        query, key, value = self.to_query(prompts), self.to_key(proxies), self.to_value(proxies)
        hidden = query + self.attention(self.norm1(query), self.norm1(value), key_input=self.norm1(key))
        return hidden + self.mlp(self.norm2(hidden))

    def macs(self, queries: int, keys: int) -> int:
        return ((linear_macs([self.to_query, self.mlp]) * queries + linear_macs([self.to_key, self.to_value]) * keys)
                + self.attention.macs(queries, keys))


class HiCroPLFrontEnd(FrontEnd):
    """Image + instruction -> patch tokens of a prompted frozen CLIP ViT (B, (S/patch)^2, vision width)."""

    uses_instruction = True

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        hc = config.hicropl
        self.config = config
        self.hicropl = hc
        self.clip = build_clip(config)
        self.clip.requires_grad_(False)  # HiCroPL freezes both CLIP encoders (and the logit scale)
        self.image_size = config.image_size
        self.tokenizer_name = hc.text.tokenizer
        self.text_vocab_size = hc.text.vocab_size
        self.num_tokens = (config.image_size // hc.vision.patch_size) ** 2
        self.token_dim = hc.vision.hidden_size
        self.pooled_dim = 2 * hc.projection_dim

        depth, k, n = hc.prompt_depth, hc.cross_layer, hc.num_prompts
        text_width, vision_width = hc.text.hidden_size, hc.vision.hidden_size
        self.text_prompts = nn.Parameter(torch.randn(depth, n, text_width) * 0.02)
        self.visual_prompts = nn.Parameter(torch.randn(depth, n, vision_width) * 0.02)
        self.text_proxies = nn.ModuleList([KnowledgeProxy(text_width, hc.mapper_heads) for _ in range(k)])
        self.visual_proxies = nn.ModuleList([KnowledgeProxy(vision_width, hc.mapper_heads) for _ in range(depth - k)])
        self.text_to_vision = KnowledgeMapper(vision_width, text_width, hc.mapper_heads)
        self.vision_to_text = KnowledgeMapper(text_width, vision_width, hc.mapper_heads)

    def prompt_learner_parameters(self) -> list[nn.Parameter]:
        """What HiCroPL trains: prompts, proxies, mappers."""
        return [p for name, p in self.named_parameters() if not name.startswith("clip.")]

    # ---------------------------------------------------------------------------------------------------- inputs

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Frames -> ``{"pixel_values": (B, 3, S, S)}``, OpenAI CLIP mean/std."""
        return {"pixel_values": normalize_frames(images, self.image_size, CLIP_MEAN, CLIP_STD, self.device)}

    def tokenize(self, instructions: list[str]) -> dict[str, torch.Tensor]:
        """``[SOS] n placeholders instruction [EOT]``, right-padded with EOT, truncated to the text context."""
        if self.tokenizer is None:
            raise RuntimeError(f"HiCroPLFrontEnd: no tokenizer attached ({self.tokenizer_name!r}); build the policy "
                               "with policies.factory")
        n = self.hicropl.num_prompts
        room = self.hicropl.text.max_position_embeddings - n - 2
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        rows = [[bos] + [eos] * n + self.tokenizer(text, add_special_tokens=False).input_ids[:room] + [eos]
                for text in instructions]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), eos, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    # ---------------------------------------------------------------------------------------------------- forward

    def late_text_prompts(self) -> torch.Tensor:
        """vision -> text: prompts of text layers k..L_p-1 (L_p - k, n, text width), from the visual prompts."""
        k, n = self.hicropl.cross_layer, self.hicropl.num_prompts
        proxies = torch.cat([proxy(_owned(self.visual_prompts[k + i][None]))
                             for i, proxy in enumerate(self.visual_proxies)], dim=1)
        late = self.vision_to_text(_owned(self.text_prompts[k:].reshape(1, -1, self.text_prompts.shape[-1])), proxies)
        return late.view(-1, n, self.text_prompts.shape[-1])

    def early_visual_prompts(self, proxies: torch.Tensor) -> torch.Tensor:
        """text -> vision: text proxies (B, k, text width) -> prompts of visual layers 0..k-1 (B, k, n, width)."""
        k, n = self.hicropl.cross_layer, self.hicropl.num_prompts
        width = self.visual_prompts.shape[-1]
        queries = _owned(self.visual_prompts[:k].reshape(1, k * n, width).expand(proxies.shape[0], -1, -1))
        return self.text_to_vision(queries, proxies).view(-1, k, n, width)

    def text_branch(self, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompted CLIP text encoder -> (text feature (B, projection), text proxies (B or 1, k, text width))."""
        hc = self.hicropl
        k, n = hc.cross_layer, hc.num_prompts
        model = self.clip.text_model
        ids, mask = text["input_ids"], text["attention_mask"]
        batch, length = ids.shape
        prompts = torch.cat([self.text_prompts[:k], self.late_text_prompts()], dim=0)
        tokens = model.embeddings.token_embedding(ids)
        tokens = torch.cat([tokens[:, :1], prompts[0].to(tokens.dtype).expand(batch, -1, -1), tokens[:, 1 + n:]], 1)
        hidden = tokens + model.embeddings.position_embedding(model.embeddings.position_ids[:, :length])
        positions = torch.arange(length, device=ids.device)
        allowed = (positions[None, :] <= positions[:, None])[None] & mask[:, None, :].bool()
        bias = torch.zeros(allowed.shape, dtype=hidden.dtype, device=ids.device).masked_fill(
            ~allowed, torch.finfo(hidden.dtype).min)[:, None]
        proxies = []
        for index, layer in enumerate(model.encoder.layers):
            if 1 <= index < hc.prompt_depth:
                hidden = torch.cat([hidden[:, :1], prompts[index].to(hidden.dtype).expand(batch, -1, -1),
                                    hidden[:, 1 + n:]], dim=1)
            if hc.task_aware and index < k:
                proxies.append(self.text_proxies[index](hidden, mask))
            hidden = layer(hidden, bias)
        hidden = model.final_layer_norm(hidden)
        eot = hidden[torch.arange(batch, device=ids.device), mask.sum(dim=1) - 1]
        if not hc.task_aware:
            proxies = [proxy(_owned(self.text_prompts[i][None])) for i, proxy in enumerate(self.text_proxies)]
        return self.clip.text_projection(eot), torch.cat(proxies, dim=1)

    def encode(self, pixels: dict[str, torch.Tensor], text: Optional[dict[str, torch.Tensor]] = None) -> FrontEndOutput:
        hc = self.hicropl
        k, n = hc.cross_layer, hc.num_prompts
        text_feature, proxies = self.text_branch(self._require_text(text))
        early = self.early_visual_prompts(proxies)  # (B or 1, k, n, width)
        model = self.clip.vision_model
        pixel_values = pixels["pixel_values"].to(self.dtype)
        batch = pixel_values.shape[0]
        early = early.expand(batch, -1, -1, -1)
        hidden = model.embeddings(pixel_values)
        hidden = model.pre_layrnorm(torch.cat([hidden, early[:, 0].to(hidden.dtype)], dim=1))
        for index, layer in enumerate(model.encoder.layers):
            if 1 <= index < hc.prompt_depth:
                prompt = early[:, index] if index < k else self.visual_prompts[index].expand(batch, -1, -1)
                hidden = torch.cat([hidden[:, :-n], prompt.to(hidden.dtype)], dim=1)
            hidden = layer(hidden, None)
        image_feature = self.clip.visual_projection(model.post_layernorm(hidden[:, 0]))
        tokens = hidden[:, 1 : 1 + self.num_tokens]
        return FrontEndOutput(tokens=tokens, mask=None, pooled=torch.cat([image_feature, text_feature], dim=-1))

    # ---------------------------------------------------------------------------------------------------- FLOPs

    def flop_count(self, text_tokens: int = 16) -> dict[str, int]:
        hc = self.hicropl
        k, n, depth = hc.cross_layer, hc.num_prompts, hc.prompt_depth
        vision, text = self.clip.vision_model, self.clip.text_model
        text_width, vision_width = hc.text.hidden_size, hc.vision.hidden_size
        image_tokens = self.num_tokens + 1 + n
        sequence = text_tokens + n
        macs = conv_macs(vision.embeddings.patch_embedding, self.num_tokens)
        macs += linear_macs(vision.encoder.layers) * image_tokens + linear_macs(text.encoder.layers) * sequence
        macs += linear_macs([self.clip.visual_projection, self.clip.text_projection])
        attention = (len(vision.encoder.layers) * attention_flops(image_tokens, image_tokens, vision_width)
                     + len(text.encoder.layers) * attention_flops(sequence, sequence, text_width))
        pooled = sequence if hc.task_aware else n  # what each text proxy attends over
        macs += sum(proxy.macs(pooled) for proxy in self.text_proxies) + sum(p.macs(n) for p in self.visual_proxies)
        attention += k * attention_flops(1, pooled, text_width) + (depth - k) * attention_flops(1, n, vision_width)
        macs += self.text_to_vision.macs(k * n, k) + self.vision_to_text.macs((depth - k) * n, depth - k)
        attention += attention_flops(k * n, k, vision_width) + attention_flops((depth - k) * n, depth - k, text_width)
        return {"paper": 2 * macs, "executed": 2 * macs, "attention": attention}
