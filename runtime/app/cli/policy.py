"""``vlart predict``, ``info``, ``flops``, ``export``, ``convert``: one policy, its size, its cost, its files."""

from __future__ import annotations

import argparse
import json

from runtime.app.cli.common import load_image, model_options


def cmd_predict(args: argparse.Namespace) -> int:
    from policies.api.interface import Observation
    from runtime.app.policy_loader import load_policy_with_preset

    image = load_image(args.image)
    policy = load_policy_with_preset(args.model, args.preset, args.plan, unnorm_key=args.unnorm_key,
                                     device=args.device, overrides=args.set)
    output = policy.predict_action(Observation(image=image, instruction=args.instruction), seed=args.seed)
    result = {
        "model": args.model,
        "instruction": args.instruction,
        "seed": args.seed,
        "preset": policy.preset,
        "compiled": policy.metadata["compiled"],
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

    from policies.loading import model_config
    from policies.policy import CogACTPolicy

    config = model_config(args.model, args.set)
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


def cmd_flops(args: argparse.Namespace) -> int:
    import copy

    import torch

    from policies.acceleration.calibration import CalibrationPlan
    from policies.flops import StepShape, count_flops
    from policies.loading import model_config
    from policies.policy import CogACTPolicy
    from policies.presets import apply_preset, load_preset

    config = model_config(args.model, args.set)
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


def cmd_export(args: argparse.Namespace) -> int:
    from policies.loading import export_model

    written = export_model(args.model, args.format, args.out, unnorm_key=args.unnorm_key, overrides=args.set,
                           weights_dtype=args.weights_dtype)
    print(f"vlart export: wrote {written} ({args.format})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import resource

    from policies.loading import convert_release

    written = convert_release(args.source, args.to, dtype=args.dtype, unnorm_key=args.unnorm_key, overrides=args.set)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"vlart convert: wrote {written} (peak RSS {peak_mib:.0f} MiB)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="one action chunk for one image and instruction",
        parents=[model_options(presets="one", plan=True, device=True, unnorm_key=True, compile="flag")])
    predict.add_argument("--image", required=True, help="RGB image file (PNG, JPEG)")
    predict.add_argument("--instruction", required=True, help="language instruction")
    predict.add_argument("--seed", type=int, default=0, help="seed of the initial diffusion noise (default 0)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=cmd_predict)

    info = commands.add_parser("info", help="parameter counts per module, without allocating weights",
                               parents=[model_options()])
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    flops = commands.add_parser("flops", help="FLOPs per module and preset, on the meta device (no memory)",
                                parents=[model_options(presets="many")])
    flops.add_argument("--text-tokens", type=int, default=26,
                       help="non-visual LLM tokens (default 26: BOS + CogACT's prompt, 282 tokens in all)")
    flops.add_argument("--json", action="store_true")
    flops.set_defaults(func=cmd_flops)

    export = commands.add_parser(
        "export", help="write a model as a CogACT .pt or release directory, a CogACT key manifest, or vlart safetensors",
        parents=[model_options(unnorm_key=True)])
    export.add_argument("--format", required=True,
                        choices=["cogact-pt", "cogact-release", "cogact-manifest", "safetensors"],
                        help="cogact-pt: FILE.pt in CogACT's layout; cogact-release: a release DIR; cogact-manifest: "
                             "FILE.json of every CogACT key and shape (meta device, no weights); safetensors: a vlart "
                             "checkpoint DIR")
    export.add_argument("--out", required=True, help="output file (cogact-pt, cogact-manifest) or directory")
    export.add_argument("--weights-dtype", default=None, choices=["fp32", "fp16", "bf16"],
                        help="safetensors: store the weights in this dtype (the model still runs in runtime.dtype)")
    export.set_defaults(func=cmd_export)

    convert = commands.add_parser(
        "convert", help="CogACT release directory -> vlart checkpoint (safetensors)",
        description="Every unnorm key of the release is kept; --unnorm-key chooses the checkpoint's default.",
        parents=[model_options(model="none", unnorm_key=True)])
    convert.add_argument("--from", dest="source", required=True, metavar="COGACT_DIR", help="CogACT release directory")
    convert.add_argument("--to", required=True, metavar="DIR", help="vlart checkpoint directory to write")
    convert.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                         help="weights dtype (default fp32)")
    convert.set_defaults(func=cmd_convert)
