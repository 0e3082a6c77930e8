"""What several ``vlart`` commands share: the model options (one definition of each flag) and image files."""

from __future__ import annotations

import argparse
from typing import Literal

import numpy as np

MODEL_HELP = ("model config YAML, vlart checkpoint directory, CogACT release directory, or a shipped config name "
              "(cogact-tiny)")
PRESET_HELP = "acceleration preset (configs/presets: efficientvla, tokens-only, cache-only, layers-mlp, fastv, ...)"
PLAN_HELP = "calibration plan from `vlart calibrate` (without one, presets that prune calibrate on the spot)"
COMPILE_HELP = ("compiled forward passes (torch.compile; checked against eager, which it falls back to): the same as "
                "--set runtime.compile=true")


class CompileFlag(argparse.Action):
    """``--compile``: appends ``runtime.compile=true`` to ``--set``'s overrides, where every command reads them."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, "on")
        namespace.set = [*(namespace.set or []), "runtime.compile=true"]


def model_options(
    *,
    model: Literal["required", "optional", "none"] = "required",
    presets: Literal["one", "many", "none"] = "none",
    plan: bool = False,
    device: bool = False,
    unnorm_key: bool = False,
    compile: Literal["none", "flag", "both"] = "none",
) -> argparse.ArgumentParser:
    """A parent parser (``parents=[...]``) with the model options a command takes: ``--model``, ``--set``
    (always), ``--preset`` (one, or repeatable), ``--plan``, ``--device``, ``--unnorm-key``, ``--compile`` (a flag,
    or ``--compile [on|both]`` where eager and compiled can run side by side)."""
    options = argparse.ArgumentParser(add_help=False)
    if model != "none":
        options.add_argument("--model", required=model == "required", default=None, help=MODEL_HELP)
    options.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a config key, e.g. runtime.dtype=bfloat16 (repeatable)")
    if presets == "one":
        options.add_argument("--preset", default=None, help=PRESET_HELP)
    elif presets == "many":
        options.add_argument("--preset", action="append", help=PRESET_HELP + " (repeatable; default baseline)")
    if plan:
        options.add_argument("--plan", default=None, metavar="PLAN.json", help=PLAN_HELP)
    if device:
        options.add_argument("--device", default=None, help="torch device (default: the config's runtime.device)")
    if unnorm_key:
        options.add_argument("--unnorm-key", default=None, help="dataset statistics key (default: the model's)")
    if compile == "flag":
        options.add_argument("--compile", action=CompileFlag, default="off", help=COMPILE_HELP)
    elif compile == "both":
        options.add_argument("--compile", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                             help="on (the flag alone): compiled forward passes (runtime.compile); both: every preset "
                                  "eager and compiled, interleaved")
    return options


def load_image(path: str) -> np.ndarray:
    """``--image``: an RGB image file as an (H, W, 3) uint8 array."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise RuntimeError("--image: reading image files needs Pillow (pip install pillow)") from None

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"--image: no such file: {path}") from None
    except UnidentifiedImageError:
        raise ValueError(f"--image: not an image file: {path}") from None
