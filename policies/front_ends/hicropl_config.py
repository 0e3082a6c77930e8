"""The ``hicropl`` front end's config section (``vision.hicropl``: its CLIP and prompt learning), its rules and its
registration (``SPEC``). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from policies.front_ends.encoder_configs import ViTTowerConfig, check_heads, check_patch_grid, check_positive
from policies.front_ends.spec import FrontEndSpec
from runtime.core.yaml_config import ConfigError

# For annotations only: the configs read the registry, which lists this module.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd
    from policies.vision_config import VisionConfig


@dataclass
class ClipTextConfig:
    """A CLIP text encoder (causal, EOT pooling). Defaults: CLIP ViT-B/16's. ``tokenizer`` as for RoBERTa;
    ``vlart-clip-tiny`` has CLIP's layout (674 tokens)."""

    hidden_size: int = 512
    num_layers: int = 12
    num_heads: int = 8
    intermediate_size: int = 2048
    vocab_size: int = 49408
    max_position_embeddings: int = 77
    tokenizer: str = "vlart-clip-tiny"

    def __post_init__(self) -> None:
        check_positive("text", num_layers=self.num_layers, vocab_size=self.vocab_size)
        check_heads("text", self.hidden_size, self.num_heads)


@dataclass
class HiCroPLConfig:
    """HiCroPL on a frozen CLIP: ``num_prompts`` learnable prompt tokens per layer in both branches for the first
    ``prompt_depth`` layers; text -> vision knowledge flow for layers < ``cross_layer``, vision -> text after,
    through layer-specific knowledge proxies and one hierarchical mapper per direction. ``task_aware``: the text
    proxies pool each early layer's hidden states of the prompted instruction (not only the prompts), so the
    early visual prompts, hence the visual tokens, depend on the instruction (an extension; false = the published,
    input-independent flow). Visual tokens: the last layer's patch tokens (196 at 224 px with patch 16).
    Defaults: CLIP ViT-B/16, depth 12, cross layer 6, 16 prompts."""

    vision: ViTTowerConfig = field(default_factory=ViTTowerConfig)
    text: ClipTextConfig = field(default_factory=ClipTextConfig)
    projection_dim: int = 512
    prompt_depth: int = 12
    cross_layer: int = 6
    num_prompts: int = 16
    mapper_heads: int = 8
    task_aware: bool = True

    def __post_init__(self) -> None:
        check_positive("vision.hicropl", projection_dim=self.projection_dim, prompt_depth=self.prompt_depth,
                       num_prompts=self.num_prompts, mapper_heads=self.mapper_heads)
        if self.prompt_depth > min(self.vision.depth, self.text.num_layers):
            raise ConfigError("vision.hicropl.prompt_depth must not exceed the depth of either CLIP encoder")
        if not 1 <= self.cross_layer < self.prompt_depth:
            raise ConfigError("vision.hicropl.cross_layer must be between 1 and prompt_depth - 1")
        for name, width in (("vision", self.vision.hidden_size), ("text", self.text.hidden_size)):
            if width % self.mapper_heads:
                raise ConfigError(f"vision.hicropl.{name}.hidden_size must be divisible by mapper_heads")
        if self.num_prompts + 3 > self.text.max_position_embeddings:
            raise ConfigError("vision.hicropl.num_prompts leaves no room for the instruction in the text context")


def _check(vision: VisionConfig) -> None:
    check_patch_grid(vision.image_size, vision.hicropl.vision)


def _build(config: PolicyConfig) -> FrontEnd:
    from policies.front_ends.hicropl import HiCroPLFrontEnd

    return HiCroPLFrontEnd(config.vision)


SPEC = FrontEndSpec("hicropl", section=HiCroPLConfig, check=_check, build=_build)
