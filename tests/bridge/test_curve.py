import numpy as np
import pytest

from bridge.client import PolicyClient, PolicyTimeout
from bridge.keys import generate_keys, load_client_keys, load_server_keys
from bridge.server import PolicyServer


@pytest.fixture()
def curve_server(tiny_policy, tmp_path):
    generate_keys(tmp_path / "keys", ["robot1"])
    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*", curve=load_server_keys(tmp_path / "keys")).start()
    yield server, tmp_path / "keys"
    server.stop()


def test_authorized_client_is_served(curve_server, frame):
    server, keys = curve_server
    with PolicyClient(server.endpoint, timeout_s=20, curve=load_client_keys(keys, "robot1")) as c:
        assert c.hello()["server"] == "vlart"
        assert c.infer(frame, "pick coke can", seed=0).actions.shape == (16, 7)


def test_unknown_key_gets_nothing(curve_server, tmp_path):
    server, keys = curve_server
    generate_keys(tmp_path / "other", ["intruder"])
    intruder = load_client_keys(tmp_path / "other", "intruder")
    # The intruder knows the server's public key but its own key is not authorised.
    intruder = type(intruder)(intruder.public, intruder.secret, load_client_keys(keys, "robot1").server_public)
    with PolicyClient(server.endpoint, timeout_s=0.5, retries=1, curve=intruder) as c:
        with pytest.raises(PolicyTimeout, match="is this client's public key in its authorized directory"):
            c.ping()


def test_plain_client_gets_nothing_from_a_curve_server(curve_server):
    server, _ = curve_server
    with PolicyClient(server.endpoint, timeout_s=0.5, retries=0) as c:
        with pytest.raises(PolicyTimeout):
            c.ping()


def test_revoking_a_key_by_deleting_it(tiny_policy, tmp_path, frame):
    generate_keys(tmp_path / "keys", ["a", "b"])
    (tmp_path / "keys" / "authorized" / "b.key").unlink()
    server = PolicyServer(tiny_policy, bind="tcp://127.0.0.1:*", curve=load_server_keys(tmp_path / "keys")).start()
    try:
        with PolicyClient(server.endpoint, timeout_s=10, curve=load_client_keys(tmp_path / "keys", "a")) as c:
            assert c.ping()["status"] == "ok"
        with PolicyClient(server.endpoint, timeout_s=0.5, retries=0,
                          curve=load_client_keys(tmp_path / "keys", "b")) as c:
            with pytest.raises(PolicyTimeout):
                c.ping()
    finally:
        server.stop()


def test_key_files_and_errors(tmp_path):
    made = generate_keys(tmp_path, ["robot"])
    names = sorted(p.relative_to(tmp_path).as_posix() for p in made)
    assert names == ["authorized/robot.key", "clients/robot.key", "clients/robot.key_secret", "server.key",
                     "server.key_secret"]
    with pytest.raises(FileExistsError, match="already exists"):
        generate_keys(tmp_path, ["robot"])
    with pytest.raises(FileNotFoundError, match="--curve-client: no key file"):
        load_client_keys(tmp_path, "nobody")
    with pytest.raises(FileNotFoundError, match="--curve-keys: no key file"):
        load_server_keys(tmp_path / "empty")
    assert np.frombuffer(load_server_keys(tmp_path).public, np.uint8).size == 40
