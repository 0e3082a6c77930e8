"""The ``vlart`` command: one entry point, one subcommand per job.

Heavy imports (torch, transformers) happen inside the subcommands, so ``vlart --help`` is instant and the robot
side never pays for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Optional, Sequence

# No code path may reach a model hub: everything is built from configs or read from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _load_image(path: str):
    import numpy as np

    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise RuntimeError("--image: reading image files needs Pillow (pip install pillow)") from None

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"--image: no such file: {path}") from None
    except UnidentifiedImageError:
        raise ValueError(f"--image: not an image file: {path}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    from policies.factory import load_policy
    from policies.interface import Observation

    image = _load_image(args.image)
    policy = load_policy(args.model, unnorm_key=args.unnorm_key, device=args.device, overrides=args.set)
    output = policy.predict_action(Observation(image=image, instruction=args.instruction), seed=args.seed)
    result = {
        "model": args.model,
        "instruction": args.instruction,
        "seed": args.seed,
        "unnorm_key": policy.conventions.unnorm_key,
        "action_names": list(policy.conventions.action_names),
        "actions": output.actions.tolist(),
        "normalized_actions": output.normalized_actions.tolist(),
        "action": output.action.tolist(),
        "timings_ms": {k: round(v, 3) for k, v in output.timings_ms.items()},
    }
    if args.json:
        print(json.dumps(result))
        return 0
    names = result["action_names"]
    print(f"{args.model}: {args.instruction!r} (unnorm_key {result['unnorm_key']}, seed {args.seed})")
    print("step " + " ".join(f"{n:>9}" for n in names))
    for i, row in enumerate(output.actions):
        print(f"{i:>4} " + " ".join(f"{v:>9.5f}" for v in row))
    print("ensembled action: " + " ".join(f"{v:.5f}" for v in output.action))
    print("timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_ms"].items()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from policies.config import load_config
    from policies.policy import CogACTPolicy

    config = load_config(args.model, args.set)
    with torch.device("meta"):
        policy = CogACTPolicy(config)
    counts = policy.parameter_counts()
    if args.json:
        print(json.dumps({"model": config.name, "parameters": counts}))
        return 0
    print(f"{config.name}: parameters per module (built on the meta device, no weights allocated)")
    for name, count in counts.items():
        print(f"  {name:<12} {count:>15,d}  {count / 1e6:>10.1f} M")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import signal

    import numpy as np

    from bridge.keys import load_server_keys
    from bridge.server import PolicyServer
    from policies.factory import load_policy
    from policies.interface import Observation

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    curve = load_server_keys(args.curve_keys) if args.curve_keys else None
    policy = load_policy(args.model, unnorm_key=args.unnorm_key, device=args.device, overrides=args.set)
    size = policy.conventions.image_size
    for _ in range(args.warmup):  # the first forward passes are slow; no client should pay for them
        policy.session().predict_action(Observation(np.full((size, size, 3), 128, np.uint8), "warm up"), seed=0)
    budget = None
    if args.budget:
        from runtime.budgets import LatencyBudget, load_budget

        budget = LatencyBudget(load_budget(args.budget))
    server = PolicyServer(policy, bind=args.bind, curve=curve, max_message_bytes=int(args.max_message_mb * 2**20),
                          budget=budget)
    signal.signal(signal.SIGINT, lambda *_: server.request_stop())
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    server.start()
    print(f"vlart serve: ready on {server.endpoint}" + (" (CURVE)" if curve else ""), flush=True)
    server.join()
    print("vlart serve: stopped", flush=True)
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    from bridge.client import PolicyClient
    from bridge.keys import load_client_keys

    if bool(args.curve_keys) != bool(args.curve_client):
        raise ValueError("--curve-keys and --curve-client go together")
    curve = load_client_keys(args.curve_keys, args.curve_client) if args.curve_keys else None
    image = _load_image(args.image)
    with PolicyClient(args.connect, timeout_s=args.timeout, retries=args.retries, curve=curve) as client:
        info = client.hello()
        result = client.infer({info["conventions"]["image_keys"][0]: image}, args.instruction, seed=args.seed)
    if args.json:
        print(json.dumps({
            "model": info["model"],
            "conventions": info["conventions"],
            "actions": result.actions.tolist(),
            "normalized_actions": result.normalized_actions.tolist(),
            "action": result.action.tolist(),
            "server_timing": result.server_timing,
            "round_trip_ms": round(result.round_trip_ms, 3),
        }))
        return 0
    names = info["conventions"]["action_names"]
    print(f"{info['server']} protocol {info['protocol']} at {args.connect}: model {info['model']['name']}")
    print("step " + " ".join(f"{n:>9}" for n in names))
    for i, row in enumerate(result.actions):
        print(f"{i:>4} " + " ".join(f"{v:>9.5f}" for v in row))
    print("action to execute: " + " ".join(f"{v:.5f}" for v in result.action))
    print(f"round trip {result.round_trip_ms:.1f} ms; server: "
          + ", ".join(f"{k} {v:.1f}" for k, v in result.server_timing.items()))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from runtime.profile import format_table, plot, profile_policy, write_json

    overrides = list(args.set or [])
    if args.ddim_steps:
        overrides.append("runtime.timing=steps")
    result = profile_policy(args.model, args.preset or ["baseline"], steps=args.steps, warmup=args.warmup,
                            budget_path=args.budget, overrides=overrides, device=args.device)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from envs.eval_runner import EvalConfig, describe, run_eval

    out = Path(args.out) if args.out else Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    config = EvalConfig(
        suite=args.suite, model=args.model, via=args.via, connect=args.connect, episodes=args.episodes,
        max_steps=args.max_steps, workers=args.workers, out=out, seed=args.seed, overrides=args.set or [],
        unnorm_key=args.unnorm_key, budget=args.budget, step_timeout_s=args.step_timeout,
        episode_timeout_s=args.episode_timeout, video=not args.no_video, inject_fault=args.inject_fault,
    )
    result = run_eval(config)
    print(describe(result).replace("results.json", str(out / "results.json")))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from bridge.keys import generate_keys

    for path in generate_keys(args.directory, args.client or ["client"]):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlart", description="A runtime for vision-language-action robot policies.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="one action chunk for one image and instruction")
    predict.add_argument("--model", required=True, help="model config YAML or vlart checkpoint directory")
    predict.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. runtime.dtype=bfloat16")
    predict.add_argument("--image", required=True, help="RGB image file (PNG, JPEG)")
    predict.add_argument("--instruction", required=True, help="language instruction")
    predict.add_argument("--seed", type=int, default=0, help="seed of the initial diffusion noise (default 0)")
    predict.add_argument("--unnorm-key", default=None, help="dataset statistics key (default: the config's)")
    predict.add_argument("--device", default=None, help="torch device (default: the config's)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=cmd_predict)

    info = commands.add_parser("info", help="parameter counts per module, without allocating weights")
    info.add_argument("--model", required=True, help="model config YAML")
    info.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. runtime.dtype=bfloat16")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    serve = commands.add_parser("serve", help="serve a policy over ZeroMQ")
    serve.add_argument("--model", required=True, help="model config YAML or vlart checkpoint directory")
    serve.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. runtime.dtype=bfloat16")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint (default loopback :5555)")
    serve.add_argument("--curve-keys", default=None, metavar="DIR", help="require CURVE: keys from `vlart keys generate`")
    serve.add_argument("--unnorm-key", default=None)
    serve.add_argument("--device", default=None)
    serve.add_argument("--max-message-mb", type=float, default=64.0, help="largest request accepted (MiB)")
    serve.add_argument("--warmup", type=int, default=1, help="forward passes before serving (default 1)")
    serve.add_argument("--budget", default=None, help="latency budget YAML checked on every inference")
    serve.set_defaults(func=cmd_serve)

    client = commands.add_parser("client", help="call a running server once and print the actions")
    client.add_argument("--connect", default="tcp://127.0.0.1:5555", help="server endpoint")
    client.add_argument("--image", required=True, help="RGB image file")
    client.add_argument("--instruction", required=True)
    client.add_argument("--seed", type=int, default=None)
    client.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt (default 30)")
    client.add_argument("--retries", type=int, default=1)
    client.add_argument("--curve-keys", default=None, metavar="DIR", help="key directory (holds server.key)")
    client.add_argument("--curve-client", default=None, metavar="NAME", help="this client's key pair in DIR/clients")
    client.add_argument("--json", action="store_true")
    client.set_defaults(func=cmd_client)

    profile = commands.add_parser("profile", help="per-stage latency per preset, against a latency budget")
    profile.add_argument("--model", required=True, help="model config YAML or vlart checkpoint directory")
    profile.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. runtime.dtype=bfloat16")
    profile.add_argument("--preset", action="append", help="preset to profile (repeatable; default baseline)")
    profile.add_argument("--steps", type=int, default=20)
    profile.add_argument("--warmup", type=int, default=3)
    profile.add_argument("--budget", default=None, help="budget YAML (configs/budgets/); default: one control period")
    profile.add_argument("--device", default=None)
    profile.add_argument("--ddim-steps", action="store_true", help="also time each DDIM step")
    profile.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    profile.add_argument("--plot", default=None, metavar="OUT.png", help="draw stage bars and a per-step timeline")
    profile.set_defaults(func=cmd_profile)

    evaluate = commands.add_parser("eval", help="evaluate a policy on simulator tasks (SIMPLER)")
    evaluate.add_argument("--suite", required=True, help="suite (simpler_widowx, quick) or task (simpler/...)")
    evaluate.add_argument("--model", default=None, help="model config YAML or checkpoint (served unless --connect)")
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a model config key")
    evaluate.add_argument("--via", default="zmq", choices=["zmq", "inproc"],
                          help="zmq: through a vlart server and the thin client, as a robot (default); inproc")
    evaluate.add_argument("--connect", default=None, help="use this running server instead of starting one")
    evaluate.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the full grid)")
    evaluate.add_argument("--max-steps", type=int, default=None, help="cap on steps per episode")
    evaluate.add_argument("--workers", type=int, default=1, help="worker processes")
    evaluate.add_argument("--out", default=None, help="output folder (default runs/eval-TIMESTAMP)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--unnorm-key", default=None)
    evaluate.add_argument("--budget", default=None, help="latency budget YAML; violations counted per episode")
    evaluate.add_argument("--step-timeout", type=float, default=120.0, help="seconds to wait for one action")
    evaluate.add_argument("--episode-timeout", type=float, default=None, help="episode watchdog (seconds)")
    evaluate.add_argument("--no-video", action="store_true", help="do not write mp4 videos")
    evaluate.add_argument("--inject-fault", default=None, metavar="crash|hang:EPISODE:STEP",
                          help="make that episode fail at that step (to check failure handling)")
    evaluate.set_defaults(func=cmd_eval)

    keys = commands.add_parser("keys", help="CURVE key pairs for the server and its clients")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = keys_commands.add_parser("generate", help="make a server key pair and client key pairs")
    generate.add_argument("directory")
    generate.add_argument("--client", action="append", help="client name (repeatable; default: client)")
    generate.set_defaults(func=cmd_keys)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"vlart {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
