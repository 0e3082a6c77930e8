"""Policy configuration: dataclasses loaded from YAML, unknown keys rejected.

One YAML file describes one model (``configs/models/*.yaml``). Relative paths inside it (dataset statistics,
tokenizer directory) are resolved against the directory of the YAML file, so a checkpoint directory is
self-contained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from runtime.yaml_config import ConfigError, apply_overrides, from_dict, read_yaml_mapping, to_dict


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


@dataclass
class VisionConfig:
    """The DINOv2 + SigLIP front end. Both towers see the same square image of ``image_size`` pixels."""

    image_size: int = 224
    dino: DinoConfig = field(default_factory=DinoConfig)
    siglip: SiglipConfig = field(default_factory=SiglipConfig)

    def __post_init__(self) -> None:
        for name, tower in (("dino", self.dino), ("siglip", self.siglip)):
            if self.image_size % tower.patch_size:
                raise ConfigError(
                    f"vision.image_size={self.image_size} must be a multiple of vision.{name}.patch_size="
                    f"{tower.patch_size}"
                )
            if tower.depth < 2:
                raise ConfigError(f"vision.{name}.depth must be >= 2 (features come from the second-to-last block)")
        if self.image_size // self.dino.patch_size != self.image_size // self.siglip.patch_size:
            raise ConfigError("vision.dino.patch_size and vision.siglip.patch_size must give the same patch grid")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.dino.patch_size) ** 2

    @property
    def feature_dim(self) -> int:
        return self.dino.hidden_size + self.siglip.hidden_size


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


DIT_SIZES = {"S": (6, 384, 4), "B": (12, 768, 12), "L": (24, 1024, 16)}


@dataclass
class ActionHeadConfig:
    """CogACT's DiT action model. ``size`` S/B/L sets depth, hidden size and heads as in CogACT's ``DiT_models``;
    ``custom`` takes them from ``depth``, ``hidden_size`` and ``num_heads``."""

    size: str = "B"
    depth: Optional[int] = None
    hidden_size: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: float = 4.0
    action_dim: int = 7
    chunk_length: int = 16
    condition_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.size == "custom":
            missing = [n for n in ("depth", "hidden_size", "num_heads") if getattr(self, n) is None]
            if missing:
                raise ConfigError(f"action_head.size=custom needs action_head.{', action_head.'.join(missing)}")
        elif self.size in DIT_SIZES:
            preset = dict(zip(("depth", "hidden_size", "num_heads"), DIT_SIZES[self.size]))
            for name, value in preset.items():
                given = getattr(self, name)
                if given is not None and given != value:
                    raise ConfigError(
                        f"action_head.{name}={given} contradicts action_head.size={self.size} ({name}={value}); "
                        "use size: custom to set it"
                    )
                setattr(self, name, value)
        else:
            raise ConfigError(f"action_head.size must be one of S, B, L, custom; got {self.size!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError("action_head.hidden_size must be divisible by action_head.num_heads")


@dataclass
class SamplerConfig:
    """DDIM sampling with classifier-free guidance, as CogACT runs it at inference."""

    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    cfg_scale: float = 1.5

    def __post_init__(self) -> None:
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ConfigError("sampler.num_inference_steps must be between 1 and sampler.num_train_timesteps")


@dataclass
class ActionConfig:
    """Action post-processing: q01/q99 unnormalization from a CogACT ``dataset_statistics.json`` and the adaptive
    action ensemble (horizon 7 for WidowX/Bridge, 2 for the Google robot)."""

    statistics: Optional[str] = None
    unnorm_key: Optional[str] = None
    ensemble: bool = True
    ensemble_horizon: int = 7
    ensemble_alpha: float = 0.1
    control_rate_hz: float = 5.0

    def __post_init__(self) -> None:
        if self.ensemble_horizon < 1:
            raise ConfigError("actions.ensemble_horizon must be >= 1")


@dataclass
class RuntimeConfig:
    """Where and how the weights live. ``init_seed`` makes a randomly initialised model reproducible. ``timing``:
    ``stages`` (per-stage times in every output), ``steps`` (also each DDIM step), ``off``."""

    device: str = "cpu"
    dtype: str = "float32"
    init_seed: int = 0
    timing: str = "stages"

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"runtime.dtype must be float32, bfloat16 or float16; got {self.dtype!r}")
        if self.timing not in ("stages", "steps", "off"):
            raise ConfigError(f"runtime.timing must be stages, steps or off; got {self.timing!r}")


@dataclass
class PolicyConfig:
    """A whole CogACT-style policy."""

    name: str = "cogact"
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    base_dir: Optional[Path] = field(default=None, compare=False, repr=False, metadata={"internal": True})

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative to the YAML file it came from."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(path: str | Path, overrides: Optional[list[str]] = None) -> PolicyConfig:
    """Read a policy YAML file, with optional ``KEY=VALUE`` overrides (``--set``)."""
    path = Path(path)
    data = apply_overrides(read_yaml_mapping(path), overrides or [])
    try:
        config = from_dict(PolicyConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config.base_dir = path.resolve().parent
    return config


def save_config(config: PolicyConfig | dict[str, Any], path: str | Path) -> None:
    data = config.to_dict() if isinstance(config, PolicyConfig) else config
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
