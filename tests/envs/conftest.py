"""Simulator tests use the SIMPLER asset pack: MS_ASSET_DIR, or the shared pack beside this checkout."""

import os
from pathlib import Path

import pytest

from tests.conftest import REPO

SHARED_ASSETS = REPO.parent / "shared" / "simpler_assets"


@pytest.fixture(scope="session")
def simpler_assets() -> Path:
    if not os.environ.get("MS_ASSET_DIR") and SHARED_ASSETS.is_dir():
        os.environ["MS_ASSET_DIR"] = str(SHARED_ASSETS.resolve())
    if not os.environ.get("MS_ASSET_DIR"):
        pytest.fail("SIMPLER assets not found: set MS_ASSET_DIR (CI uses ../shared/simpler_assets)")
    return Path(os.environ["MS_ASSET_DIR"])
