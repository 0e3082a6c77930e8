import subprocess

from runtime.core import provenance
from tests.conftest import REPO


def test_git_state_of_this_checkout():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    tracked_changes = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                     capture_output=True, text=True, check=True).stdout
    assert provenance.git_state(REPO) == {"commit": head.stdout.strip(), "dirty": bool(tracked_changes.strip())}


def test_no_git_state_outside_vlarts_own_checkout(tmp_path):
    assert provenance.git_state(tmp_path) is None  # not a repository
    assert provenance.git_state(REPO / "envs") is None  # inside one, but not its top: an installed copy's situation


def test_versions_from_metadata(monkeypatch):
    import numpy

    monkeypatch.setattr(provenance, "DISTRIBUTIONS", ("numpy", "no-such-distribution"))
    found = provenance.versions()
    assert set(found) == {"python", "numpy"} and found["numpy"] == numpy.__version__
