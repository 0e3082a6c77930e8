"""Files shipped in vlart's ``configs/`` tree (models, presets, budgets, statistics, samples).

The top-level ``configs/`` folder is installed as the data-only package ``vlart_configs`` (``setup.py`` maps the
name onto the folder), so one lookup serves a source checkout, an editable install and a wheel install alike.
Imports nothing of vlart's and no numpy: a layer-1 building block.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CONFIG_PACKAGE = "vlart_configs"


def config_root() -> Path:
    """The installed ``configs/`` folder. The package is a regular one (it has an ``__init__.py``) and is installed
    unzipped, so this is a real directory and files in it may refer to each other by relative paths."""
    try:
        return Path(str(resources.files(CONFIG_PACKAGE)))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"vlart's configs are not installed (no package {CONFIG_PACKAGE!r}); reinstall vlart "
            "(pip install -e . in a checkout)"
        ) from None


def config_file(*parts: str) -> Path:
    """A file (or folder) under ``configs/``, e.g. ``config_file("presets", "efficientvla.yaml")``; raises
    FileNotFoundError naming what is missing."""
    if not parts:
        raise ValueError("config_file: expected a path inside configs/, e.g. ('models', 'cogact-tiny.yaml')")
    path = config_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"configs/{'/'.join(parts)}: not shipped with vlart (looked at {path})")
    return path
