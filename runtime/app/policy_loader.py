"""What every command does with ``--model``, ``--preset``, ``--plan`` and ``--compile``: build or load the policy,
apply the preset (calibrating on the spot when the preset prunes the LLM and no plan file is given), then compile it
when ``runtime.compile`` is on."""

from __future__ import annotations

import logging
from typing import Optional

from policies.acceleration.calibration import CalibrationPlan, calibrate
from policies.compilation import compile_policy
from policies.loading import load_policy
from policies.policy import CogACTPolicy
from policies.presets import apply_preset, load_preset
from runtime.app.calibration_data import calibration_observations

log = logging.getLogger("vlart.runtime")
DEFAULT_CALIBRATION_FRAMES = 16


def load_policy_with_preset(
    model: str,
    preset: Optional[str] = None,
    plan_path: Optional[str] = None,
    unnorm_key: Optional[str] = None,
    device: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES,
) -> CogACTPolicy:
    policy = load_policy(model, unnorm_key=unnorm_key, device=device, overrides=overrides)
    if preset is not None and preset != "baseline":
        apply_named_preset(policy, preset, plan_path, calibration_frames)
    if policy.config.runtime.compile:
        compile_policy(policy)
    return policy


def apply_named_preset(policy: CogACTPolicy, preset: str, plan_path: Optional[str], calibration_frames: int) -> None:
    config = load_preset(preset)
    plan = CalibrationPlan.load(plan_path) if plan_path else None
    if config.needs_calibration and plan is None:
        observations, source = calibration_observations(calibration_frames, policy)
        log.info("calibrating %s for preset %s on %d observations from %s", policy.config.name, config.name,
                 len(observations), source)
        plan = calibrate(policy, observations, mlp_rule=config.mlp.rule if config.mlp else "activation")
    apply_preset(policy, config, plan)
