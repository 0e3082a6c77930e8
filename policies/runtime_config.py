"""``RuntimeConfig``, the ``runtime:`` section of a model config (device, dtype, seed, timing), and the dtype names
that it and the ``--dtype`` / ``--weights-dtype`` options take."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.core.yaml_config import ConfigError

# runtime.dtype's names, and the short ones that --dtype / --weights-dtype also take
DTYPES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def dtype_name(value: str, option: str) -> str:
    """``fp16`` or ``float16`` (...) -> the ``runtime.dtype`` name; an error naming ``option`` for anything else."""
    name = DTYPE_ALIASES.get(value, value)
    if name not in DTYPES:
        raise ValueError(f"{option} {value!r}: expected one of {', '.join([*DTYPE_ALIASES, *DTYPES])}")
    return name


@dataclass
class RuntimeConfig:
    """Where and how the weights live. ``init_seed`` makes a randomly initialised model reproducible. ``timing``:
    ``stages`` (per-stage times in every output), ``steps`` (also each DDIM step), ``off``. ``compile``: run
    compiled forward passes (``policies.compilation``; applied where presets are, after the preset)."""

    device: str = "cpu"
    dtype: str = "float32"
    init_seed: int = 0
    timing: str = "stages"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"runtime.dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.timing not in ("stages", "steps", "off"):
            raise ConfigError(f"runtime.timing must be stages, steps or off; got {self.timing!r}")
