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

from runtime.core.yaml_config import ConfigError, apply_overrides, from_dict, read_yaml_mapping, to_dict


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


FRONT_END_TYPES = ("dinosiglip", "fiber", "bridgetower", "hicropl", "frozenllm")


def _check_positive(where: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{where}.{name} must be >= 1, got {value}")


def _check_heads(where: str, hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads:
        raise ConfigError(f"{where}.hidden_size={hidden_size} must be divisible by {where}.num_heads={num_heads}")


def _check_text_length(where: str, max_text_tokens: int, text: "RobertaTextConfig") -> None:
    # RoBERTa numbers positions from pad_token_id + 1 = 2
    if max_text_tokens + 2 > text.max_position_embeddings:
        raise ConfigError(f"{where}.max_text_tokens={max_text_tokens} needs text.max_position_embeddings >= "
                          f"{max_text_tokens + 2}")


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
        _check_positive("text", num_layers=self.num_layers, vocab_size=self.vocab_size)
        _check_heads("text", self.hidden_size, self.num_heads)


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
        _check_positive("vision.fiber", num_fusion_blocks=self.num_fusion_blocks, output_dim=self.output_dim,
                        max_text_tokens=self.max_text_tokens)
        _check_text_length("vision.fiber", self.max_text_tokens, self.text)
        if self.num_fusion_blocks > min(sum(self.swin.depths), self.text.num_layers):
            raise ConfigError(
                f"vision.fiber.num_fusion_blocks={self.num_fusion_blocks} exceeds the Swin blocks "
                f"({sum(self.swin.depths)}) or the text layers ({self.text.num_layers})"
            )


@dataclass
class ViTTowerConfig:
    """A CLIP-style ViT (CLS token + patches, pre-LN). Defaults: ViT-B/16."""

    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16

    def __post_init__(self) -> None:
        _check_positive("vision tower", depth=self.depth, patch_size=self.patch_size)
        _check_heads("vision tower", self.hidden_size, self.num_heads)


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
        _check_positive("vision.bridgetower", num_cross_layers=self.num_cross_layers,
                        max_text_tokens=self.max_text_tokens)
        _check_text_length("vision.bridgetower", self.max_text_tokens, self.text)
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
        _check_positive("text", num_layers=self.num_layers, vocab_size=self.vocab_size)
        _check_heads("text", self.hidden_size, self.num_heads)


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
        _check_positive("vision.hicropl", projection_dim=self.projection_dim, prompt_depth=self.prompt_depth,
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

    def block_shape(self, llm: "LLMConfig") -> dict[str, int]:
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


@dataclass
class VisionConfig:
    """The vision(-language) front end. ``type``: ``dinosiglip`` (CogACT's DINOv2 + SigLIP, the default), ``fiber``,
    ``bridgetower``, ``hicropl`` or ``frozenllm``, each configured by the section of that name (defaults when
    absent; ``dino`` / ``siglip`` serve ``dinosiglip`` and ``frozenllm``). Every front end sees the same square image
    of ``image_size`` pixels, normalised its own way. ``inference_crop_area`` < 1 shows the policy, when it acts, the
    central fraction of each frame of that area: a model trained only on random crops of that area (CogACT's
    augmentation, 0.9) then sees objects at the scale it learned (CogACT's deploy server does the same)."""

    type: str = "dinosiglip"
    image_size: int = 224
    inference_crop_area: float = 1.0
    dino: DinoConfig = field(default_factory=DinoConfig)
    siglip: SiglipConfig = field(default_factory=SiglipConfig)
    fiber: Optional[FiberConfig] = None
    bridgetower: Optional[BridgeTowerConfig] = None
    hicropl: Optional[HiCroPLConfig] = None
    frozenllm: Optional[FrozenLLMConfig] = None

    def __post_init__(self) -> None:
        if self.type not in FRONT_END_TYPES:
            raise ConfigError(f"vision.type must be one of {', '.join(FRONT_END_TYPES)}; got {self.type!r}")
        if not 0.0 < self.inference_crop_area <= 1.0:
            raise ConfigError(f"vision.inference_crop_area must be in (0, 1]; got {self.inference_crop_area!r}")
        for name, factory in (("fiber", FiberConfig), ("bridgetower", BridgeTowerConfig), ("hicropl", HiCroPLConfig),
                              ("frozenllm", FrozenLLMConfig)):
            if name == self.type and getattr(self, name) is None:
                setattr(self, name, factory())
            elif name != self.type and getattr(self, name) is not None:
                raise ConfigError(f"vision.{name} is set but vision.type is {self.type!r}")
        if self.type == "dinosiglip" or self.type == "frozenllm":
            self._check_vit_towers()
        elif self.type == "fiber":
            swin = self.fiber.swin
            reduction = swin.patch_size * 2 ** (swin.num_stages - 1)
            if self.image_size % reduction:
                raise ConfigError(f"vision.image_size={self.image_size} must be a multiple of swin.patch_size * "
                                  f"2^(stages - 1) = {reduction}")
            window = swin.window_size or self.image_size // 32
            if window < 1 or window > self.image_size // reduction:
                raise ConfigError(f"vision.fiber.swin.window_size={window} must be between 1 and the last stage's "
                                  f"grid, {self.image_size // reduction}")
        else:
            patch = (self.bridgetower or self.hicropl).vision.patch_size
            if self.image_size % patch:
                raise ConfigError(f"vision.image_size={self.image_size} must be a multiple of the patch size {patch}")

    def _check_vit_towers(self) -> None:
        towers = (("dino", self.dino), ("siglip", self.siglip))
        if self.type == "frozenllm" and self.frozenllm.tower != "dinosiglip":
            towers = tuple(t for t in towers if t[0] == self.frozenllm.tower)
        for name, tower in towers:
            if self.image_size % tower.patch_size:
                raise ConfigError(
                    f"vision.image_size={self.image_size} must be a multiple of vision.{name}.patch_size="
                    f"{tower.patch_size}"
                )
            if tower.depth < 2:
                raise ConfigError(f"vision.{name}.depth must be >= 2 (features come from the second-to-last block)")
        if len(towers) == 2 and self.image_size // self.dino.patch_size != self.image_size // self.siglip.patch_size:
            raise ConfigError("vision.dino.patch_size and vision.siglip.patch_size must give the same patch grid")

    @property
    def num_patches(self) -> int:
        """Patches of the DINOv2 + SigLIP towers (the front end's ``num_tokens`` is what the projector gets)."""
        return (self.image_size // self.dino.patch_size) ** 2

    @property
    def feature_dim(self) -> int:
        """Width of the DINOv2 + SigLIP tokens (the front end's ``token_dim`` is what the projector gets)."""
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
    continuation_method: str = "repaint"  # how a chunk continues a robot's plan (RTC): policies/continuation.py

    def __post_init__(self) -> None:
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ConfigError("sampler.num_inference_steps must be between 1 and sampler.num_train_timesteps")
        if self.continuation_method not in ("repaint", "x0_guidance"):
            raise ConfigError(f"sampler.continuation_method: expected repaint or x0_guidance, got "
                              f"{self.continuation_method!r}")


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


# runtime.dtype's names, and the short ones that --dtype / --weights-dtype also take
DTYPES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def dtype_name(value: str, option: str) -> str:
    """``fp16`` or ``float16`` (...) -> the ``runtime.dtype`` name; an error naming ``option`` for anything else."""
    name = DTYPE_ALIASES.get(value, value)
    if name not in DTYPES:
        raise ValueError(f"{option} {value!r}: expected one of {', '.join([*DTYPE_ALIASES, *DTYPES])}")
    return name


@dataclass
class RuntimeConfig:
    """Where and how the weights live. ``init_seed`` makes a randomly initialised model reproducible. ``timing``:
    ``stages`` (per-stage times in every output), ``steps`` (also each DDIM step), ``off``."""

    device: str = "cpu"
    dtype: str = "float32"
    init_seed: int = 0
    timing: str = "stages"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"runtime.dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.timing not in ("stages", "steps", "off"):
            raise ConfigError(f"runtime.core.timing must be stages, steps or off; got {self.timing!r}")


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

    def __post_init__(self) -> None:
        if self.vision.type == "frozenllm":
            self.vision.frozenllm.block_shape(self.llm)

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
