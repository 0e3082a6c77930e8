"""The robot side needs numpy, pyzmq and msgpack only."""

import json
import subprocess
import sys
import venv

import numpy as np
import pytest

from bridge.client import PolicyClient
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
    # the numpy-only types and checks shared with the server
    assert probe["heavy"] == [] and probe["policy_modules"] == ["policies.api", "policies.api.interface"]


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
    assert json.loads(result.stdout) == {"heavy": [], "policy_modules": ["policies.api", "policies.api.interface"],
                                         "shape": [16, 7]}


class RecordingClient(PolicyClient):
    """A client whose requests are recorded instead of sent, answered with a fixed reply."""

    def __init__(self) -> None:
        super().__init__("tcp://127.0.0.1:1")
        self.sent: list[tuple[str, dict]] = []

    def call(self, type_, payload, timeout_s=None):
        self.sent.append((type_, payload))
        zeros = np.zeros((16, 7), np.float32)
        reply = {"actions": zeros, "normalized_actions": zeros, "action": zeros[0]}
        return reply, 1, {"serialize_ms": 0.0, "total_ms": 0.0}


def test_a_plain_infer_sends_no_continuation_fields():
    client = RecordingClient()
    client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", seed=3)
    (type_, payload), = client.sent
    assert type_ == "infer" and set(payload) == {"images", "instruction", "seed"}  # exactly what it sent before


def test_a_prefix_is_sent_as_float32_with_its_delay_ticks():
    client = RecordingClient()
    client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", prefix=[[0.01] * 7] * 3, delay_ticks=np.int64(2))
    payload = client.sent[0][1]
    assert payload["prefix"].dtype == np.float32 and payload["prefix"].shape == (3, 7)
    np.testing.assert_array_equal(payload["prefix"], np.full((3, 7), 0.01, np.float32))
    assert payload["delay_ticks"] == 2 and type(payload["delay_ticks"]) is int
    client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", prefix=np.zeros((2, 7)))
    assert client.sent[1][1]["delay_ticks"] == 0


def test_delay_ticks_without_a_prefix_is_refused_before_sending():
    client = RecordingClient()
    with pytest.raises(ValueError, match="delay_ticks: expected 0 without a prefix"):
        client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", delay_ticks=2)
    with pytest.raises(TypeError):
        client.infer(np.zeros((4, 4, 3), np.uint8), "pick coke can", prefix=np.zeros((2, 7)), delay_ticks=1.5)
    assert client.sent == []
