"""Shared fixtures: the tiny config and a built tiny policy (random weights, seeded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "models"
TINY = CONFIGS / "cogact-tiny.yaml"
SAMPLE_IMAGE = REPO / "configs" / "samples" / "bridge_table.png"
SHARED_ASSETS = REPO.parent / "shared" / "simpler_assets"
SHARED_REAL2SIM_DATA = REPO.parent / "shared" / "simpler_real2sim" / "ManiSkill2_real2sim" / "data"


def missing_simulator(reason: str) -> None:
    """A simulator test without its simulator: skipped where it may be missing, a failure where CI requires it.

    A user who clones the repository alone has no asset pack beside it and should see "skipped: ...", not failures;
    ``.ci/run`` sets VLART_REQUIRE_SIM=1 so that a missing pack can never pass CI silently.
    """
    if os.environ.get("VLART_REQUIRE_SIM") == "1":
        pytest.fail(f"{reason} (VLART_REQUIRE_SIM=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def simpler_assets() -> Path:
    """Simulator tests use the SIMPLER asset pack: MS_ASSET_DIR, or the shared pack beside this checkout."""
    if not os.environ.get("MS_ASSET_DIR") and SHARED_ASSETS.is_dir():
        os.environ["MS_ASSET_DIR"] = str(SHARED_ASSETS.resolve())
    if not os.environ.get("MS_ASSET_DIR"):
        missing_simulator("SIMPLER assets not found: set MS_ASSET_DIR (CI uses ../shared/simpler_assets)")
    return Path(os.environ["MS_ASSET_DIR"])


@pytest.fixture(scope="session")
def real2sim_assets() -> Path:
    """Google-robot tests use SimplerEnv's data (MS2_REAL2SIM_ASSET_DIR, or the shared pack beside this checkout)
    and its interpreter, which ./setup.sh builds only where its prerequisites exist."""
    from envs.real2sim_workers import real2sim_python

    try:
        real2sim_python()
    except RuntimeError as exc:  # no such interpreter: the message says how to build it
        missing_simulator(f"SimplerEnv interpreter not set up: {exc}")
    if not os.environ.get("MS2_REAL2SIM_ASSET_DIR") and SHARED_REAL2SIM_DATA.is_dir():
        os.environ["MS2_REAL2SIM_ASSET_DIR"] = str(SHARED_REAL2SIM_DATA.resolve())
    if not os.environ.get("MS2_REAL2SIM_ASSET_DIR"):
        missing_simulator("SimplerEnv data not found: set MS2_REAL2SIM_ASSET_DIR "
                          "(CI uses ../shared/simpler_real2sim/ManiSkill2_real2sim/data)")
    return Path(os.environ["MS2_REAL2SIM_ASSET_DIR"])


@pytest.fixture(scope="session")
def tiny_policy():
    from policies.loading import load_policy

    return load_policy(TINY)


@pytest.fixture()
def frame() -> np.ndarray:
    """A 480x640 RGB frame, like SIMPLER's 3rd-view camera."""
    return np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
