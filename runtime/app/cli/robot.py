"""``vlart robot``: the robot side of the real-time loop, against a running ``vlart serve``.

Needs only what ``pip install vlart`` installs (numpy, pyzmq, msgpack): the simulator adapter (``simpler:...``) is
imported only when chosen, and a ``module:Class`` adapter brings its own dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.robot.strategies import STRATEGIES

ROBOT_HELP = ("simpler:TASK[:EPISODE] (a SIMPLER task in the simulator, e.g. simpler:widowx_spoon_on_towel:0) or "
              "module:Class (your RobotAdapter, constructed with no arguments; template: "
              "runtime.robot.template:RealArmAdapter)")
EXIT_SERVER_LOST = 1  # the run ended because inferences kept failing (the arm held and was released)


@dataclass(frozen=True)
class RobotSpec:
    """A parsed ``--robot``: what it names and how to build it (``build()`` constructs the adapter)."""

    text: str
    kind: str  # "simpler" or "class"
    build: Callable[[], Any]


def _simpler_spec(text: str, rest: str) -> RobotSpec:
    parts = rest.split(":")
    if not parts[0] or len(parts) > 2:
        raise ValueError(f"--robot: expected simpler:TASK[:EPISODE], got {text!r}")
    episode = 0
    if len(parts) == 2:
        try:
            episode = int(parts[1])
        except ValueError:
            raise ValueError(f"--robot: EPISODE in simpler:TASK:EPISODE must be an integer, got {parts[1]!r}") from None
        if episode < 0:
            raise ValueError(f"--robot: EPISODE must be >= 0, got {episode}")
    from envs.registry import TASKS
    from envs.simpler_robot import resolve_task

    try:
        task = resolve_task(parts[0])
    except ValueError as exc:
        raise ValueError(f"--robot: {exc}") from None
    grid = TASKS[task].grid_size
    if grid is not None and episode >= grid:
        raise ValueError(f"--robot: episode {episode} is off {task}'s grid (0 .. {grid - 1})")

    def build() -> Any:
        from envs.simpler_robot import SimplerRobotAdapter

        return SimplerRobotAdapter(task, episode_id=episode)

    return RobotSpec(text, "simpler", build)


def _class_spec(text: str, module_name: str, class_name: str) -> RobotSpec:
    from runtime.robot.runner import ADAPTER_METHODS

    if not all(part.isidentifier() for part in module_name.split(".")) or not class_name.isidentifier():
        raise ValueError(f"--robot: expected module:Class (e.g. my_robot.arm:MyArmAdapter), got {text!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--robot: cannot import module {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"--robot: module {module_name!r} has no {class_name!r}")
    missing = [name for name in ADAPTER_METHODS if not callable(getattr(cls, name, None))]
    if not callable(cls) or missing:
        raise ValueError(f"--robot: {text} is not a robot adapter (runtime.robot.runner.RobotAdapter); it lacks "
                         f"{', '.join(missing) or 'a constructor'}")

    def build() -> Any:
        try:
            return cls()
        except NotImplementedError as exc:
            raise RuntimeError(f"--robot {text}: {exc}") from None
        except TypeError as exc:
            raise ValueError(f"--robot: {text} must be constructible with no arguments: {exc}") from None

    return RobotSpec(text, "class", build)


def parse_robot_spec(text: str) -> RobotSpec:
    """``--robot``: ``simpler:TASK[:EPISODE]`` or ``module:Class``; a ValueError naming ``--robot`` otherwise."""
    head, sep, rest = text.partition(":")
    if not sep or not head or not rest:
        raise ValueError(f"--robot: expected simpler:TASK[:EPISODE] or module:Class, got {text!r}")
    if head == "simpler":
        return _simpler_spec(text, rest)
    if ":" in rest:
        raise ValueError(f"--robot: expected module:Class (one colon), got {text!r}")
    return _class_spec(text, head, rest)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def cmd_robot(args: argparse.Namespace) -> int:
    from bridge.client import PolicyClient
    from bridge.keys import load_client_keys
    from runtime.robot.runner import RobotConfig, RobotRunner, format_report

    if bool(args.curve_keys) != bool(args.curve_client):
        raise ValueError("--curve-keys and --curve-client go together")
    spec = parse_robot_spec(args.robot)
    config = RobotConfig(
        endpoint=args.connect, ticks=args.ticks, execution=args.execution, rate_hz=args.rate, timeout_s=args.timeout,
        connect_timeout_s=args.connect_timeout, retries=args.retries,
        max_consecutive_errors=args.max_consecutive_errors, watchdog_s=args.watchdog,
        refill_threshold=args.refill_threshold, seed=args.seed,
    )
    curve = load_client_keys(args.curve_keys, args.curve_client) if args.curve_keys else None
    client = PolicyClient(args.connect, timeout_s=config.connect_timeout_s, retries=config.retries, curve=curve,
                          name="vlart-robot")
    try:
        runner = RobotRunner(config, client)
        hello = runner.connect()
        conventions = hello["conventions"]
        print(f"vlart robot: connected to {hello.get('model', {}).get('name', '?')} at {args.connect} "
              f"(chunk {conventions['chunk_length']}, server rate {conventions['control_rate_hz']:g} Hz; "
              f"running at {runner.rate_hz:g} Hz, timeout {runner.timeout_s:g} s)", flush=True)
        adapter = spec.build()
        length = f"{args.ticks} ticks" if args.ticks is not None else "until stopped"
        print(f"vlart robot: running {spec.text} ({length}; Ctrl-C holds the arm and stops)", flush=True)
        report = runner.run(adapter)  # handles SIGINT/SIGTERM itself: the arm holds and the report follows
    except KeyboardInterrupt:  # before the run started, or a second Ctrl-C during it (the arm was held and released)
        print("vlart robot: interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        client.close()
    print(format_report(report))
    if args.json:
        path = Path(args.json)
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {path}")
    return EXIT_SERVER_LOST if report.stop_reason == "server" else 0


def register(commands: argparse._SubParsersAction) -> None:
    robot = commands.add_parser(
        "robot", help="drive a robot (or a SIMPLER task) in real time from a running `vlart serve`",
        description="Runs the control loop on the robot side: one action per tick at the server's control rate, "
                    "the next chunk inferred while the current one executes. Ends after --ticks, on Ctrl-C/SIGTERM "
                    "or when --max-consecutive-errors inferences in a row fail (exit code 1); the arm then holds "
                    "(zero motion, gripper kept) and is released.")
    robot.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                       help="server endpoint (default tcp://127.0.0.1:5555)")
    robot.add_argument("--robot", required=True, metavar="ADAPTER", help=ROBOT_HELP)
    robot.add_argument("--ticks", type=_int_at_least(0), default=None, metavar="N",
                       help="control ticks to run (default: until Ctrl-C/SIGTERM)")
    robot.add_argument("--execution", default="ensemble", choices=tuple(STRATEGIES),
                       help="how a new chunk joins the plan (default ensemble; runtime/robot/control_loop.py)")
    robot.add_argument("--rate", type=_positive_float, default=None, metavar="HZ",
                       help="control rate (default: the server's control_rate_hz)")
    robot.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                       help="seconds per inference before it counts as failed (default max(1, 5 periods))")
    robot.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="S",
                       help="seconds for the server's hello and reset (default 10)")
    robot.add_argument("--retries", type=_int_at_least(0), default=0,
                       help="client retries per request (default 0: the next tick asks again, with a fresh frame)")
    robot.add_argument("--max-consecutive-errors", type=_int_at_least(1), default=3, metavar="K",
                       help="stop (stop_reason server, exit code 1) after K failed inferences in a row (default 3)")
    robot.add_argument("--watchdog", type=_positive_float, default=None, metavar="S",
                       help="hold once no fresh chunk has arrived for S seconds (default: the timeout + one period)")
    robot.add_argument("--refill-threshold", type=_int_at_least(0), default=None, metavar="N",
                       help="ask for the next chunk when fewer than N planned actions remain (default: the chunk "
                            "length, i.e. always one inference in flight)")
    robot.add_argument("--seed", type=int, default=None, help="seed the server's noise (seed + tick per inference)")
    robot.add_argument("--curve-keys", default=None, metavar="DIR", help="key directory (holds server.key)")
    robot.add_argument("--curve-client", default=None, metavar="NAME", help="this client's key pair in DIR/clients")
    robot.add_argument("--json", default=None, metavar="REPORT.json", help="write the report as JSON")
    robot.set_defaults(func=cmd_robot, log_level=logging.WARNING)
