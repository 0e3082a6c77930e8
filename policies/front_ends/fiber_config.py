"""The ``fiber`` front end's config section (``vision.fiber``: its Swin and RoBERTa, the fusion), its rules and its
registration (``SPEC``). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from policies.front_ends.encoder_configs import RobertaTextConfig, check_positive, check_text_length
from policies.front_ends.spec import FrontEndSpec
from runtime.core.yaml_config import ConfigError

# For annotations only: the configs read the registry, which lists this module.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd
    from policies.vision_config import VisionConfig


@dataclass
class SwinTowerConfig:
    """FIBER's image backbone (transformers ``SwinModel``); defaults: Swin-B/4. ``window_size`` null = image_size / 32,
    as FIBER forces it (7 at 224 px)."""

    patch_size: int = 4
    embed_dim: int = 128
    depths: list[int] = field(default_factory=lambda: [2, 2, 18, 2])
    num_heads: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    window_size: Optional[int] = None
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for name in ("depths", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= 1 for v in value):
                raise ConfigError(f"swin.{name} must be a non-empty list of positive integers, got {value!r}")
        if len(self.depths) != len(self.num_heads):
            raise ConfigError("swin.depths and swin.num_heads must have one entry per stage")
        for stage, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2**stage) % heads:
                raise ConfigError(f"swin: stage {stage} width {self.embed_dim * 2**stage} is not divisible by "
                                  f"num_heads[{stage}]={heads}")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2**stage


@dataclass
class FiberConfig:
    """FIBER (coarse-grained): gated cross-attention in the top ``num_fusion_blocks`` Swin blocks and RoBERTa layers.
    Visual tokens: the last Swin stage ((image_size / 32)^2 = 49 at 224 px) -> Linear -> LayerNorm, ``output_dim``
    wide. Defaults: FIBER-B (Swin-B, RoBERTa-base, 6 fused blocks, 40 text tokens)."""

    swin: SwinTowerConfig = field(default_factory=SwinTowerConfig)
    text: RobertaTextConfig = field(default_factory=RobertaTextConfig)
    num_fusion_blocks: int = 6
    output_dim: int = 768
    max_text_tokens: int = 40

    def __post_init__(self) -> None:
        check_positive("vision.fiber", num_fusion_blocks=self.num_fusion_blocks, output_dim=self.output_dim,
                       max_text_tokens=self.max_text_tokens)
        check_text_length("vision.fiber", self.max_text_tokens, self.text)
        if self.num_fusion_blocks > min(sum(self.swin.depths), self.text.num_layers):
            raise ConfigError(
                f"vision.fiber.num_fusion_blocks={self.num_fusion_blocks} exceeds the Swin blocks "
                f"({sum(self.swin.depths)}) or the text layers ({self.text.num_layers})"
            )


def _check(vision: VisionConfig) -> None:
    swin = vision.fiber.swin
    reduction = swin.patch_size * 2 ** (swin.num_stages - 1)
    if vision.image_size % reduction:
        raise ConfigError(f"vision.image_size={vision.image_size} must be a multiple of swin.patch_size * "
                          f"2^(stages - 1) = {reduction}")
    window = swin.window_size or vision.image_size // 32
    if window < 1 or window > vision.image_size // reduction:
        raise ConfigError(f"vision.fiber.swin.window_size={window} must be between 1 and the last stage's "
                          f"grid, {vision.image_size // reduction}")


def _build(config: PolicyConfig) -> FrontEnd:
    from policies.front_ends.fiber import FiberFrontEnd

    return FiberFrontEnd(config.vision)


SPEC = FrontEndSpec("fiber", section=FiberConfig, check=_check, build=_build)
