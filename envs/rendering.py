"""Rendering and asset set-up for SAPIEN/ManiSkill, done before ``mani_skill`` is imported.

Without a GPU Vulkan driver SAPIEN renders on the CPU through Mesa's lavapipe (Mesa >= 25; Debian bookworm has it in
``bookworm-backports``: ``apt-get install -t bookworm-backports mesa-vulkan-drivers``, which ``./setup.sh`` does when
run as root). ``MS_ASSET_DIR`` names the ManiSkill asset folder; the SIMPLER tasks need the WidowX robot and the
Bridge real2sim task assets in it (with internet: ``python -m mani_skill.utils.download_asset bridge_v2_real2sim``
and ``python -m mani_skill.utils.download_asset widowx250s``).
"""

from __future__ import annotations

import os
from pathlib import Path

ICD_DIRS = (Path("/usr/share/vulkan/icd.d"), Path("/etc/vulkan/icd.d"), Path("/usr/local/share/vulkan/icd.d"))
LAVAPIPE_ICD = "lvp_icd.json"
GPU_ICD_NAMES = ("nvidia_icd.json", "nvidia_icd.x86_64.json")
SIMPLER_ASSET_PATHS = ("data/robots/widowx/wx250s.urdf", "data/tasks/bridge_v2_real2sim_dataset/custom")


def gpu_vulkan_icd() -> Path | None:
    if not Path("/dev/nvidia0").exists():
        return None
    for directory in ICD_DIRS:
        for name in GPU_ICD_NAMES:
            if (directory / name).is_file():
                return directory / name
    return None


def lavapipe_icd() -> Path | None:
    for directory in ICD_DIRS:
        if (directory / LAVAPIPE_ICD).is_file():
            return directory / LAVAPIPE_ICD
    return None


def configure_rendering() -> str:
    """Choose SAPIEN's render backend and point Vulkan at a driver. Returns ``"gpu"`` or ``"sapien_cpu"``."""
    if os.environ.get("VK_ICD_FILENAMES"):
        return "sapien_cpu" if LAVAPIPE_ICD in os.environ["VK_ICD_FILENAMES"] else "gpu"
    if gpu_vulkan_icd() is not None:
        return "gpu"
    icd = lavapipe_icd()
    if icd is None:
        raise RuntimeError(
            "no Vulkan driver for rendering: this machine has no GPU Vulkan driver and no Mesa lavapipe. Install "
            "Mesa >= 25 (Debian bookworm: add bookworm-backports and `apt-get install -t bookworm-backports "
            "mesa-vulkan-drivers`; ./setup.sh does this when run as root), or set VK_ICD_FILENAMES"
        )
    os.environ["VK_ICD_FILENAMES"] = str(icd)
    return "sapien_cpu"


def check_asset_dir(variable: str, required: tuple[str, ...], unset_hint: str, what: str) -> Path:
    """The folder the environment variable names, resolved (and written back resolved, for child processes), after
    checking that it holds ``required``; an error names the variable and what to point it at."""
    value = os.environ.get(variable)
    if not value:
        raise RuntimeError(f"{variable} is not set: {unset_hint}")
    root = Path(value).expanduser().resolve()
    missing = [p for p in required if not (root / p).exists()]
    if missing:
        raise RuntimeError(f"{variable}={root} lacks {', '.join(missing)}: not {what}")
    os.environ[variable] = str(root)
    return root


def check_simpler_assets() -> Path:
    """The folder MS_ASSET_DIR names, after checking it holds the SIMPLER Bridge assets (so ManiSkill never tries
    to download them)."""
    return check_asset_dir(
        "MS_ASSET_DIR", SIMPLER_ASSET_PATHS,
        "point it at a ManiSkill asset folder holding the WidowX robot and the Bridge real2sim assets (this "
        "checkout: export MS_ASSET_DIR=$(realpath ../shared/simpler_assets); with internet: "
        "python -m mani_skill.utils.download_asset bridge_v2_real2sim && "
        "python -m mani_skill.utils.download_asset widowx250s)",
        "a SIMPLER Bridge asset folder")
