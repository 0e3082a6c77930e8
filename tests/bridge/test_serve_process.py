"""The real `vlart serve` process: killed and restarted under a client that keeps working."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from bridge.client import PolicyClient, PolicyTimeout
from tests.conftest import REPO, TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(endpoint: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.app.cli", "serve", "--model", str(TINY), "--bind", endpoint],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 300  # bounds a failing start only
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if "ready on" in line:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("vlart serve did not start")


@pytest.mark.slow
def test_client_survives_a_server_restart_and_sigterm_shuts_the_server_down_cleanly(frame):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = start_server(endpoint)
    try:
        with PolicyClient(endpoint, timeout_s=60.0, retries=1) as client:
            before = client.infer(frame, "pick coke can", seed=4)
            server.kill()  # SIGKILL: no goodbye
            server.wait(60)
            with pytest.raises(PolicyTimeout):
                client.ping(timeout_s=0.5)  # nobody is there: it must time out, however long we wait
            server = start_server(endpoint)
            after = client.infer(frame, "pick coke can", seed=4)
            np.testing.assert_array_equal(after.actions, before.actions)
            assert after.seq > before.seq
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
        assert server.returncode == 0
        assert "vlart serve: stopped" in output
    finally:
        server.kill()
        server.wait(60)


def test_cli_client_against_a_live_server(server, capsys):
    from runtime.app.cli import main
    from tests.conftest import SAMPLE_IMAGE

    assert main(["client", "--connect", server.endpoint, "--image", str(SAMPLE_IMAGE),
                 "--instruction", "put the carrot on the plate", "--seed", "0", "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert np.array(result["actions"]).shape == (16, 7)
    assert result["model"]["name"] == "cogact-tiny" and result["round_trip_ms"] > 0


def test_cli_keys_generate(tmp_path, capsys):
    from runtime.app.cli import main

    assert main(["keys", "generate", str(tmp_path), "--client", "arm", "--client", "base"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 + 3 * 2
    assert (tmp_path / "authorized" / "arm.key").is_file() and (tmp_path / "clients" / "base.key_secret").is_file()
    assert os.path.exists(tmp_path / "server.key_secret")
