"""``FrontEndSpec``: what vlart knows of a front end before building it, one per front end in
``policies.front_ends.registry``. Torch-free, so that loading a config imports no model code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

# For annotations only: the configs read the registry, so importing them here would make a cycle.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd
    from policies.llm_config import LLMConfig
    from policies.vision_config import VisionConfig


def no_llm_rule(vision: VisionConfig, llm: LLMConfig) -> None:
    """``check_llm`` of a front end whose shape does not depend on the policy's LLM."""


@dataclass(frozen=True)
class FrontEndSpec:
    """One front end. ``name``: its ``vision.type``. ``section``: the dataclass of its own YAML section,
    ``vision.<name>`` (defaults when the front end is chosen and the section absent, refused when another front end is
    chosen), or None when it has none. ``check``: its rules between that section and the rest of ``vision`` (image
    size against its patch grid...), run when ``VisionConfig`` is built; ``check_llm``: its rules against the policy's
    LLM, run when ``PolicyConfig`` is built. ``build``: the front end's module, which it imports only then, since each
    pulls in its own transformers models."""

    name: str
    section: Optional[type]
    check: Callable[[VisionConfig], None]
    build: Callable[[PolicyConfig], FrontEnd]
    check_llm: Callable[[VisionConfig, LLMConfig], None] = no_llm_rule
