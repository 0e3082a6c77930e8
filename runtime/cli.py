"""The ``vlart`` command: one entry point, one subcommand per job.

Heavy imports (torch, transformers) happen inside the subcommands, so ``vlart --help`` is instant and the robot
side never pays for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Optional, Sequence

# No code path may reach a model hub: everything is built from configs or read from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _load_image(path: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

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
    policy = load_policy(args.model, unnorm_key=args.unnorm_key, device=args.device)
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

    config = load_config(args.model)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlart", description="A runtime for vision-language-action robot policies.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="one action chunk for one image and instruction")
    predict.add_argument("--model", required=True, help="model config YAML or vlart checkpoint directory")
    predict.add_argument("--image", required=True, help="RGB image file (PNG, JPEG)")
    predict.add_argument("--instruction", required=True, help="language instruction")
    predict.add_argument("--seed", type=int, default=0, help="seed of the initial diffusion noise (default 0)")
    predict.add_argument("--unnorm-key", default=None, help="dataset statistics key (default: the config's)")
    predict.add_argument("--device", default=None, help="torch device (default: the config's)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=cmd_predict)

    info = commands.add_parser("info", help="parameter counts per module, without allocating weights")
    info.add_argument("--model", required=True, help="model config YAML")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"vlart {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
