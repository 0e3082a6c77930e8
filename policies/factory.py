"""Building a policy from its config, and vlart's own checkpoint directory: ``save_pretrained`` writes
``config.yaml`` + ``model.safetensors`` + ``dataset_statistics.json`` + ``tokenizer/`` and ``load_checkpoint`` reads
it back bit for bit. What a user passes as ``--model`` is resolved in ``policies.loading``.
"""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from transformers.initialization import no_init_weights

from policies.config import PolicyConfig, load_config, save_config
from policies.normalization import ActionStatistics, read_statistics_file, select_statistics
from policies.policy import CogACTPolicy
from policies.tokenizer import load_tokenizer, resolve_tokenizer_dir
from policies.torch_context import default_dtype

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
STATISTICS_FILE = "dataset_statistics.json"
TOKENIZER_DIR = "tokenizer"
VISION_TOKENIZER_DIR = "vision_tokenizer"  # the front end's own tokenizer (fusion front ends)


def load_statistics(config: PolicyConfig, unnorm_key: Optional[str] = None) -> Optional[ActionStatistics]:
    """The action statistics of ``unnorm_key`` (default: the config's) or None when the config names no file."""
    if config.actions.statistics is None:
        return None
    stats = read_statistics_file(config.resolve_path(config.actions.statistics))
    key = unnorm_key if unnorm_key is not None else config.actions.unnorm_key
    return select_statistics(stats, key, config.action_head.action_dim)


def build_policy(
    config: PolicyConfig,
    unnorm_key: Optional[str] = None,
    device: Optional[str] = None,
    random_init: bool = True,
) -> CogACTPolicy:
    """Build the modules (seeded random weights, or uninitialised when weights are loaded next), attach the tokenizer
    and statistics, and place the model. The action head stays float32 whatever ``runtime.dtype`` is, as in CogACT."""
    if unnorm_key is not None:
        config.actions.unnorm_key = unnorm_key
    statistics = load_statistics(config)
    tokenizer = None
    if config.llm.tokenizer is not None:
        tokenizer = load_tokenizer(resolve_tokenizer_dir(config.llm.tokenizer, config.base_dir))
    target = torch.device(device or config.runtime.device)
    dtype = getattr(torch, config.runtime.dtype)
    # Allocate on the target device in the target dtype directly: a 7B model never has to fit in float32 first.
    with torch.random.fork_rng(devices=[]), target, default_dtype(dtype):
        torch.manual_seed(config.runtime.init_seed)
        with nullcontext() if random_init else no_init_weights():
            policy = CogACTPolicy(config, statistics=statistics)
    policy.action_head.float()
    if tokenizer is not None:
        policy.language_model.set_tokenizer(tokenizer)
    if policy.vision.uses_instruction:  # the front end's own tokenizer (vision.<type>.text.tokenizer)
        try:
            directory = resolve_tokenizer_dir(policy.vision.tokenizer_name, config.base_dir)
        except FileNotFoundError as exc:
            detail = str(exc).split(": ", 1)[-1]
            raise FileNotFoundError(f"vision.{config.vision.type}.text.tokenizer: {detail}") from None
        policy.vision.set_tokenizer(load_tokenizer(directory))
    return policy.eval()


def save_pretrained(policy: CogACTPolicy, directory: str | Path, weights_dtype: Optional[torch.dtype] = None) -> Path:
    """Write a self-contained checkpoint directory that ``load_policy`` reads back bit for bit. ``weights_dtype``
    (e.g. float16) stores the floating-point tensors in that type to halve the file; the model still runs in its
    config's ``runtime.dtype`` (loading casts), so only the rounding of the weights changes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = policy.config
    if config.actions.statistics is not None:
        source = config.resolve_path(config.actions.statistics).resolve()
        if source != (directory / STATISTICS_FILE).resolve():  # re-saving a checkpoint in place
            shutil.copyfile(source, directory / STATISTICS_FILE)
    tokenizer = policy.language_model.tokenizer
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    vision_tokenizer = policy.vision.tokenizer if policy.vision.uses_instruction else None
    if vision_tokenizer is not None:
        vision_tokenizer.save_pretrained(str(directory / VISION_TOKENIZER_DIR))
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in policy.state_dict().items()}
    if weights_dtype is not None:
        state = {name: t.to(weights_dtype) if t.is_floating_point() else t for name, t in state.items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "vlart", "name": config.name})
    saved = config.to_dict()
    saved["actions"]["statistics"] = STATISTICS_FILE if config.actions.statistics is not None else None
    saved["llm"]["tokenizer"] = TOKENIZER_DIR if tokenizer is not None else None
    if vision_tokenizer is not None:
        saved["vision"][config.vision.type]["text"]["tokenizer"] = VISION_TOKENIZER_DIR
    save_config(saved, directory / CONFIG_FILE)
    return directory


def load_checkpoint(
    directory: Path,
    unnorm_key: Optional[str] = None,
    device: Optional[str] = None,
    overrides: Optional[list[str]] = None,
) -> CogACTPolicy:
    """A vlart checkpoint directory written by ``save_pretrained``; ``overrides`` are ``--set KEY=VALUE``."""
    config = load_config(directory / CONFIG_FILE, overrides)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE}; not a vlart checkpoint directory")
    policy = build_policy(config, unnorm_key=unnorm_key, device=device, random_init=False)
    state = load_file(str(weights), device=str(policy.device))
    result = policy.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{weights}: weights do not match the config; missing: {result.missing_keys[:10]}, "
            f"unexpected: {result.unexpected_keys[:10]}"
        )
    return policy

