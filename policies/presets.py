"""Presets: named combinations of the accelerations in ``policies.acceleration``, one YAML file each
(``configs/presets/*.yaml``). A preset is applied to a freshly built policy, in place.

Layer and MLP pruning need a calibration plan (``vlart calibrate``); depth targets are written for the 32-layer base
shape and scale with the model's depth (22 of 32 -> 11 of 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from policies.acceleration.calibration import MLP_RULES, CalibrationPlan
from policies.acceleration.dit_cache import DiTFeatureCache
from policies.acceleration.pruning import drop_layers, prune_mlp_channels, scaled_depth
from policies.acceleration.token_selection import FastVSelector, TaskAwareSelector
from policies.policy import CogACTPolicy
from runtime.core.resources import config_file
from runtime.core.yaml_config import ConfigError, from_dict, read_mapping


@dataclass
class LayerPruning:
    keep: int
    reference_depth: int = 32


@dataclass
class MLPPruning:
    keep_ratio: float = 0.75
    rule: str = "activation"

    def __post_init__(self) -> None:
        if self.rule not in MLP_RULES:
            raise ConfigError(f"mlp.rule must be one of {', '.join(MLP_RULES)}, got {self.rule!r}")


@dataclass
class TokenSelection:
    method: str = "task_aware"
    keep: int = 56
    key: int = 4
    alpha: float = 0.5
    layer: int = 1
    # keep is written for a model with this many visual tokens (CogACT-Base: 256) and scales with the model's own
    # count, as layers.keep scales with depth: the same preset keeps the same fraction on every model size
    reference_tokens: int = 256

    def __post_init__(self) -> None:
        if self.method not in ("task_aware", "fastv"):
            raise ConfigError(f"tokens.method must be task_aware or fastv, got {self.method!r}")
        if not 1 <= self.keep <= self.reference_tokens:
            raise ConfigError(f"tokens.keep must be in [1, reference_tokens={self.reference_tokens}], got {self.keep}")

    def scaled_keep(self, num_tokens: int) -> int:
        return max(1, min(num_tokens, round(self.keep * num_tokens / self.reference_tokens)))

    def selector(self, num_tokens: int) -> FastVSelector | TaskAwareSelector:
        """The selector for a model with ``num_tokens`` visual tokens."""
        keep = self.scaled_keep(num_tokens)
        if self.method == "fastv":
            return FastVSelector(keep=keep, layer=self.layer)
        return TaskAwareSelector(keep=keep, key=self.key, alpha=self.alpha, layer=self.layer)


@dataclass
class DiTCaching:
    interval: int = 5


@dataclass
class PresetConfig:
    name: str
    description: str = ""
    layers: Optional[LayerPruning] = None
    mlp: Optional[MLPPruning] = None
    tokens: Optional[TokenSelection] = None
    dit_cache: Optional[DiTCaching] = None

    @property
    def needs_calibration(self) -> bool:
        return self.layers is not None or self.mlp is not None


def available_presets() -> list[str]:
    """The names of the presets shipped in ``configs/presets/``."""
    return sorted(p.stem for p in config_file("presets").glob("*.yaml"))


def load_preset(name_or_path: str) -> PresetConfig:
    """A preset by name (``configs/presets/NAME.yaml``, shipped with vlart) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = config_file("presets").joinpath(f"{name_or_path}.yaml")
    if not path.is_file():
        raise ValueError(f"--preset: unknown preset {name_or_path!r}; available: {', '.join(available_presets())}")
    try:
        return from_dict(PresetConfig, read_mapping(path, "config file"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def apply_preset(policy: CogACTPolicy, preset: PresetConfig, plan: Optional[CalibrationPlan] = None) -> CogACTPolicy:
    """Apply ``preset`` to ``policy`` in place (MLP channels first: the plan indexes the original layers)."""
    if preset.needs_calibration:
        if plan is None:
            raise ValueError(f"preset {preset.name!r} prunes the LLM and needs a calibration plan (vlart calibrate)")
        if preset.mlp is not None and plan.mlp_rule not in (preset.mlp.rule, "none"):
            raise ValueError(f"the calibration plan ranks MLP channels by {plan.mlp_rule!r}; preset {preset.name!r} "
                             f"wants {preset.mlp.rule!r} (recalibrate with --mlp-rule {preset.mlp.rule})")
        if plan.num_layers != len(policy.language_model.llm.model.layers):
            raise ValueError(f"the calibration plan scores {plan.num_layers} layers; this model has "
                             f"{len(policy.language_model.llm.model.layers)} (a plan for another model?)")
    if preset.mlp is not None:
        prune_mlp_channels(policy, plan, preset.mlp.keep_ratio)
    if preset.layers is not None:
        depth = len(policy.language_model.llm.model.layers)
        keep = scaled_depth(preset.layers.keep, preset.layers.reference_depth, depth)
        drop_layers(policy, plan.layers_to_drop(keep))
    if preset.tokens is not None:
        policy.language_model.token_selector = preset.tokens.selector(policy.vision.num_tokens)
    if preset.dit_cache is not None:
        policy.action_head.feature_cache = DiTFeatureCache(preset.dit_cache.interval)
    policy.preset = preset.name
    return policy
