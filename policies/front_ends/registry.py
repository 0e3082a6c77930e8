"""``build_front_end``: the front end named by ``vision.type``. Each implementation is imported only when chosen,
since each pulls in its own transformers models."""

from __future__ import annotations

from policies.config import PolicyConfig
from policies.front_ends.base import FrontEnd


def build_front_end(config: PolicyConfig) -> FrontEnd:
    """The front end named by ``config.vision.type``."""
    kind = config.vision.type
    if kind == "dinosiglip":
        from policies.front_ends.dinosiglip import DinoSigLIPFrontEnd

        return DinoSigLIPFrontEnd(config.vision)
    if kind == "fiber":
        from policies.front_ends.fiber import FiberFrontEnd

        return FiberFrontEnd(config.vision)
    if kind == "bridgetower":
        from policies.front_ends.bridgetower import BridgeTowerFrontEnd

        return BridgeTowerFrontEnd(config.vision)
    if kind == "hicropl":
        from policies.front_ends.hicropl import HiCroPLFrontEnd

        return HiCroPLFrontEnd(config.vision)
    if kind == "frozenllm":
        from policies.front_ends.frozen_llm import FrozenLLMFrontEnd

        return FrozenLLMFrontEnd(config.vision, config.llm)
    raise ValueError(f"vision.type: unknown front end {kind!r}")
