"""``vlart robot`` and ``runtime.robot.runner``: the robot side of the real-time loop against a live server on loopback.

The fast tests use an in-memory adapter and a real ``PolicyServer`` around the tiny policy; they wait on events,
never on wall-clock margins. The simulator test runs ``vlart serve`` and ``vlart robot --robot simpler:...`` as
processes and stops the robot with SIGINT.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from policies.api.interface import Observation
from runtime.app.cli import main
from runtime.app.cli.robot import parse_robot_spec
from runtime.robot.runner import RobotAdapter, RobotConfig, RobotRunner, default_timeout_s
from tests.conftest import REPO

WAIT_S = 120.0  # bounds a failing test only


class FakeArm(RobotAdapter):
    """Records every call; ``acted`` is set once ``act`` has run ``wait_acts`` times, ``moved`` once an action
    that is not a hold (a policy action) arrived."""

    def __init__(self, wait_acts: int = 3, fail_observe_at: int | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.wait_acts = wait_acts
        self.fail_observe_at = fail_observe_at
        self.acted = threading.Event()
        self.moved = threading.Event()
        self.frame = np.random.default_rng(0).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)

    @property
    def acts(self) -> list[np.ndarray]:
        return [arg for name, arg in self.calls if name == "act"]

    def observe(self) -> Observation:
        if self.fail_observe_at is not None and len(self.acts) >= self.fail_observe_at:
            raise OSError("camera unplugged")
        return Observation(self.frame, "put the spoon on the towel")

    def act(self, action: np.ndarray) -> None:
        assert action.shape == (7,) and action.dtype == np.float32 and np.isfinite(action).all()
        self.calls.append(("act", action.copy()))
        if np.any(action[:6] != 0):
            self.moved.set()
        if len(self.acts) >= self.wait_acts:
            self.acted.set()

    def hold(self) -> None:
        self.calls.append(("hold", None))

    def stop(self) -> None:
        self.calls.append(("stop", None))

    def summary(self) -> dict:
        return {"acts": len(self.acts)}


def ends_with_hold_then_stop(arm: FakeArm) -> bool:
    names = [name for name, _ in arm.calls]
    return names[-2:] == ["hold", "stop"] and names.count("stop") == 1 and names.count("hold") == 1


def in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_runs_the_requested_ticks_then_holds_and_stops(server):
    arm = FakeArm()
    previous = signal.getsignal(signal.SIGINT)
    # a generous timeout: this test is about the tick count, not a slow machine's inference latency
    report = RobotRunner(RobotConfig(server.endpoint, ticks=12, rate_hz=20.0, timeout_s=60.0)).run(arm)
    assert report.stop_reason == "ticks"
    assert report.to_dict()["ticks"] == 12 and len(arm.acts) == 12
    assert ends_with_hold_then_stop(arm)
    assert report.last_action_hold and report.model == "cogact-tiny" and report.endpoint == server.endpoint
    assert report.chunk_length == 16 and report.rate_hz == 20.0 and report.robot == {"acts": 12}
    assert signal.getsignal(signal.SIGINT) is previous  # the handlers are restored
    flat = report.to_dict()
    for key in ("effective_rate_hz", "stale_ratio", "jitter_p50_ms", "jitter_p99_ms", "inference_delay_ticks_p50",
                "holds", "stop_reason", "inference_errors"):
        assert key in flat
    json.dumps(flat)  # --json writes it


def test_rate_and_timeout_default_to_the_servers_conventions(server):
    runner = RobotRunner(RobotConfig(server.endpoint, ticks=0))
    runner.connect()
    assert runner.rate_hz == 5.0  # the tiny policy's control_rate_hz
    assert runner.timeout_s == default_timeout_s(5.0) == 1.0
    assert default_timeout_s(2.0) == 2.5
    config = runner.loop_config()
    assert config.hold_on_inference_error and config.refill_threshold == 16 and config.ensemble_horizon == 7
    assert config.gripper_index == 6 and config.watchdog_s == pytest.approx(1.2)
    arm = FakeArm()
    assert runner.run(arm).to_dict()["ticks"] == 0 and ends_with_hold_then_stop(arm)


def test_sigint_holds_within_a_tick_and_stops_once(server):
    arm = FakeArm(wait_acts=5)
    previous = signal.getsignal(signal.SIGINT)
    sent = threading.Event()

    def interrupt() -> None:
        if arm.acted.wait(WAIT_S):  # the run (and its handler) is live: the arm has been acting
            os.kill(os.getpid(), signal.SIGINT)
            sent.set()

    in_thread(interrupt)
    report = RobotRunner(RobotConfig(server.endpoint, ticks=100_000, rate_hz=20.0, timeout_s=60.0)).run(arm)
    assert sent.is_set()
    assert report.stop_reason == "signal"
    assert report.to_dict()["ticks"] >= 5
    assert ends_with_hold_then_stop(arm)  # after the signal: at most the tick in progress, then hold, then stop
    assert len(arm.acts) == report.to_dict()["ticks"]
    assert signal.getsignal(signal.SIGINT) is previous


def test_request_stop_from_another_thread(server):
    arm = FakeArm(wait_acts=4)
    runner = RobotRunner(RobotConfig(server.endpoint, ticks=100_000, rate_hz=20.0, timeout_s=60.0,
                                     install_signal_handlers=False))
    in_thread(lambda: arm.acted.wait(WAIT_S) and runner.request_stop())
    report = runner.run(arm)
    assert report.stop_reason == "signal" and report.to_dict()["ticks"] >= 4
    assert ends_with_hold_then_stop(arm)


def test_a_dead_server_makes_the_arm_hold_and_stops_the_run(server):
    arm = FakeArm()

    def kill_server() -> None:
        if arm.moved.wait(WAIT_S):  # a chunk arrived and the arm moved: now the server dies
            server.stop()

    killer = in_thread(kill_server)
    config = RobotConfig(server.endpoint, ticks=100_000, rate_hz=20.0, timeout_s=3.0, max_consecutive_errors=2,
                         connect_timeout_s=60.0)
    report = RobotRunner(config).run(arm)
    killer.join(WAIT_S)
    flat = report.to_dict()
    assert arm.moved.is_set()
    assert report.stop_reason == "server"
    assert flat["inference_errors"] >= 1 and "PolicyTimeout" in flat["last_error"]
    assert flat["holds"] >= 1  # the loop held while the inferences failed
    assert ends_with_hold_then_stop(arm) and report.last_action_hold


def test_an_adapter_that_fails_still_gets_hold_and_stop(server):
    arm = FakeArm(fail_observe_at=3)
    with pytest.raises(OSError, match="camera unplugged"):
        RobotRunner(RobotConfig(server.endpoint, ticks=100_000, rate_hz=20.0, timeout_s=60.0)).run(arm)
    assert len(arm.acts) == 3 and ends_with_hold_then_stop(arm)


def test_an_unreachable_server_fails_before_the_arm_is_touched():
    arm = FakeArm()
    runner = RobotRunner(RobotConfig("tcp://127.0.0.1:9", connect_timeout_s=0.2))
    with pytest.raises(RuntimeError, match="no reply"):
        runner.connect()
    assert arm.calls == []


@pytest.mark.parametrize("spec, message", [
    ("foo", "expected simpler:TASK[:EPISODE] or module:Class"),
    ("simpler:", "expected simpler:TASK[:EPISODE] or module:Class"),
    ("simpler:no_such_task", "unknown SIMPLER task 'no_such_task'"),
    ("simpler:widowx_spoon_on_towel:x", "EPISODE in simpler:TASK:EPISODE must be an integer"),
    ("simpler:ms3_twin/widowx_spoon_on_towel:24", "off ms3_twin/widowx_spoon_on_towel's grid"),
    ("simpler:widowx_spoon_on_towel", "more than one simulator: simplerenv/widowx_spoon_on_towel, ms3_twin/"),
    ("simpler:widowx_spoon_on_towel:0:1", "expected simpler:TASK[:EPISODE]"),
    ("no_such_module_xyz:Arm", "cannot import module 'no_such_module_xyz'"),
    ("runtime.robot.runner:NoSuchArm", "has no 'NoSuchArm'"),
    ("runtime.robot.runner:RobotConfig", "is not a robot adapter"),
    ("runtime.robot.runner:Robot:Config", "one colon"),
    ("not a module:Arm", "expected module:Class"),
])
def test_bad_robot_specs_name_the_flag(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        parse_robot_spec(spec)
    assert str(error.value).startswith("--robot: ")


def test_good_robot_specs_parse_without_building():
    assert parse_robot_spec("simpler:widowx_eggplant_in_basket:3").kind == "simpler"  # one simulator has it
    assert parse_robot_spec("simpler:ms3_twin/widowx_carrot_on_plate").kind == "simpler"
    assert parse_robot_spec("runtime.robot.template:RealArmAdapter").kind == "class"


def test_the_template_only_explains_what_to_implement():
    with pytest.raises(RuntimeError, match="template.*RealArmAdapter.__init__") as error:
        parse_robot_spec("runtime.robot.template:RealArmAdapter").build()
    assert str(error.value).startswith("--robot runtime.robot.template:RealArmAdapter: ")


def test_cli_errors_name_the_flag(capsys, server):
    assert main(["robot", "--connect", server.endpoint, "--robot", "simpler:nope"]) == 2
    assert "vlart robot: error: --robot: unknown SIMPLER task 'nope'" in capsys.readouterr().err
    assert main(["robot", "--connect", server.endpoint, "--robot", "runtime.robot.template:RealArmAdapter"]) == 2
    assert "--robot runtime.robot.template:RealArmAdapter: " in capsys.readouterr().err
    for flag, value in (("--rate", "0"), ("--timeout", "-1"), ("--ticks", "-3"), ("--max-consecutive-errors", "0"),
                        ("--execution", "fast")):
        with pytest.raises(SystemExit) as exit_:
            main(["robot", "--robot", "simpler:ms3_twin/widowx_spoon_on_towel", flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}:" in capsys.readouterr().err


def test_cli_runs_a_class_adapter_and_writes_json(server, tmp_path, capsys, monkeypatch):
    import types

    module = types.ModuleType("fake_arm_for_vlart_robot_test")
    module.FakeArm = FakeArm
    monkeypatch.setitem(sys.modules, module.__name__, module)
    out = tmp_path / "report.json"
    code = main(["robot", "--connect", server.endpoint, "--robot", f"{module.__name__}:FakeArm", "--ticks", "6",
                 "--rate", "20", "--timeout", "60", "--execution", "hold", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stop reason        ticks" in printed and "effective rate" in printed and "jitter" in printed
    report = json.loads(out.read_text())
    assert report["stop_reason"] == "ticks" and report["ticks"] == 6 and report["execution"] == "hold"
    assert report["last_action_hold"] is True and report["robot"] == {"acts": 6}


# -- the simulator, end to end --------------------------------------------------------------------------------------

def _read_until(process: subprocess.Popen, pattern: str, lines: list[str],
                timeout_s: float) -> tuple[re.Match, threading.Thread]:
    """Wait until a line of ``process``'s output matches ``pattern``; a thread keeps reading every line into
    ``lines`` until the output ends (returned, to join)."""
    found: dict[str, re.Match] = {}
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = re.search(pattern, line)
            if match and not found:
                found["match"] = match
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done.wait(timeout_s)
    assert found, f"{pattern!r} not seen; output:\n{''.join(lines)[-4000:]}"
    return found["match"], reader


@pytest.mark.slow
@pytest.mark.sim
def test_vlart_robot_drives_simpler_and_holds_on_sigint(simpler_assets, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               MS_ASSET_DIR=str(simpler_assets))
    python = sys.executable
    serve = subprocess.Popen([python, "-m", "runtime.app.cli", "serve", "--model", "cogact-tiny", "--bind",
                              "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=REPO, env=env)
    robot = None
    try:
        serve_lines: list[str] = []
        endpoint = _read_until(serve, r"ready on (tcp://\S+)", serve_lines, WAIT_S)[0].group(1)
        out = tmp_path / "out.json"
        robot = subprocess.Popen([python, "-m", "runtime.app.cli", "--verbose", "robot", "--connect", endpoint,
                                  "--robot", "simpler:ms3_twin/widowx_spoon_on_towel:0", "--ticks", "1000",
                                  "--json", str(out)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
        robot_lines: list[str] = []
        _, reader = _read_until(robot, r"tick 1 sent", robot_lines, WAIT_S)  # the simulator is built, it runs
        time.sleep(1.0)  # a few more ticks (5 Hz)
        robot.send_signal(signal.SIGINT)
        code = robot.wait(WAIT_S)
        reader.join(30)
        output = "".join(robot_lines)
        assert code == 0, output
        report = json.loads(out.read_text())
        assert report["stop_reason"] == "signal", output
        assert report["ticks"] >= 1 and report["ticks"] < 1000
        assert report["last_action_hold"] is True
        sim = report["robot"]
        assert sim["last_call"] == "hold" and sim["hold_calls"] == 1
        assert sim["last_action"][:6] == [0.0] * 6  # the hold: no motion, gripper kept
        assert sim["actions"] == report["ticks"] and sim["steps"] == report["ticks"] + 1
        assert "stop reason        signal" in output
    finally:
        if robot is not None and robot.poll() is None:
            robot.kill()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
