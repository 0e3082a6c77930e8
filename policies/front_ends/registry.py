"""The front-end registry: ``vision.type`` -> its ``FrontEndSpec`` (config section, rules, builder), and
``build_front_end``. Torch-free, so that ``VisionConfig`` reads the front ends' sections and rules from here; each
front end's model code is imported only when that front end is built.

Adding a front end: its model in ``policies/front_ends/<name>.py`` (a ``FrontEnd``), its config section, rules and
``SPEC`` in a torch-free ``<name>_config.py`` beside it, and its ``SPEC`` in ``FRONT_ENDS`` below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.front_ends import bridgetower_config, dinosiglip_config, fiber_config, frozen_llm_config, hicropl_config
from policies.front_ends.spec import FrontEndSpec

# For annotations only: the config reads this registry, so importing it here would make a cycle.
if TYPE_CHECKING:
    from policies.config import PolicyConfig
    from policies.front_ends.base import FrontEnd

# The order is the one ``vision.type``'s error message lists and ``vision``'s sections are saved in.
FRONT_ENDS: dict[str, FrontEndSpec] = {
    spec.name: spec
    for spec in (dinosiglip_config.SPEC, fiber_config.SPEC, bridgetower_config.SPEC, hicropl_config.SPEC,
                 frozen_llm_config.SPEC)
}


def build_front_end(config: PolicyConfig) -> FrontEnd:
    """The front end named by ``config.vision.type``."""
    kind = config.vision.type
    if kind not in FRONT_ENDS:
        raise ValueError(f"vision.type: unknown front end {kind!r}")
    return FRONT_ENDS[kind].build(config)
