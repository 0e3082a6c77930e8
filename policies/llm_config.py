"""``LLMConfig``, the ``llm:`` section of a model config: the LLaMA decoder that reads the visual tokens and the
prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from runtime.core.yaml_config import ConfigError


@dataclass
class LLMConfig:
    """LLaMA decoder (transformers ``LlamaForCausalLM``); CogACT-Base: LLaMA-2-7B with a 32064-row vocabulary.

    ``tokenizer`` is a directory holding tokenizer files (relative to the YAML file), the name of a tokenizer
    shipped with vlart (``vlart-tiny``), or null when the model is only inspected (``vlart info``).
    """

    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: Optional[int] = None
    intermediate_size: int = 11008
    vocab_size: int = 32064
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tokenizer: Optional[str] = None

    def __post_init__(self) -> None:
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"llm.hidden_size={self.hidden_size} must be divisible by llm.num_heads={self.num_heads}")
