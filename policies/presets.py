"""Named accelerations applied to a built policy (``--preset``). Each preset changes the policy in place and is
applied to a freshly built model, so presets never stack by accident."""

from __future__ import annotations

from typing import Callable

from policies.policy import CogACTPolicy

PresetFn = Callable[[CogACTPolicy], None]


def _baseline(policy: CogACTPolicy) -> None:
    """The model as configured: no acceleration."""


PRESETS: dict[str, PresetFn] = {"baseline": _baseline}


def apply_preset(policy: CogACTPolicy, name: str) -> CogACTPolicy:
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"--preset: unknown preset {name!r}; available: {', '.join(PRESETS)}") from None
    preset(policy)
    return policy
