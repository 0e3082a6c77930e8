"""``VisionConfig``, the ``vision:`` section of a model config: what every front end shares, plus the section of each
front end in ``policies.front_ends.registry``, whose rules run when it is built. Names no front end but the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from policies.front_ends.dinosiglip_config import DinoConfig, SiglipConfig
from policies.front_ends.registry import FRONT_ENDS
from policies.front_ends.spec import FrontEndSpec
from runtime.core.yaml_config import ConfigError


def with_front_end_sections(cls: type) -> type:
    """Give ``cls`` (before ``dataclass`` runs) one field per registered front end that has a section: ``<name>``,
    its section's dataclass or None. Fields, so that YAML loading checks the keys inside them as anywhere else."""
    for spec in FRONT_ENDS.values():
        if spec.section is not None:
            cls.__annotations__[spec.name] = Optional[spec.section]
            setattr(cls, spec.name, None)
    return cls


@dataclass
@with_front_end_sections
class VisionConfig:
    """The vision(-language) front end. ``type``: a front end of ``policies.front_ends.registry`` (``dinosiglip``,
    CogACT's DINOv2 + SigLIP, by default), configured by the section of that name when it has one (defaults when
    absent; any other front end's section is refused); ``dino`` / ``siglip`` are the ViT towers of ``dinosiglip``,
    which others may run too. Every front end sees the same square image of ``image_size`` pixels, normalised its own
    way. ``inference_crop_area`` < 1 shows the policy, when it acts, the central fraction of each frame of that area: a
    model trained only on random crops of that area (CogACT's augmentation, 0.9) then sees objects at the scale it
    learned (CogACT's deploy server does the same)."""

    type: str = "dinosiglip"
    image_size: int = 224
    inference_crop_area: float = 1.0
    dino: DinoConfig = field(default_factory=DinoConfig)
    siglip: SiglipConfig = field(default_factory=SiglipConfig)

    def __post_init__(self) -> None:
        if self.type not in FRONT_ENDS:
            raise ConfigError(f"vision.type must be one of {', '.join(FRONT_ENDS)}; got {self.type!r}")
        if not 0.0 < self.inference_crop_area <= 1.0:
            raise ConfigError(f"vision.inference_crop_area must be in (0, 1]; got {self.inference_crop_area!r}")
        for spec in FRONT_ENDS.values():
            if spec.section is None:
                continue
            if spec.name == self.type and getattr(self, spec.name) is None:
                setattr(self, spec.name, spec.section())
            elif spec.name != self.type and getattr(self, spec.name) is not None:
                raise ConfigError(f"vision.{spec.name} is set but vision.type is {self.type!r}")
        self.spec.check(self)

    @property
    def spec(self) -> FrontEndSpec:
        """The registry's entry of ``type``: its section, rules and builder."""
        return FRONT_ENDS[self.type]

    @property
    def num_patches(self) -> int:
        """Patches of the DINOv2 + SigLIP towers (the front end's ``num_tokens`` is what the projector gets)."""
        return (self.image_size // self.dino.patch_size) ** 2

    @property
    def feature_dim(self) -> int:
        """Width of the DINOv2 + SigLIP tokens (the front end's ``token_dim`` is what the projector gets)."""
        return self.dino.hidden_size + self.siglip.hidden_size
