"""The ``bridgetower`` front end's config section (``vision.bridgetower``: its ViT and RoBERTa towers, the
cross-modal layers), its rules and its registration (``SPEC``). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from policies.front_ends.encoder_configs import (
    RobertaTextConfig,
    ViTTowerConfig,
    check_patch_grid,
    check_positive,
    check_text_length,
)
from policies.front_ends.spec import FrontEndSpec
from runtime.core.yaml_config import ConfigError

# For annotations only: the configs read the registry, which lists this module.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd
    from policies.vision_config import VisionConfig


@dataclass
class BridgeTowerConfig:
    """BridgeTower (transformers ``BridgeTowerModel``, eager attention): uni-modal CLIP-ViT and RoBERTa towers of the
    same depth, whose top ``num_cross_layers`` layers feed as many two-stream cross-modal layers through bridge
    layers. Visual tokens: the cross-modal image stream, CLS included (197 at 224 px with patch 16). The cross-modal
    layers have the text encoder's width. Defaults: BridgeTower-base (ViT-B/16, RoBERTa-base, 6 cross layers)."""

    vision: ViTTowerConfig = field(default_factory=ViTTowerConfig)
    text: RobertaTextConfig = field(default_factory=RobertaTextConfig)
    num_cross_layers: int = 6
    max_text_tokens: int = 50

    def __post_init__(self) -> None:
        check_positive("vision.bridgetower", num_cross_layers=self.num_cross_layers,
                       max_text_tokens=self.max_text_tokens)
        check_text_length("vision.bridgetower", self.max_text_tokens, self.text)
        if self.vision.depth != self.text.num_layers:
            raise ConfigError("vision.bridgetower: vision.depth and text.num_layers must be equal (BridgeTowerModel "
                              "bridges layer i of both towers into the same cross-modal layer)")
        if self.num_cross_layers > self.text.num_layers:
            raise ConfigError("vision.bridgetower.num_cross_layers must not exceed the uni-modal depth")
        if self.vision.hidden_size % 64:
            raise ConfigError("vision.bridgetower.vision.hidden_size must be a multiple of 64 (BridgeTower's ViT "
                              "uses hidden_size / 64 heads)")
        if self.vision.num_heads != self.vision.hidden_size // 64:
            raise ConfigError(f"vision.bridgetower.vision.num_heads must be hidden_size / 64 = "
                              f"{self.vision.hidden_size // 64}")
        if self.vision.intermediate_size != 4 * self.vision.hidden_size:
            raise ConfigError(f"vision.bridgetower.vision.intermediate_size must be 4 * hidden_size = "
                              f"{4 * self.vision.hidden_size} (BridgeTower's ViT MLP)")


def _check(vision: VisionConfig) -> None:
    check_patch_grid(vision.image_size, vision.bridgetower.vision)


def _build(config: PolicyConfig) -> FrontEnd:
    from policies.front_ends.bridgetower import BridgeTowerFrontEnd

    return BridgeTowerFrontEnd(config.vision)


SPEC = FrontEndSpec("bridgetower", section=BridgeTowerConfig, check=_check, build=_build)
