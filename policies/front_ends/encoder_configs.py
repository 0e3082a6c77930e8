"""What several front ends' config sections share: the RoBERTa text encoder and CLIP-style ViT configs, and the value
checks their rules use. Torch-free, like every ``*_config`` module of ``policies.front_ends``."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.core.yaml_config import ConfigError


def check_positive(where: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{where}.{name} must be >= 1, got {value}")


def check_heads(where: str, hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads:
        raise ConfigError(f"{where}.hidden_size={hidden_size} must be divisible by {where}.num_heads={num_heads}")


def check_text_length(where: str, max_text_tokens: int, text: RobertaTextConfig) -> None:
    # RoBERTa numbers positions from pad_token_id + 1 = 2
    if max_text_tokens + 2 > text.max_position_embeddings:
        raise ConfigError(f"{where}.max_text_tokens={max_text_tokens} needs text.max_position_embeddings >= "
                          f"{max_text_tokens + 2}")


def check_patch_grid(image_size: int, tower: ViTTowerConfig) -> None:
    """``vision.image_size`` is a whole number of the ViT's patches."""
    if image_size % tower.patch_size:
        raise ConfigError(f"vision.image_size={image_size} must be a multiple of the patch size {tower.patch_size}")


@dataclass
class RobertaTextConfig:
    """A RoBERTa text encoder (transformers ``RobertaModel`` layers); defaults: roberta-base. ``tokenizer``: a
    directory (relative to the YAML file) or a tokenizer shipped with vlart (``vlart-roberta-tiny``: RoBERTa's
    special-token layout, 445 tokens; a pretrained encoder needs its own tokenizer files)."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 50265
    max_position_embeddings: int = 514
    tokenizer: str = "vlart-roberta-tiny"

    def __post_init__(self) -> None:
        check_positive("text", num_layers=self.num_layers, vocab_size=self.vocab_size)
        check_heads("text", self.hidden_size, self.num_heads)


@dataclass
class ViTTowerConfig:
    """A CLIP-style ViT (CLS token + patches, pre-LN). Defaults: ViT-B/16."""

    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16

    def __post_init__(self) -> None:
        check_positive("vision tower", depth=self.depth, patch_size=self.patch_size)
        check_heads("vision tower", self.hidden_size, self.num_heads)
