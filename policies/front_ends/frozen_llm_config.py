"""The ``frozenllm`` front end's config section (``vision.frozenllm``: which ViT tokens, which LLM block), its rules
and its registration (``SPEC``). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from policies.front_ends.dinosiglip_config import check_vit_towers
from policies.front_ends.spec import FrontEndSpec
from policies.llm_config import LLMConfig
from runtime.core.yaml_config import ConfigError

# For annotations only: the configs read the registry, which lists this module.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd
    from policies.vision_config import VisionConfig


@dataclass
class FrozenLLMConfig:
    """A frozen LLaMA decoder block as a visual encoder layer (LM4VisualEncoding), after the ViT tokens of ``tower``
    (``dinosiglip``: the DINOv2 + SigLIP tokens of ``vision.dino`` / ``vision.siglip``; or one of them):
    ViT -> Linear -> LlamaDecoderLayer (no rotary, bidirectional) -> RMSNorm -> Linear. ``llm_layer``: copy the
    block's weights from that layer of the policy's own LLM (negative counts from the end; null: random).
    Null shape fields take the policy LLM's."""

    tower: str = "dinosiglip"
    llm_layer: Optional[int] = -1
    hidden_size: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    rms_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.tower not in ("dinosiglip", "dino", "siglip"):
            raise ConfigError(f"vision.frozenllm.tower must be dinosiglip, dino or siglip; got {self.tower!r}")

    def block_shape(self, llm: LLMConfig) -> dict[str, int]:
        """The decoder block's shape: these fields, the LLM's where null; the LLM's when copied from it."""
        heads = self.num_heads if self.num_heads is not None else llm.num_heads
        shape = {
            "hidden_size": self.hidden_size if self.hidden_size is not None else llm.hidden_size,
            "num_heads": heads,
            "num_kv_heads": self.num_kv_heads if self.num_kv_heads is not None else (
                llm.num_kv_heads if self.num_heads is None else heads),
            "intermediate_size": (self.intermediate_size if self.intermediate_size is not None
                                  else llm.intermediate_size),
        }
        if self.llm_layer is not None:
            if not -llm.num_layers <= self.llm_layer < llm.num_layers:
                raise ConfigError(f"vision.frozenllm.llm_layer={self.llm_layer} is not a layer of the LLM "
                                  f"({llm.num_layers} layers)")
            own = {"hidden_size": llm.hidden_size, "num_heads": llm.num_heads, "num_kv_heads": llm.num_kv_heads,
                   "intermediate_size": llm.intermediate_size}
            differ = [k for k in shape if shape[k] != own[k]]
            if differ:
                raise ConfigError(f"vision.frozenllm: {', '.join(differ)} must be the LLM's (or null) when the block "
                                  "is copied from llm_layer")
        if shape["hidden_size"] % shape["num_heads"] or shape["num_heads"] % shape["num_kv_heads"]:
            raise ConfigError("vision.frozenllm: hidden_size must be divisible by num_heads, num_heads by "
                              "num_kv_heads")
        return shape


def _check(vision: VisionConfig) -> None:
    tower = vision.frozenllm.tower
    check_vit_towers(vision, ("dino", "siglip") if tower == "dinosiglip" else (tower,))


def _check_llm(vision: VisionConfig, llm: LLMConfig) -> None:
    vision.frozenllm.block_shape(llm)


def _build(config: PolicyConfig) -> FrontEnd:
    from policies.front_ends.frozen_llm import FrozenLLMFrontEnd

    return FrozenLLMFrontEnd(config.vision, config.llm)


SPEC = FrontEndSpec("frozenllm", section=FrozenLLMConfig, check=_check, build=_build, check_llm=_check_llm)
