import stat

import numpy as np
import pytest

from bridge.client import PolicyClient, PolicyTimeout
from bridge.keys import generate_keys, load_client_keys, load_server_keys
from tests.bridge.conftest import wait_for
from tests.conftest import running_server


@pytest.fixture()
def curve_server(tiny_policy, tmp_path):
    generate_keys(tmp_path / "keys", ["robot1"])
    with running_server(tiny_policy, curve=load_server_keys(tmp_path / "keys")) as server:
        yield server, tmp_path / "keys"


def test_authorized_client_is_served(curve_server, frame):
    server, keys = curve_server
    with PolicyClient(server.endpoint, timeout_s=60, curve=load_client_keys(keys, "robot1")) as c:
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
    with running_server(tiny_policy, curve=load_server_keys(tmp_path / "keys")) as server:
        with PolicyClient(server.endpoint, timeout_s=60, curve=load_client_keys(tmp_path / "keys", "a")) as c:
            assert c.ping()["status"] == "ok"
        with PolicyClient(server.endpoint, timeout_s=0.5, retries=0,
                          curve=load_client_keys(tmp_path / "keys", "b")) as c:
            with pytest.raises(PolicyTimeout):
                c.ping()


def test_the_allowlist_is_reread_while_serving(tiny_policy, tmp_path, frame):
    keys = tmp_path / "keys"
    generate_keys(keys, ["a", "b"])
    b_key = (keys / "authorized" / "b.key").read_bytes()
    (keys / "authorized" / "b.key").unlink()
    b_public = load_client_keys(keys, "b").public.decode()
    with running_server(tiny_policy, curve=load_server_keys(keys)) as server:
        with PolicyClient(server.endpoint, timeout_s=60, curve=load_client_keys(keys, "a")) as a:
            assert a.infer(frame, "pick coke can", seed=0).actions.shape == (16, 7)
            # Authorise b while the server runs: accepted without a restart.
            (keys / "authorized" / "b.key").write_bytes(b_key)
            wait_for(lambda: b_public in server._allowlist.keys)
            with PolicyClient(server.endpoint, timeout_s=60, curve=load_client_keys(keys, "b")) as b:
                assert b.ping()["status"] == "ok"
            # Revoke a: its connection, made before, is refused from then on.
            a_public = load_client_keys(keys, "a").public.decode()
            (keys / "authorized" / "a.key").unlink()
            wait_for(lambda: a_public not in server._allowlist.keys)
            a.timeout_s, a.retries = 0.5, 0
            with pytest.raises(PolicyTimeout):
                a.ping()


def test_secret_key_files_are_owner_only(tmp_path):
    made = generate_keys(tmp_path, ["robot"])
    secrets = [p for p in made if p.name.endswith(".key_secret")]
    assert len(secrets) == 2
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert "secret-key" in path.read_text()
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) & 0o044  # public keys stay readable


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
