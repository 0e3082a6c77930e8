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
    from policies.interface import Observation
    from runtime.policy_loader import load_policy_with_preset

    image = _load_image(args.image)
    policy = load_policy_with_preset(args.model, args.preset, args.plan, unnorm_key=args.unnorm_key,
                                     device=args.device, overrides=args.set)
    output = policy.predict_action(Observation(image=image, instruction=args.instruction), seed=args.seed)
    result = {
        "model": args.model,
        "instruction": args.instruction,
        "seed": args.seed,
        "preset": policy.preset,
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
    from policies.interface import Observation
    from runtime.policy_loader import load_policy_with_preset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    curve = load_server_keys(args.curve_keys) if args.curve_keys else None
    policy = load_policy_with_preset(args.model, args.preset, args.plan, unnorm_key=args.unnorm_key,
                                     device=args.device, overrides=args.set)
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
                            budget_path=args.budget, overrides=overrides, device=args.device, plan_path=args.plan)
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
        preset=args.preset, plan=args.plan,
    )
    result = run_eval(config)
    print(describe(result).replace("results.json", str(out / "results.json")))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    import copy

    import torch

    from policies.acceleration.calibration import CalibrationPlan
    from policies.config import load_config
    from policies.flops import StepShape, count_flops
    from policies.policy import CogACTPolicy
    from policies.presets import apply_preset, load_preset

    config = load_config(args.model, args.set)
    rows = []
    for name in args.preset or ["baseline"]:
        preset = load_preset(name)
        with torch.device("meta"):
            policy = CogACTPolicy(copy.deepcopy(config))
            llm = config.llm
            # Which layers and channels go does not change FLOPs: an arbitrary plan gives the pruned shapes.
            plan = CalibrationPlan.placeholder(config.name, llm.num_layers, llm.intermediate_size)
            apply_preset(policy, preset, plan)
        rows.append(count_flops(policy, StepShape(text_tokens=args.text_tokens)))
    base_total = rows[0]["gflops"]["total"]
    for row in rows:
        row["ratio_vs_first"] = round(row["gflops"]["total"] / base_total, 4)
    if args.json:
        print(json.dumps({"model": config.name, "runs": rows}))
        return 0
    print(f"{config.name}: GFLOPs per step (2 x MACs of linear/conv layers; {rows[0]['llm_tokens']} LLM tokens)")
    keys = ["vision", "projector", "llm", "lm_head", "action_head", "total"]
    print(f"{'preset':<24}" + "".join(f"{k:>13}" for k in keys) + f"{'vs first':>10}{'attn scores':>13}{'executed':>11}")
    for row in rows:
        print(f"{row['preset']:<24}" + "".join(f"{row['gflops'][k]:>13.2f}" for k in keys)
              + f"{100 * row['ratio_vs_first']:>9.1f}%{row['attention_scores_gflops']:>13.2f}"
              + f"{row['executed_gflops']:>11.2f}")
    print("total follows EfficientVLA's convention (every ViT block, LM head over the full sequence, attention scores "
          "apart); executed = what vlart runs (no last ViT block, no LM head) plus attention scores")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import logging

    from policies.acceleration.calibration import calibrate
    from policies.factory import load_policy
    from runtime.calibration_data import calibration_observations

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    policy = load_policy(args.model, device=args.device, overrides=args.set)
    observations, source = calibration_observations(args.frames, policy, args.tasks)
    plan = calibrate(policy, observations, mlp_rule=args.mlp_rule)
    plan.save(args.out)
    ranked = sorted(range(plan.num_layers), key=lambda i: plan.layer_importance[i])
    print(f"calibrated {policy.config.name} on {len(observations)} observations from {source}")
    print("layer importance (1 - mean cos(in, out)), least important first: "
          + ", ".join(f"{i}:{plan.layer_importance[i]:.4f}" for i in ranked))
    print(f"wrote {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from policies.cogact_release import export_model

    written = export_model(args.model, args.format, args.out, unnorm_key=args.unnorm_key, overrides=args.set,
                           weights_dtype=args.weights_dtype)
    print(f"vlart export: wrote {written} ({args.format})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import resource

    from policies.cogact_release import convert_release

    written = convert_release(args.source, args.to, dtype=args.dtype, unnorm_key=args.unnorm_key, overrides=args.set)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"vlart convert: wrote {written} (peak RSS {peak_mib:.0f} MiB)")
    return 0


def cmd_demos(args: argparse.Namespace) -> int:
    from pathlib import Path

    from envs.demos import generate_demos

    summary = generate_demos(args.task, args.episodes, Path(args.out), workers=args.workers, seed=args.seed,
                             image_size=args.image_size, action_noise=args.action_noise)
    print(f"{args.task}: {summary['episodes']} successful demonstrations in {args.out} "
          f"(expert success {100 * summary['expert_success_rate']:.1f}% over {summary['attempts']} attempts, "
          f"{summary['wall_time_s']:.1f} s this run with {args.workers} worker(s))")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from policies.training.trainer import TrainConfig, train

    config = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, repeats=args.repeats,
                         checkpoint_every=args.checkpoint_every, augment=not args.no_augment, seed=args.seed,
                         precision=args.precision, warmup_steps=args.warmup_steps, schedule=args.schedule,
                         aux_weight=args.aux_weight)
    summary = train(args.model, args.data, args.out, config, overrides=args.set, device=args.device)
    print(f"trained {summary['steps']} steps on {summary['episodes']} episodes ({summary['samples']} samples) in "
          f"{summary['wall_time_s']:.0f} s; final loss {summary['final_loss']:.4f}; checkpoint {summary['checkpoint']}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from bridge.keys import generate_keys

    for path in generate_keys(args.directory, args.client or ["client"]):
        print(path)
    return 0


PRESET_HELP = "acceleration preset (configs/presets: efficientvla, tokens-only, cache-only, layers-mlp, fastv, ...)"
PLAN_HELP = "calibration plan from `vlart calibrate` (without one, presets that prune calibrate on the spot)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlart", description="A runtime for vision-language-action robot policies.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="one action chunk for one image and instruction")
    predict.add_argument("--model", required=True, help="model config YAML or vlart checkpoint directory")
    predict.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. runtime.dtype=bfloat16")
    predict.add_argument("--preset", default=None, help=PRESET_HELP)
    predict.add_argument("--plan", default=None, metavar="PLAN.json", help=PLAN_HELP)
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
    serve.add_argument("--preset", default=None, help=PRESET_HELP)
    serve.add_argument("--plan", default=None, metavar="PLAN.json", help=PLAN_HELP)
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
    profile.add_argument("--plan", default=None, metavar="PLAN.json", help=PLAN_HELP)
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
    evaluate.add_argument("--preset", default=None, help=PRESET_HELP)
    evaluate.add_argument("--plan", default=None, metavar="PLAN.json", help=PLAN_HELP)
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

    flops = commands.add_parser("flops", help="FLOPs per module and preset, on the meta device (no memory)")
    flops.add_argument("--model", required=True, help="model config YAML")
    flops.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    flops.add_argument("--preset", action="append", help=PRESET_HELP + " (repeatable)")
    flops.add_argument("--text-tokens", type=int, default=26,
                       help="non-visual LLM tokens (default 26: BOS + CogACT's prompt, 282 tokens in all)")
    flops.add_argument("--json", action="store_true")
    flops.set_defaults(func=cmd_flops)

    calibrate = commands.add_parser("calibrate", help="score LLM layers and MLP channels on real observations")
    calibrate.add_argument("--model", required=True, help="model config YAML or checkpoint")
    calibrate.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    calibrate.add_argument("--frames", type=int, default=16, help="calibration observations (default 16)")
    calibrate.add_argument("--tasks", nargs="+", default=None, help="SIMPLER tasks to draw frames from")
    calibrate.add_argument("--mlp-rule", default="activation", choices=["activation", "weight"])
    calibrate.add_argument("--device", default=None)
    calibrate.add_argument("--out", required=True, metavar="PLAN.json")
    calibrate.set_defaults(func=cmd_calibrate)

    export = commands.add_parser(
        "export", help="write a model as a CogACT .pt or release directory, a CogACT key manifest, or vlart safetensors"
    )
    export.add_argument("--model", required=True,
                        help="model config YAML, vlart checkpoint directory or CogACT release directory")
    export.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    export.add_argument("--format", required=True,
                        choices=["cogact-pt", "cogact-release", "cogact-manifest", "safetensors"],
                        help="cogact-pt: FILE.pt in CogACT's layout; cogact-release: a release DIR; cogact-manifest: "
                             "FILE.json of every CogACT key and shape (meta device, no weights); safetensors: a vlart "
                             "checkpoint DIR")
    export.add_argument("--out", required=True, help="output file (cogact-pt, cogact-manifest) or directory")
    export.add_argument("--unnorm-key", default=None, help="dataset statistics key (default: the model's)")
    export.add_argument("--weights-dtype", default=None, choices=["fp32", "fp16", "bf16"],
                        help="safetensors: store the weights in this dtype (the model still runs in runtime.dtype)")
    export.set_defaults(func=cmd_export)

    convert = commands.add_parser("convert", help="CogACT release directory -> vlart checkpoint (safetensors)")
    convert.add_argument("--from", dest="source", required=True, metavar="COGACT_DIR", help="CogACT release directory")
    convert.add_argument("--to", required=True, metavar="DIR", help="vlart checkpoint directory to write")
    convert.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                         help="weights dtype (default fp32)")
    convert.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    convert.add_argument("--unnorm-key", default=None,
                         help="default unnorm key stored in the checkpoint (all keys are kept)")
    convert.set_defaults(func=cmd_convert)

    demos = commands.add_parser("demos", help="scripted expert demonstrations of a SIMPLER task (HDF5)")
    demos.add_argument("--task", required=True, help="a simpler/widowx_... task")
    demos.add_argument("--episodes", type=int, default=100, help="successful episodes to keep (default 100)")
    demos.add_argument("--workers", type=int, default=1)
    demos.add_argument("--seed", type=int, default=0, help="placement seed (attempt k uses seed * 1000003 + k)")
    demos.add_argument("--image-size", type=int, default=224, help="stored frame size (the policy's input)")
    demos.add_argument("--action-noise", type=float, default=0.0,
                       help="std (metres) of noise on each executed dx, dy, dz; the recorded actions stay clean (DART)")
    demos.add_argument("--out", required=True, help="dataset folder (resumable; several tasks may share it)")
    demos.set_defaults(func=cmd_demos)

    training = commands.add_parser("train", help="train a policy on vlart demonstrations (CogACT's objective)")
    training.add_argument("--model", required=True, help="model config YAML (or a vlart checkpoint to fine-tune)")
    training.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    training.add_argument("--data", required=True, help="demonstrations folder (vlart demos)")
    training.add_argument("--steps", type=int, default=1000)
    training.add_argument("--batch", type=int, default=8)
    training.add_argument("--lr", type=float, default=1e-4)
    training.add_argument("--repeats", type=int, default=4, help="noise draws per sample (CogACT: 8)")
    training.add_argument("--checkpoint-every", type=int, default=200)
    training.add_argument("--no-augment", action="store_true")
    training.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                          help="bfloat16: autocast mixed precision (float32 weights)")
    training.add_argument("--warmup-steps", type=int, default=0)
    training.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    training.add_argument("--aux-weight", type=float, default=0.0,
                          help="weight of an auxiliary linear regression of the chunk from the cognition feature "
                               "(training from scratch; 0 = CogACT's objective alone)")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--device", default=None)
    training.add_argument("--out", required=True, help="checkpoint folder (resumes when it holds a run)")
    training.set_defaults(func=cmd_train)

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
