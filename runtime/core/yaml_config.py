"""Dataclass configs from YAML: unknown keys and wrong types are errors that name the key; and the one reader of a
JSON or YAML file's top-level mapping, whose errors name the file.

Used by the policy configs (``policies.config``) and the latency budgets (``runtime.core.budgets``); imports nothing of
vlart's.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field at fault."""


def to_dict(obj: Any) -> Any:
    """A dataclass (recursively) -> plain dicts, without fields marked ``metadata={"internal": True}``."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("internal")
        }
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, args[0], where)
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return {_coerce(k, key_type, f"{where} key"): _coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return from_dict(annotation, value, where)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Path:
        return Path(value)
    expected = annotation if isinstance(annotation, type) else None
    if expected is not None and not isinstance(value, expected):
        raise ConfigError(f"{where} must be {expected.__name__}, got {value!r} ({type(value).__name__})")
    if expected in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where} must be {expected.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError`` naming the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + str(k) for k in unknown)}; "
            f"expected one of: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def read_mapping(path: str | Path, what: str, expected: str = "a mapping at the top level") -> dict[str, Any]:
    """The top-level mapping of a JSON file (``.json``) or a YAML file (any other name), or ``ConfigError`` naming
    the file: ``what`` names the file in the message for a missing one ("dataset statistics file"), ``expected``
    says what its top level must be."""
    path = Path(path)
    language = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    try:
        data = json.loads(text) if language == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {language}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["llm.tokenizer=vlart-tiny", "runtime.dtype=bfloat16"]`` -> ``data`` with those keys set (values parsed as
    YAML scalars). The keys are checked like the file's own when the config is built."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. runtime.dtype=bfloat16")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data
