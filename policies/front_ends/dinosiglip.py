"""The DINOv2 + SigLIP vision front end of CogACT (Prismatic ``dinosiglip-vit-so-224px``).

Both towers are transformers models built at full depth, so the module holds every tensor of CogACT's vision
backbone (final norms and SigLIP's attention-pool head included, unused as in CogACT). Features are the raw output
of the second-to-last block with prefix tokens dropped; the last block is never run because CogACT discards its
output. ``DinoSigLIPFrontEnd`` is the ``dinosiglip`` front end; with ``towers`` set to one tower it is the single-ViT
host of the frozen-LLM front end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel, SiglipVisionConfig, SiglipVisionModel

from policies.flops import vit_tower_flops
from policies.front_ends.base import FrontEnd, FrontEndOutput
from policies.image_transforms import preprocess_images

# For annotations only: the config reads the front-end registry, which builds this module.
if TYPE_CHECKING:
    from policies.vision_config import VisionConfig


def build_dino(config: VisionConfig) -> Dinov2WithRegistersModel:
    dino = config.dino
    hf_config = Dinov2WithRegistersConfig(
        hidden_size=dino.hidden_size,
        num_hidden_layers=dino.depth,
        num_attention_heads=dino.num_heads,
        mlp_ratio=dino.mlp_ratio,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        image_size=config.image_size,
        patch_size=dino.patch_size,
        num_register_tokens=dino.num_register_tokens,
        layerscale_value=dino.layerscale_init,
        qkv_bias=True,
        use_swiglu_ffn=False,
        attn_implementation="sdpa",
    )
    return Dinov2WithRegistersModel(hf_config)


def build_siglip(config: VisionConfig) -> SiglipVisionModel:
    siglip = config.siglip
    hf_config = SiglipVisionConfig(
        hidden_size=siglip.hidden_size,
        intermediate_size=siglip.intermediate_size,
        num_hidden_layers=siglip.depth,
        num_attention_heads=siglip.num_heads,
        image_size=config.image_size,
        patch_size=siglip.patch_size,
        hidden_act="gelu",  # timm's SigLIP uses exact GELU; transformers defaults to the tanh approximation
        layer_norm_eps=1e-6,
        vision_use_head=True,
        attn_implementation="sdpa",
    )
    return SiglipVisionModel(hf_config)


class DinoSigLIPFrontEnd(FrontEnd):
    """RGB frames -> visual tokens (B, N, D) with N = (image_size / patch)^2 (256 at 224 px) and
    D = dino.hidden_size + siglip.hidden_size (2176 at base size). Reads no instruction; pooled = mean of tokens.
    ``towers`` keeps only some of the towers (the frozen-LLM front end on one ViT)."""

    def __init__(self, config: VisionConfig, towers: tuple[str, ...] = ("dino", "siglip")) -> None:
        super().__init__()
        if not towers or set(towers) - {"dino", "siglip"}:
            raise ValueError(f"towers: expected dino and/or siglip, got {towers!r}")
        self.config = config
        self.towers = tuple(t for t in ("dino", "siglip") if t in towers)
        if "dino" in self.towers:
            self.dino = build_dino(config)
        if "siglip" in self.towers:
            self.siglip = build_siglip(config)
        self.image_size = config.image_size
        self.num_tokens = config.num_patches
        self.token_dim = sum(getattr(config, t).hidden_size for t in self.towers)
        self.pooled_dim = self.token_dim
        self._dino_prefix = 1 + config.dino.num_register_tokens

    def preprocess(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """(H, W, 3) uint8 frames -> ``{"dino", "siglip"}`` pixel tensors (B, 3, S, S) on the module's device."""
        device = self.device
        pixels = preprocess_images(images, self.config.image_size)
        return {k: pixels[k].to(device) for k in self.towers}

    def dino_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, N, dino.hidden_size): block depth-2 output, no final norm, CLS and registers dropped."""
        hidden = self.dino.embeddings(pixels.to(self.dino.dtype))
        for layer in self.dino.encoder.layer[:-1]:
            hidden = layer(hidden)
        return hidden[:, self._dino_prefix :]

    def siglip_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, N, siglip.hidden_size): block depth-2 output, no final norm."""
        hidden = self.siglip.embeddings(pixels.to(self.siglip.dtype))
        for layer in self.siglip.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        return hidden

    def encode(self, pixel_values: dict[str, torch.Tensor], text: None = None) -> FrontEndOutput:
        """``{"dino": (B,3,S,S), "siglip": (B,3,S,S)}`` -> tokens (B, N, D), no mask, pooled (B, D)."""
        features = {"dino": self.dino_features, "siglip": self.siglip_features}
        tokens = torch.cat([features[t](pixel_values[t]) for t in self.towers], -1)
        return FrontEndOutput(tokens=tokens, mask=None, pooled=tokens.mean(dim=1))

    def flop_count(self, text_tokens: int = 0) -> dict[str, int]:
        patches = self.num_tokens
        towers = []
        if "dino" in self.towers:
            towers.append(vit_tower_flops(self.dino.encoder.layer, self.dino.embeddings.patch_embeddings.projection,
                                          patches + self._dino_prefix, patches, self.config.dino.hidden_size))
        if "siglip" in self.towers:
            towers.append(vit_tower_flops(self.siglip.encoder.layers, self.siglip.embeddings.patch_embedding,
                                          patches, patches, self.config.siglip.hidden_size))
        return {key: sum(t[key] for t in towers) for key in ("paper", "executed", "attention")}
