"""The model config's sections on actions: ``action_head:`` (the DiT, ``ActionHeadConfig``), ``sampler:`` (DDIM with
guidance, ``SamplerConfig``) and ``actions:`` (unnormalisation and ensemble, ``ActionConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from runtime.core.yaml_config import ConfigError

DIT_SIZES = {"S": (6, 384, 4), "B": (12, 768, 12), "L": (24, 1024, 16)}
CONTINUATION_METHODS = ("repaint", "x0_guidance", "conditioning")


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
    # The most leading rows given as committed in training (`vlart train --max-committed-rows`); 0: never
    max_committed_rows: int = 0

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
        if not 0 <= self.max_committed_rows <= self.chunk_length:
            raise ConfigError(f"action_head.max_committed_rows: expected 0..{self.chunk_length} (the chunk length), "
                              f"got {self.max_committed_rows}")


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
        if self.continuation_method not in CONTINUATION_METHODS:
            raise ConfigError(f"sampler.continuation_method: expected one of {', '.join(CONTINUATION_METHODS)}, got "
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
