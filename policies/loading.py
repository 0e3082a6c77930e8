"""What a user passes as ``--model``, and the commands that write models (``vlart export``, ``vlart convert``).

``--model`` is one of:

- a model config YAML (``configs/models/cogact-tiny.yaml``), or the bare name of one shipped with vlart
  (``cogact-tiny``): a randomly initialised model (seeded by ``runtime.init_seed``, so every run builds the same
  weights);
- a vlart checkpoint directory (``config.yaml`` + ``model.safetensors`` + ...), see ``policies.factory``;
- a CogACT release directory (``checkpoints/*.pt`` + ``config.json`` + ``dataset_statistics.json`` + tokenizer
  files), see ``policies.cogact``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from policies.cogact.key_rules import ACTION, manifest
from policies.cogact.mapped_checkpoint import read_checkpoint
from policies.cogact.release_layout import CHECKPOINT_DIR, RELEASE_CONFIG
from policies.cogact.release_reader import is_release_dir, load_release, release_checkpoint, release_config
from policies.cogact.release_writer import export_cogact_pt, export_release
from policies.config import PolicyConfig, load_config
from policies.factory import CONFIG_FILE, build_policy, load_checkpoint, save_pretrained
from policies.policy import CogACTPolicy
from policies.runtime_config import dtype_name
from runtime.core.resources import config_file

FORMATS = ("cogact-pt", "cogact-release", "cogact-manifest", "safetensors")
MODEL_SUFFIXES = (".yaml", ".yml")


def shipped_models() -> list[str]:
    """The names of the model configs shipped in ``configs/models/`` (what a bare ``--model NAME`` may be)."""
    return sorted(p.stem for p in config_file("models").glob("*.yaml"))


def model_path(model: str | Path) -> Path:
    """``--model`` as a path: an existing file or directory, or a bare name -> ``configs/models/NAME.yaml``."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    if str(model) == path.name and path.suffix not in MODEL_SUFFIXES and path.name in shipped_models():
        return config_file("models", f"{path.name}.yaml")
    raise FileNotFoundError(
        f"--model {model}: no such file or directory, nor a model config shipped with vlart "
        f"({', '.join(shipped_models())})"
    )


def load_policy(
    model: str | Path,
    unnorm_key: Optional[str] = None,
    device: Optional[str] = None,
    overrides: Optional[list[str]] = None,
) -> CogACTPolicy:
    """``--model`` (see the module docstring) -> a policy; ``overrides`` are ``KEY=VALUE`` config settings
    (``--set``)."""
    path = model_path(model)
    if path.is_dir():
        if is_release_dir(path):
            return load_release(path, unnorm_key=unnorm_key, device=device, overrides=overrides)
        if (path / CONFIG_FILE).is_file():
            return load_checkpoint(path, unnorm_key=unnorm_key, device=device, overrides=overrides)
        raise FileNotFoundError(
            f"--model {model}: directory has no {CONFIG_FILE}; expected a vlart checkpoint or a CogACT release "
            f"({CHECKPOINT_DIR}/*.pt and {RELEASE_CONFIG})"
        )
    if path.suffix in MODEL_SUFFIXES:
        return build_policy(load_config(path, overrides), unnorm_key=unnorm_key, device=device)
    raise ValueError(f"--model {model}: expected a model config (.yaml) or a checkpoint directory")


def model_config(model: str | Path, overrides: Optional[list[str]] = None) -> PolicyConfig:
    """The config behind ``--model`` (YAML, vlart checkpoint or release) without loading any weight (a release's
    ``.pt`` is memory-mapped only to read the DiT's shapes)."""
    path = model_path(model)
    if path.is_dir() and is_release_dir(path):
        return release_config(path, read_checkpoint(release_checkpoint(path)).get(ACTION, {}), overrides)
    if path.is_dir():
        return load_config(path / CONFIG_FILE, overrides)
    return load_config(path, overrides)


def _load_for_export(
    model: str | Path, unnorm_key: Optional[str] = None, overrides: Optional[list[str]] = None
) -> CogACTPolicy:
    """``--model`` for export/convert: a release keeps all its unnorm keys unless one is chosen."""
    path = model_path(model)
    if path.is_dir() and is_release_dir(path):
        return load_release(path, unnorm_key=unnorm_key, overrides=overrides, select_statistics=False)
    return load_policy(path, unnorm_key=unnorm_key, overrides=overrides)


def export_model(
    model: str | Path,
    fmt: str,
    out: str | Path,
    unnorm_key: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    weights_dtype: Optional[str] = None,
) -> Path:
    """``vlart export``: ``cogact-pt`` (FILE.pt), ``cogact-release`` (DIR), ``cogact-manifest`` (FILE.json, meta
    device, no weights) or ``safetensors`` (DIR, vlart's own checkpoint format, its weights stored as
    ``weights_dtype`` when given: fp16 halves a float32 checkpoint)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if weights_dtype is not None and fmt != "safetensors":
        raise ValueError("--weights-dtype: only the safetensors format stores a weights dtype")
    stored = None if weights_dtype is None else getattr(torch, dtype_name(weights_dtype, "--weights-dtype"))
    out = Path(out)
    if fmt == "cogact-manifest":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(manifest(model_config(model, overrides)), indent=1) + "\n")
        return out
    policy = _load_for_export(model, unnorm_key, overrides)
    if fmt == "cogact-pt":
        return export_cogact_pt(policy, out)
    if fmt == "cogact-release":
        return export_release(policy, out)
    return save_pretrained(policy, out, weights_dtype=stored)


def convert_release(
    source: str | Path,
    target: str | Path,
    dtype: str = "fp32",
    unnorm_key: Optional[str] = None,
    overrides: Optional[list[str]] = None,
) -> Path:
    """``vlart convert``: a CogACT release -> a vlart checkpoint directory (safetensors, memory-mapped loads) in
    ``dtype``; every unnorm key is kept (``unnorm_key`` becomes the default)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--from {source}: no such directory")
    if not is_release_dir(path):
        raise ValueError(f"--from {source}: not a CogACT release (expected {CHECKPOINT_DIR}/*.pt and {RELEASE_CONFIG})")
    settings = [*(overrides or []), f"runtime.dtype={dtype_name(dtype, '--dtype')}"]
    policy = load_release(path, unnorm_key=unnorm_key, overrides=settings, select_statistics=False)
    return save_pretrained(policy, target)
