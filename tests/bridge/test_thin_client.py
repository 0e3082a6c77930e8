"""The robot side needs numpy, pyzmq and msgpack only."""

import json
import subprocess
import sys
import venv

import pytest

from tests.conftest import REPO

PROBE = (
    "import sys, json, numpy as np\n"
    "from bridge.client import PolicyClient\n"
    "heavy = sorted(m for m in ('torch', 'transformers', 'diffusers', 'PIL') if m in sys.modules)\n"
    "policy_modules = sorted(m for m in sys.modules if m.startswith('policies.'))\n"
    "out = {'heavy': heavy, 'policy_modules': policy_modules}\n"
    "if len(sys.argv) > 1:\n"
    "    with PolicyClient(sys.argv[1], timeout_s=30) as c:\n"
    "        r = c.infer(np.zeros((224, 224, 3), np.uint8), 'pick coke can', seed=0)\n"
    "        out['shape'] = list(r.actions.shape)\n"
    "print(json.dumps(out))\n"
)


def test_client_import_pulls_in_nothing_heavy():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["heavy"] == [] and probe["policy_modules"] == ["policies.interface"]  # numpy-only shared checks


@pytest.mark.slow
def test_minimal_install_serves_a_robot(tmp_path, server):
    env_dir = tmp_path / "robot-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"numpy", "pyzmq", "msgpack", "vlart"} <= names
    assert not names & {"torch", "transformers", "diffusers", "pillow"}
    result = subprocess.run([str(python), "-c", PROBE, server.endpoint], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"heavy": [], "policy_modules": ["policies.interface"], "shape": [16, 7]}
