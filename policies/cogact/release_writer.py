"""Writing vlart weights in CogACT's release layout: a ``.pt`` of the four groups, or a whole release directory
(``policies.cogact.release_layout``) that ``policies.cogact.release_reader.load_release`` reads back exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from policies.action_config import DIT_SIZES
from policies.cogact.key_rules import cogact_state_dict
from policies.cogact.release_layout import BASE_VLMS, CHECKPOINT_DIR, RELEASE_CONFIG, VLART_CONFIG
from policies.config import PolicyConfig, save_config
from policies.factory import STATISTICS_FILE
from policies.policy import CogACTPolicy
from runtime.core.yaml_config import from_dict


def export_cogact_pt(policy: CogACTPolicy, path: str | Path) -> Path:
    """Write the policy's weights as a CogACT ``.pt``: ``{"model": {group: state dict}}``, float32."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in policy.state_dict().items()}
    torch.save({"model": cogact_state_dict(state, policy.config)}, path)
    return path


def base_vlm_of(config: PolicyConfig) -> Optional[str]:
    """The base VLM whose towers and LLM ``config`` has, or None."""
    for name, shapes in BASE_VLMS.items():
        base = from_dict(PolicyConfig, {"vision": shapes["vision"], "llm": shapes["llm"]})
        base.llm.tokenizer = config.llm.tokenizer
        if base.vision == config.vision and base.llm == config.llm:
            return name
    return None


def dit_type_of(config: PolicyConfig) -> str:
    """``DiT-S``/``DiT-B``/``DiT-L`` when the action head has one of CogACT's sizes, else ``DiT-custom``."""
    head = config.action_head
    for size, preset in DIT_SIZES.items():
        if preset == (head.depth, head.hidden_size, head.num_heads):
            return f"DiT-{size}"
    return "DiT-custom"


def release_meta(config: PolicyConfig) -> dict[str, Any]:
    """The ``config.json`` of an exported release (the fields CogACT's loader and users read)."""
    base_vlm = base_vlm_of(config)
    return {
        "vla": {
            "vla_id": config.name,
            "base_vlm": base_vlm or f"vlart-custom:{config.name}",  # vlart_config.yaml holds the custom shapes
        },
        "diffusion_model_type": dit_type_of(config),
        "future_action_window_size": config.action_head.chunk_length - 1,
        "past_action_window_size": 0,
        "repeated_diffusion_steps": 8,
        "exported_by": "vlart",
    }


def export_release(policy: CogACTPolicy, directory: str | Path) -> Path:
    """Write a whole release directory that ``load_release`` (and a user of CogACT's layout) reads back:
    ``checkpoints/<name>.pt``, ``config.json``, ``dataset_statistics.json``, tokenizer files, ``vlart_config.yaml``."""
    directory = Path(directory)
    config = policy.config
    if config.actions.statistics is None:
        raise ValueError(f"{config.name}: no actions.statistics file; a release needs {STATISTICS_FILE}")
    directory.mkdir(parents=True, exist_ok=True)
    export_cogact_pt(policy, directory / CHECKPOINT_DIR / f"{config.name}.pt")
    (directory / RELEASE_CONFIG).write_text(json.dumps(release_meta(config), indent=2) + "\n")
    shutil.copyfile(config.resolve_path(config.actions.statistics), directory / STATISTICS_FILE)
    tokenizer = policy.language_model.tokenizer
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    saved = config.to_dict()
    saved["actions"]["statistics"] = STATISTICS_FILE
    saved["llm"]["tokenizer"] = "." if tokenizer is not None else None
    save_config(saved, directory / VLART_CONFIG)
    return directory
