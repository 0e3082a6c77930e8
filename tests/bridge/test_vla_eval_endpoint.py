"""`vlart serve --protocol vla-eval` driven by vla-eval's own client side (its Connection and episode runner)."""

from __future__ import annotations

import io
import msgpack
import numpy as np
import pytest

from policies.api.interface import Observation
from tests.bridge.conftest import websocket_endpoint

pytest.importorskip("websockets")
anyio = pytest.importorskip("anyio")
from vla_eval.benchmarks.base import StepBenchmark, StepResult  # noqa: E402
from vla_eval.connection import Connection  # noqa: E402
from vla_eval.runners.sync_runner import SyncEpisodeRunner  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

TOLERANCE = 1e-5
STEPS = 4


@pytest.fixture()
def endpoint(tiny_policy):
    with websocket_endpoint(tiny_policy, "vla-eval") as front:
        yield front


def frame(step: int) -> np.ndarray:
    return np.random.default_rng(step).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)


class TableBenchmark(StepBenchmark):
    """A vla-eval benchmark of STEPS steps that records the actions it gets (seeded, so they can be checked)."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[np.ndarray] = []

    def get_tasks(self):
        return [{"name": "pick coke can", "suite": "table"}]

    def reset(self, task):
        self.step_index = 0
        return 0

    def step(self, action):
        self.actions.append(np.asarray(action["actions"]))
        self.step_index += 1
        return StepResult(obs=self.step_index, reward=0.0, done=self.step_index >= STEPS, info={})

    def make_obs(self, raw_obs, task):
        # vla-eval sends LIBERO's camera name; images travel PNG-encoded, as vla-eval does by default.
        return {"images": {"agentview": frame(raw_obs)}, "task_description": task["name"], "seed": raw_obs}

    def get_step_result(self, step_result):
        return {"success": False}


def test_vla_eval_episode_round_trip(endpoint, tiny_policy):
    async def episode():
        connection = Connection(endpoint.url, timeout=60)
        await connection.connect()
        benchmark = TableBenchmark()
        try:
            result = await SyncEpisodeRunner().run_episode(benchmark, benchmark.get_tasks()[0], connection)
            again = await SyncEpisodeRunner().run_episode(benchmark, benchmark.get_tasks()[0], connection)
        finally:
            await connection.close()
        return connection.server_info, result, again, benchmark.actions

    info, result, again, actions = anyio.run(episode)
    assert info["model_server"].startswith("vlart") and info["protocol_version"] == 1
    assert info["action_spec"]["rotation"]["format"] == "euler_xyz"
    assert result["steps"] == STEPS and again["steps"] == STEPS and len(actions) == 2 * STEPS
    reference = tiny_policy.session()
    expected = [reference.predict_action(Observation(frame(step), "pick coke can"), seed=step).action
                for step in range(STEPS)]
    for got in (actions[:STEPS], actions[STEPS:]):  # episode_start cleared the ensemble: the second run repeats
        for action, want in zip(got, expected):
            assert action.shape == (7,) and action.dtype == np.float32
            np.testing.assert_allclose(action, want, atol=TOLERANCE, rtol=0)


def vla_eval_frame(kind: str, seq: int, payload: dict) -> bytes:
    return msgpack.packb({"type": kind, "payload": payload, "seq": seq, "timestamp": 0.0}, use_bin_type=True)


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_observations_get_vla_eval_errors_and_the_connection_goes_on(endpoint):
    async def run():
        connection = Connection(endpoint.url, timeout=60)
        await connection.connect()
        try:
            await connection.start_episode({"task": {"name": "pick"}})
            errors = []
            for obs in ({"images": {"primary": frame(0).astype(np.float32)}, "task_description": "pick"},
                        {"images": {"primary": frame(0)}, "task_description": ""},
                        {"task_description": "pick"}):
                with pytest.raises(RuntimeError) as info:
                    await connection.act(obs)
                errors.append(str(info.value))
            action = await connection.act({"images": {"primary": frame(0)}, "task_description": "pick"})
        finally:
            await connection.close()
        return errors, action

    errors, action = anyio.run(run)
    assert "observation_failed: bad_request: images.primary: expected dtype uint8" in errors[0]
    assert "observation_failed: bad_request: task_description: expected a non-empty string" in errors[1]
    assert "observation_failed: bad_request: images: expected a map" in errors[2]
    assert action["actions"].shape == (7,)


@pytest.mark.parametrize("frame_bytes, text, closes", [
    (b"\xc1 not msgpack", "not a valid msgpack message", True),
    (msgpack.packb([1, 2]), "message must be a msgpack map", True),
    (vla_eval_frame("dance", 5, {}), "unknown_type: type: expected one of", False),
    (vla_eval_frame("observation", 6, {"images": {"primary": {"__image__": True, "format": "png",
                                                               "data": png(5000, 2), "shape": [2, 5000, 3]}},
                                       "task_description": "pick"}), "exceeds 4096 pixels a side", True),
    (vla_eval_frame("observation", 7, {"images": {"primary": {"__image__": True, "format": "png",
                                                               "data": b"garbage", "shape": [2, 2, 3]}},
                                       "task_description": "pick"}), "is not a valid png", True),
    (vla_eval_frame("observation", 8, {"images": {"primary": {"__ndarray__": True, "dtype": "|O", "shape": [1],
                                                               "data": b"\0" * 8}}, "task_description": "pick"}),
     "array dtype '|O' is not allowed", True),
])
def test_hostile_frames_get_typed_errors(endpoint, frame_bytes, text, closes):
    with connect(endpoint.url, compression=None, max_size=None) as ws:
        ws.send(frame_bytes)
        reply = msgpack.unpackb(ws.recv())
        assert reply["type"] == "error" and text in reply["payload"]["error"]
        if closes:
            with pytest.raises(Exception) as closed:
                ws.recv()
            assert closed.value.rcvd.code == 1003
        else:
            ws.send(vla_eval_frame("hello", 9, {"harness_version": "test", "protocol_version": 1}))
            assert msgpack.unpackb(ws.recv())["type"] == "hello"


def test_health_check(endpoint):
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/health", timeout=30) as response:
        assert json.loads(response.read()) == {"status": "ok"}


def test_vlart_serve_protocol_vla_eval(tmp_path):
    """The command a user runs: `vlart serve --protocol vla-eval`, reached by vla-eval's Connection."""
    import re
    import subprocess
    import sys

    from tests.conftest import REPO, TINY

    command = [sys.executable, "-m", "runtime.app.cli", "serve", "--model", str(TINY), "--protocol", "vla-eval",
               "--bind", "ws://127.0.0.1:0", "--max-batch", "4"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            match = re.search(r"ready on (ws://\S+) \(vla-eval\)", line)
            if match:
                break
        else:
            pytest.fail("vlart serve --protocol vla-eval did not start")

        async def act():
            connection = Connection(match.group(1), timeout=60)
            await connection.connect()
            try:
                await connection.start_episode({"task": {"name": "pick"}})
                return connection.server_info, await connection.act(
                    {"images": {"primary": frame(0)}, "task_description": "pick coke can"})
            finally:
                await connection.close()

        info, action = anyio.run(act)
        assert info["model_server"] == "vlart (cogact-tiny)" and action["actions"].shape == (7,)
        assert action["chunk"].shape == (16, 7)
    finally:
        process.terminate()
        process.wait(60)


@pytest.mark.parametrize("bind, message", [("tcp://127.0.0.1:5555", "--bind: expected ws://HOST:PORT"),
                                           ("ws://127.0.0.1:99999", "--bind: the port of")])
def test_a_websocket_protocol_needs_a_ws_bind(capsys, bind, message):
    from runtime.app.cli import main

    from tests.conftest import TINY

    assert main(["serve", "--model", str(TINY), "--protocol", "openpi", "--bind", bind]) == 2
    assert message in capsys.readouterr().err
