"""Shared fixtures and helpers: the tiny config and a built tiny policy (random weights, seeded), the simulator gates,
a started policy server (``running_server``, the ``server`` fixture) and ``vlart`` run in process (``run``)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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


def asset_dir(variable: str, shared: Path, missing: str) -> Path:
    """The simulator data a test needs: ``$variable``, else the shared pack beside this checkout (exported as
    ``$variable`` for the subprocesses), else ``missing_simulator(missing)``."""
    if not os.environ.get(variable) and shared.is_dir():
        os.environ[variable] = str(shared.resolve())
    if not os.environ.get(variable):
        missing_simulator(missing)
    return Path(os.environ[variable])


@pytest.fixture(scope="session")
def simpler_assets() -> Path:
    """Simulator tests use the SIMPLER asset pack: MS_ASSET_DIR, or the shared pack beside this checkout."""
    return asset_dir("MS_ASSET_DIR", SHARED_ASSETS,
                     "SIMPLER assets not found: set MS_ASSET_DIR (CI uses ../shared/simpler_assets)")


@pytest.fixture(scope="session")
def real2sim_assets() -> Path:
    """Google-robot tests use SimplerEnv's data (MS2_REAL2SIM_ASSET_DIR, or the shared pack beside this checkout)
    and its interpreter, which ./setup.sh builds only where its prerequisites exist."""
    from envs.real2sim_workers import real2sim_python

    try:
        real2sim_python()
    except RuntimeError as exc:  # no such interpreter: the message says how to build it
        missing_simulator(f"SimplerEnv interpreter not set up: {exc}")
    return asset_dir("MS2_REAL2SIM_ASSET_DIR", SHARED_REAL2SIM_DATA,
                     "SimplerEnv data not found: set MS2_REAL2SIM_ASSET_DIR "
                     "(CI uses ../shared/simpler_real2sim/ManiSkill2_real2sim/data)")


@pytest.fixture(scope="session")
def tiny_policy():
    from policies.loading import load_policy

    return load_policy(TINY)


@pytest.fixture()
def frame() -> np.ndarray:
    """A 480x640 RGB frame, like SIMPLER's 3rd-view camera."""
    return np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)


@contextmanager
def running_server(policy: Any, **settings: Any) -> Iterator[Any]:
    """A started ``PolicyServer`` for ``policy`` on a free loopback port (``bind=...`` and the server's other
    settings may be given), stopped however the block ends."""
    from bridge.server.policy_server import PolicyServer

    server = PolicyServer(policy, **{"bind": "tcp://127.0.0.1:*", **settings}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def server(tiny_policy):
    """The tiny policy served on a free loopback port."""
    with running_server(tiny_policy) as started:
        yield started


def run(capsys: pytest.CaptureFixture, *argv: Any) -> tuple[int, str, str]:
    """``vlart ARGV`` in this process: its exit code, stdout and stderr."""
    from runtime.app.cli import main

    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fake_compiler(make):
    """A compiler for ``policies.compilation.COMPILERS``: ``make(part name, eager method)`` returns the part's
    compiled callable (tests of the machinery around a compiler, without one)."""
    return lambda policy, name, owner, eager, calls: make(name, eager)
