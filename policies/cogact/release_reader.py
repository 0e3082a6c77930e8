"""Reading a CogACT release directory (layout in ``policies.cogact.release_layout``) into a vlart policy: its
config (``vlart_config.yaml`` or the base VLM plus the DiT size read off the tensors), a layout check before any
weight is allocated, and the copy of the memory-mapped ``.pt`` into the model group by group."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from policies.action_config import DIT_SIZES
from policies.cogact.key_rules import (
    ACTION, GROUPS, build_rules, check_rules_cover, describe_keys, expected_layout, to_vlart,
)
from policies.cogact.mapped_checkpoint import file_mappings, read_checkpoint, release_mapped_pages
from policies.cogact.release_layout import BASE_VLMS, CHECKPOINT_DIR, RELEASE_CONFIG, TOKENIZER_FILES, VLART_CONFIG
from policies.config import PolicyConfig, load_config
from policies.factory import STATISTICS_FILE, build_policy
from policies.policy import CogACTPolicy
from runtime.core.yaml_config import ConfigError, apply_overrides, from_dict

log = logging.getLogger(__name__)


def is_release_dir(path: Path) -> bool:
    """A CogACT release: a ``checkpoints/`` folder and a ``config.json`` whose top level has a ``vla`` key."""
    config = path / RELEASE_CONFIG
    if not (path.is_dir() and (path / CHECKPOINT_DIR).is_dir() and config.is_file()):
        return False
    try:
        data = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config}: not valid JSON: {exc}") from None
    return isinstance(data, dict) and "vla" in data


def release_checkpoint(directory: Path) -> Path:
    """The one ``checkpoints/*.pt`` (as CogACT's ``load_vla`` requires)."""
    found = sorted((directory / CHECKPOINT_DIR).glob("*.pt"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ValueError(f"{directory / CHECKPOINT_DIR}: expected exactly one .pt checkpoint, found {names}")
    return found[0]


def read_release_config(directory: Path) -> dict[str, Any]:
    path = directory / RELEASE_CONFIG
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: no {RELEASE_CONFIG}; not a CogACT release directory") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("vla"), dict):
        raise ValueError(f"{path}: expected a JSON object with a 'vla' object (a CogACT release config)")
    return data


def infer_dit_size(action_model: Mapping[str, torch.Tensor]) -> str:
    """S, B or L from the DiT tensors: hidden size H from ``net.x_embedder.linear.weight`` [H, 7] (384 / 768 /
    1024) and depth from the number of ``net.blocks.i`` (6 / 12 / 24)."""
    weight = action_model.get("net.x_embedder.linear.weight")
    if weight is None:
        raise ValueError("action_model: no net.x_embedder.linear.weight, so the DiT size cannot be inferred")
    hidden = int(weight.shape[0])
    depth = len({key.split(".")[2] for key in action_model if key.startswith("net.blocks.")})
    for size, (preset_depth, preset_hidden, _) in DIT_SIZES.items():
        if (preset_depth, preset_hidden) == (depth, hidden):
            return size
    known = "; ".join(f"DiT-{s}: {d} blocks, hidden {h}" for s, (d, h, _) in DIT_SIZES.items())
    raise ValueError(f"action_model: {depth} blocks of hidden size {hidden} match no DiT size ({known})")


def base_vlm_names() -> str:
    return ", ".join(sorted(BASE_VLMS))


def release_config_data(directory: Path, meta: dict[str, Any], action_model: Mapping[str, torch.Tensor]) -> dict:
    """The vlart config (as a dict) of a published release: the base VLM's towers and LLM, the inferred DiT size,
    the release's tokenizer files and statistics. No default unnorm key: the user chooses one, as in CogACT."""
    base_vlm = meta["vla"].get("base_vlm")
    if base_vlm not in BASE_VLMS:
        raise ValueError(
            f"{directory / RELEASE_CONFIG}: vla.base_vlm {base_vlm!r} is not supported; known base VLMs: "
            f"{base_vlm_names()}"
        )
    past = meta.get("past_action_window_size", 0)
    if past:
        raise ValueError(f"{directory / RELEASE_CONFIG}: past_action_window_size={past}; only 0 is supported")
    shapes = BASE_VLMS[base_vlm]
    return {
        "name": directory.resolve().name,
        "vision": copy.deepcopy(shapes["vision"]),  # overrides edit this dict in place, never the table
        "llm": {**shapes["llm"], "tokenizer": "."},
        "action_head": {"size": infer_dit_size(action_model),
                        "chunk_length": int(meta.get("future_action_window_size", 15)) + 1},
        "actions": {"statistics": STATISTICS_FILE, "unnorm_key": None},
    }


def release_config(
    directory: Path, action_model: Mapping[str, torch.Tensor], overrides: Optional[list[str]] = None
) -> PolicyConfig:
    """The vlart config of a release: ``vlart_config.yaml`` when present (releases vlart wrote), otherwise built
    from ``config.json``'s base VLM and the DiT tensor shapes. ``overrides`` are ``--set KEY=VALUE``."""
    meta = read_release_config(directory)
    if (directory / VLART_CONFIG).is_file():
        return load_config(directory / VLART_CONFIG, overrides)
    data = apply_overrides(release_config_data(directory, meta, action_model), overrides or [])
    try:
        config = from_dict(PolicyConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{directory}: {exc}") from None
    config.base_dir = directory.resolve()
    return config


def _check_tokenizer_files(directory: Path, config: PolicyConfig) -> None:
    """A release's tokenizer is the user's copy of the LLaMA-2 files; say so plainly when they are missing."""
    if config.llm.tokenizer is None or config.resolve_path(config.llm.tokenizer).resolve() != directory.resolve():
        return
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{directory}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); copy the LLaMA-2 tokenizer files "
            "(Llama-2-7b-hf) into the release directory, or point to them with --set llm.tokenizer=DIR"
        )



def check_checkpoint(
    groups: Mapping[str, Mapping[str, torch.Tensor]], config: PolicyConfig, source: Path
) -> None:
    """Every key of the checkpoint is one the layout of ``config`` expects, with the expected shape, and every
    expected key is there (the unused history embedder may be absent). Checked before any weight is allocated."""
    layout = expected_layout(config)
    optional = {(r.group, k) for r in build_rules(config) if r.kind == "unused" for k in r.cogact}
    missing, unexpected, shapes = [], [], []
    for group in sorted(set(groups) - set(layout)):
        unexpected.append(f"group {group!r}")
    for group, keys in layout.items():
        if group not in groups:
            missing.append(f"group {group!r}")
            continue
        found = groups[group]
        missing += [f"{group}/{k}" for k in keys if k not in found and (group, k) not in optional]
        unexpected += [f"{group}/{k}" for k in found if k not in keys]
        shapes += [
            f"{group}/{k} has shape {list(found[k].shape)}, expected {list(shape)}"
            for k, shape in keys.items() if k in found and tuple(found[k].shape) != shape
        ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source}: does not match the {config.name} layout: "
            + describe_keys([("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)])
        )


@torch.no_grad()
def load_groups(
    policy: CogACTPolicy,
    groups: Mapping[str, Mapping[str, torch.Tensor]],
    regions: Optional[list[tuple[int, int]]] = None,
) -> list[str]:
    """Copy the checkpoint into the (uninitialised) policy group by group, casting to each parameter's dtype.
    ``regions``: the checkpoint file's mappings (``file_mappings``); the pages of each copied tensor inside them
    are released. Returns the vlart keys filled with zeros because CogACT has no tensor for them."""
    targets = policy.state_dict()
    rules = build_rules(policy.config)
    check_rules_cover(rules, targets)
    filled: set[str] = set()
    zeroed: list[str] = []
    for group in GROUPS:
        source = groups[group]
        for rule in (r for r in rules if r.group == group):
            if rule.kind == "unused":
                continue
            if rule.kind == "fill_zeros":
                values = [torch.zeros_like(targets[k]) for k in rule.vlart]
                zeroed += rule.vlart
            else:
                values = to_vlart(rule, [source[k] for k in rule.cogact])
            for key, value in zip(rule.vlart, values, strict=True):
                targets[key].copy_(value)
                filled.add(key)
            if regions:
                release_mapped_pages((source[k] for k in rule.cogact), regions)
    unfilled = sorted(set(targets) - filled)
    if unfilled:
        raise ValueError("CogACT checkpoint left vlart keys unfilled: " + describe_keys([("keys", unfilled)]))
    return zeroed


def load_release(
    directory: str | Path,
    unnorm_key: Optional[str] = None,
    device: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    select_statistics: bool = True,
) -> CogACTPolicy:
    """A CogACT release directory -> a policy in ``runtime.dtype`` (the action head stays float32, as in CogACT).

    The ``.pt`` is memory-mapped and checked against the expected layout before the model is allocated; the model
    is then built uninitialised in its dtype and filled group by group, so memory holds the model once plus the
    checkpoint pages being copied. ``select_statistics=False`` keeps the whole statistics file without choosing an
    unnorm key (for ``convert``/``export``, which pass every key on).
    """
    directory = Path(directory).expanduser()
    weights = release_checkpoint(directory)
    groups = read_checkpoint(weights)
    config = release_config(directory, groups.get(ACTION, {}), overrides)
    _check_tokenizer_files(directory, config)
    check_checkpoint(groups, config, weights)
    if select_statistics or unnorm_key is not None:
        policy = build_policy(config, unnorm_key=unnorm_key, device=device, random_init=False)
    else:
        statistics = config.actions.statistics
        config.actions.statistics = None  # build without choosing a dataset; the file stays with the config
        policy = build_policy(config, device=device, random_init=False)
        config.actions.statistics = statistics
    zeroed = load_groups(policy, groups, regions=file_mappings(weights))
    log.info("loaded %s; filled with zeros (no CogACT tensor): %s", weights, ", ".join(zeroed))
    return policy
