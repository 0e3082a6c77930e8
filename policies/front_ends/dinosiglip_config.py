"""The ``dinosiglip`` front end's config and registration (``SPEC``): the DINOv2 and SigLIP towers (``vision.dino`` and
``vision.siglip``, which the ``frozenllm`` front end runs too) and their rules. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from policies.front_ends.spec import FrontEndSpec
from runtime.core.yaml_config import ConfigError

# For annotations only: the configs read the registry, which lists this module.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd
    from policies.vision_config import VisionConfig


@dataclass
class DinoConfig:
    """DINOv2-with-registers tower (timm ``vit_*_patch14_reg4_dinov2``); CogACT-Base: ViT-L/14, 4 registers."""

    hidden_size: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: int = 4
    patch_size: int = 14
    num_register_tokens: int = 4
    layerscale_init: float = 1e-5


@dataclass
class SiglipConfig:
    """SigLIP vision tower (timm ``vit_so400m_patch14_siglip_224``); CogACT-Base: So400m/14."""

    hidden_size: int = 1152
    depth: int = 27
    num_heads: int = 16
    intermediate_size: int = 4304
    patch_size: int = 14


def check_vit_towers(vision: VisionConfig, towers: tuple[str, ...]) -> None:
    """The towers named in ``towers`` (``dino``, ``siglip`` or both) fit ``vision.image_size``; two give one grid."""
    for name in towers:
        tower = getattr(vision, name)
        if vision.image_size % tower.patch_size:
            raise ConfigError(
                f"vision.image_size={vision.image_size} must be a multiple of vision.{name}.patch_size="
                f"{tower.patch_size}"
            )
        if tower.depth < 2:
            raise ConfigError(f"vision.{name}.depth must be >= 2 (features come from the second-to-last block)")
    grid = vision.image_size // vision.dino.patch_size
    if len(towers) == 2 and grid != vision.image_size // vision.siglip.patch_size:
        raise ConfigError("vision.dino.patch_size and vision.siglip.patch_size must give the same patch grid")


def _check(vision: VisionConfig) -> None:
    check_vit_towers(vision, ("dino", "siglip"))


def _build(config: PolicyConfig) -> FrontEnd:
    from policies.front_ends.dinosiglip import DinoSigLIPFrontEnd

    return DinoSigLIPFrontEnd(config.vision)


SPEC = FrontEndSpec("dinosiglip", section=None, check=_check, build=_build)
