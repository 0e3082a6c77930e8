"""``vlart eval``, ``profile``, ``calibrate``: success on simulator tasks, latency per preset, pruning plans."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Optional

from runtime.app.cli.common import model_options


def soft_rows(value: str) -> Optional[int]:
    """--rtc-soft-rows: a row count, or ``all`` (None: the whole remaining plan)."""
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row count or all, got {value!r}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runtime.app.evaluation import EvalConfig, describe, run_eval
    from envs.timed_episode import TimingConfig, latency_from_profile

    if args.latency_ms is not None and args.latency_from:
        raise ValueError("--latency-ms and --latency-from: give one latency, not both")
    if args.latency_scale != 1.0 and not args.latency_from:
        raise ValueError("--latency-scale scales a profile's latency: it needs --latency-from")
    latency_ms, source = args.latency_ms, "--latency-ms" if args.latency_ms is not None else None
    if args.latency_from:
        latency_ms, source = latency_from_profile(args.latency_from, args.latency_scale)
    timing = TimingConfig(args.timing, args.execution, latency_ms, source, args.rtc_soft_rows, args.replan_every)
    out = Path(args.out) if args.out else Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    config = EvalConfig(
        suite=args.suite, model=args.model, via=args.via, connect=args.connect, episodes=args.episodes,
        max_steps=args.max_steps, workers=args.workers, out=out, seed=args.seed, overrides=args.set or [],
        unnorm_key=args.unnorm_key, budget=args.budget, step_timeout_s=args.step_timeout,
        episode_timeout_s=args.episode_timeout, video=not args.no_video,
        preset=args.preset, plan=args.plan, grid=args.grid, timing=timing, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
    )
    result = run_eval(config)
    print(describe(result).replace("results.json", str(out / "results.json")))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from runtime.app.profile import format_table, plot, profile_policy, write_json

    overrides = list(args.set or [])
    if args.ddim_steps:
        overrides.append("runtime.timing=steps")
    result = profile_policy(args.model, args.preset or ["baseline"], steps=args.steps, warmup=args.warmup,
                            budget_path=args.budget, overrides=overrides, device=args.device, plan_path=args.plan,
                            compile_mode=args.compile)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from policies.acceleration.calibration import calibrate
    from policies.loading import load_policy
    from runtime.app.calibration_data import calibration_observations

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


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval", help="evaluate a policy on simulator tasks (SIMPLER)",
        description="--model is served by vlart unless --connect names a running server.",
        parents=[model_options(model="optional", presets="one", plan=True, unnorm_key=True, compile="flag")])
    evaluate.add_argument("--suite", required=True,
                          help="suite (simplerenv_bridge, simplerenv_google_vm, simplerenv: SIMPLER as published; "
                               "ms3_twin_bridge: ManiSkill3's twins; quick) or task (simplerenv/..., ms3_twin/...)")
    evaluate.add_argument("--via", default="zmq", choices=["zmq", "inproc"],
                          help="zmq: through a vlart server and the thin client, as a robot (default); inproc")
    evaluate.add_argument("--connect", default=None, help="use this running server instead of starting one")
    evaluate.add_argument("--grid", default="official", choices=["official", "heldout"],
                          help="official: SIMPLER's episode grid (the test set; default); heldout: placements off it, "
                               "for choosing settings (envs/placements.py)")
    evaluate.add_argument("--timing", default="lockstep", choices=["lockstep", "delay", "wallclock"],
                          help="lockstep: the simulator waits for the policy (SIMPLER's protocol; default); delay: a "
                               "simulated latency of d = ceil(latency / period) ticks, reproducible; wallclock: "
                               "paced in real time with this machine's latency")
    evaluate.add_argument("--execution", default="ensemble", choices=["hold", "ensemble", "blend", "rtc"],
                          help="how chunks are executed under delay/wallclock timing: hold (newest chunk replaces), "
                               "ensemble (CogACT's adaptive ensemble; default), blend (LeRobot's 0.3/0.7 average), "
                               "rtc (real-time chunking: inpaint the new chunk to continue the executing one)")
    evaluate.add_argument("--rtc-soft-rows", type=soft_rows, default=0, metavar="N|all",
                          help="--execution rtc: overlap rows the new chunk softly follows after the frozen ones "
                               "(default 0: only the frozen rows, RTC's hard mask, chosen on the held-out grid; "
                               "all: the whole remaining plan, RTC's soft region)")
    evaluate.add_argument("--replan-every", type=int, default=None, metavar="S",
                          help="--timing delay/wallclock: ask for a chunk once S actions have executed (the "
                               "open-loop horizon; default: as soon as the previous chunk has delivered)")
    evaluate.add_argument("--latency-ms", type=float, default=None, help="--timing delay: the inference latency")
    evaluate.add_argument("--latency-from", default=None, metavar="PROFILE.json[:LABEL]",
                          help="--timing delay: the p50 of the whole predict in a `vlart profile --json` file")
    evaluate.add_argument("--latency-scale", type=float, default=1.0,
                          help="multiply --latency-from's latency (e.g. to model a slower or faster machine)")
    evaluate.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the full grid)")
    evaluate.add_argument("--max-steps", type=int, default=None,
                          help="steps per episode (default: the task's SIMPLER horizon; CogACT's Bridge script: 120)")
    evaluate.add_argument("--workers", type=int, default=1, help="worker processes")
    evaluate.add_argument("--max-batch", type=int, default=None,
                          help="--via zmq with --model: the server's dynamic batching, at most this many workers' "
                               "requests per forward pass (default: --workers; 1: no batching)")
    evaluate.add_argument("--batch-wait-ms", type=float, default=100.0,
                          help="--via zmq with --model: how long a batch waits for workers that have not sent yet "
                               "(default 100)")
    evaluate.add_argument("--out", default=None, help="output folder (default runs/eval-TIMESTAMP)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--budget", default=None, help="latency budget YAML; violations counted per episode")
    evaluate.add_argument("--step-timeout", type=float, default=120.0, help="seconds to wait for one action")
    evaluate.add_argument("--episode-timeout", type=float, default=None, help="episode watchdog (seconds)")
    evaluate.add_argument("--no-video", action="store_true", help="do not write mp4 videos")
    evaluate.set_defaults(func=cmd_eval)

    profile = commands.add_parser(
        "profile", help="per-stage latency per preset, against a latency budget",
        description="Every preset's policy is built first (all are held in memory at once), then the presets take "
                    "turns, one step each per round on the same frame and seed; the speedup over the first preset "
                    "is given from the p50 and from the mean of the whole predict.",
        parents=[model_options(presets="many", plan=True, device=True, compile="both")])
    profile.add_argument("--steps", type=int, default=20, help="counted rounds (default 20)")
    profile.add_argument("--warmup", type=int, default=3, help="warm-up rounds, not counted (default 3)")
    profile.add_argument("--budget", default=None, help="budget YAML (configs/budgets/); default: one control period")
    profile.add_argument("--ddim-steps", action="store_true", help="also time each DDIM step")
    profile.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    profile.add_argument("--plot", default=None, metavar="OUT.png", help="draw stage bars and a per-step timeline")
    profile.set_defaults(func=cmd_profile)

    calibrate = commands.add_parser("calibrate", help="score LLM layers and MLP channels on real observations",
                                    parents=[model_options(device=True)])
    calibrate.add_argument("--frames", type=int, default=16, help="calibration observations (default 16)")
    calibrate.add_argument("--tasks", nargs="+", default=None, help="SIMPLER tasks to draw frames from")
    calibrate.add_argument("--mlp-rule", default="activation", choices=["activation", "weight"])
    calibrate.add_argument("--out", required=True, metavar="PLAN.json")
    calibrate.set_defaults(func=cmd_calibrate, log_level=logging.INFO)  # calibration takes a while: say what it does
