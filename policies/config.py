"""``PolicyConfig``, a whole model's config, and its YAML file (``load_config``, ``save_config``); unknown keys are
rejected.

One YAML file describes one model (``configs/models/*.yaml``). Relative paths inside it (dataset statistics,
tokenizer directory) are resolved against the directory of the YAML file, so a checkpoint directory is
self-contained. Each section's dataclass lives in the module of its subject: ``vision_config`` (with each front end's
own section in ``policies.front_ends``), ``llm_config``, ``action_config``, ``runtime_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from policies.action_config import ActionConfig, ActionHeadConfig, SamplerConfig
from policies.llm_config import LLMConfig
from policies.runtime_config import RuntimeConfig
from policies.vision_config import VisionConfig
from runtime.core.yaml_config import ConfigError, apply_overrides, from_dict, read_mapping, to_dict


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
        self.vision.spec.check_llm(self.vision, self.llm)
        if self.sampler.continuation_method == "conditioning" and self.action_head.max_committed_rows < 1:
            raise ConfigError("sampler.continuation_method=conditioning: this action head was never trained with "
                              "committed rows (action_head.max_committed_rows is 0); use repaint or x0_guidance, or "
                              "fine-tune with `vlart train --max-committed-rows D`")

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
    data = apply_overrides(read_mapping(path, "config file"), overrides or [])
    try:
        config = from_dict(PolicyConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config.base_dir = path.resolve().parent
    return config


def save_config(config: PolicyConfig | dict[str, Any], path: str | Path) -> None:
    data = config.to_dict() if isinstance(config, PolicyConfig) else config
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
