"""``vlart demos``, ``train``: scripted demonstrations and training a policy on them."""

from __future__ import annotations

import argparse

from runtime.app.cli.common import model_options


def cmd_demos(args: argparse.Namespace) -> int:
    from pathlib import Path

    from envs.demos import generate_demos

    options = dict(workers=args.workers, seed=args.seed, image_size=args.image_size, action_noise=args.action_noise)
    if args.policy is None:
        summary = generate_demos(args.task, args.episodes, Path(args.out), **options)
        print(f"{args.task}: {summary['episodes']} successful demonstrations in {args.out} "
              f"(expert success {100 * summary['expert_success_rate']:.1f}% over {summary['attempts']} attempts, "
              f"{summary['wall_time_s']:.1f} s this run with {args.workers} worker(s))")
        return 0
    from runtime.app.policy_service import ServerProcess, ServerSpec

    server = ServerProcess(ServerSpec(model=args.policy, bind="tcp://127.0.0.1:*"), Path(args.out) / "server.log")
    try:
        summary = generate_demos(args.task, args.episodes, Path(args.out), **options,
                                 policy_endpoint=server.endpoint, expert_share=args.expert_share,
                                 policy_name=args.policy)
    finally:
        server.stop()
    print(f"{args.task}: {summary['episodes']} DAgger episodes in {args.out} driven by {args.policy} "
          f"(the expert at {100 * args.expert_share:.0f}% of the steps; success "
          f"{100 * summary['policy_success_rate']:.1f}% over {summary['attempts']} attempts, "
          f"{summary['wall_time_s']:.1f} s this run with {args.workers} worker(s))")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from policies.training.trainer import TrainConfig, train

    config = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, repeats=args.repeats,
                         checkpoint_every=args.checkpoint_every, keep_every=args.keep_every,
                         augment=not args.no_augment, seed=args.seed,
                         precision=args.precision, warmup_steps=args.warmup_steps, schedule=args.schedule,
                         aux_weight=args.aux_weight, val_samples=args.val_samples,
                         max_committed_rows=args.max_committed_rows,
                         zero_committed_fraction=args.zero_committed_fraction)
    summary = train(args.model, args.data, args.out, config, overrides=args.set, device=args.device,
                    val_data=args.val_data)
    print(f"trained {summary['steps']} steps on {summary['episodes']} episodes ({summary['samples']} samples) in "
          f"{summary['wall_time_s']:.0f} s; final loss {summary['final_loss']:.4f}; checkpoint {summary['checkpoint']}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    demos = commands.add_parser("demos", help="scripted expert demonstrations of a SIMPLER task (HDF5)")
    demos.add_argument("--task", required=True,
                       help="a WidowX task: ms3_twin/widowx_... (ManiSkill3) or simplerenv/widowx_... (the original "
                            "SimplerEnv, run in its own interpreter)")
    demos.add_argument("--episodes", type=int, default=100,
                       help="episodes to keep (default 100): the expert's successful ones; with --policy, every one")
    demos.add_argument("--workers", type=int, default=1)
    demos.add_argument("--seed", type=int, default=0, help="placement seed (attempt k uses seed * 1000003 + k)")
    demos.add_argument("--image-size", type=int, default=224, help="stored frame size (the policy's input)")
    demos.add_argument("--action-noise", type=float, default=0.0,
                       help="std (metres) of noise on each executed dx, dy, dz; the recorded actions stay clean (DART)")
    demos.add_argument("--policy", default=None,
                       help="DAgger: a model or checkpoint (served here) drives; the expert labels every step it "
                            "visits and every episode is kept, under the task's @dagger folder")
    demos.add_argument("--expert-share", type=float, default=0.0,
                       help="with --policy: the probability that a step executes the expert's action (DAgger's beta)")
    demos.add_argument("--out", required=True, help="dataset folder (resumable; several tasks may share it)")
    demos.set_defaults(func=cmd_demos)

    training = commands.add_parser(
        "train", help="train a policy on vlart demonstrations (CogACT's objective)",
        description="--model: a model config to train from scratch, or a vlart checkpoint to fine-tune.",
        parents=[model_options(device=True)])
    training.add_argument("--data", required=True, help="demonstrations folder (vlart demos)")
    training.add_argument("--steps", type=int, default=1000)
    training.add_argument("--batch", type=int, default=8)
    training.add_argument("--lr", type=float, default=1e-4)
    training.add_argument("--repeats", type=int, default=4, help="noise draws per sample (CogACT: 8)")
    training.add_argument("--checkpoint-every", type=int, default=200)
    training.add_argument("--keep-every", type=int, default=0,
                          help="also keep the weights of every N-th step in OUT/step_NNNNNN (for choosing the step "
                               "on held-out episodes; default 0: only OUT/latest)")
    training.add_argument("--no-augment", action="store_true")
    training.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                          help="bfloat16: autocast mixed precision (float32 weights)")
    training.add_argument("--warmup-steps", type=int, default=0)
    training.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    training.add_argument("--aux-weight", type=float, default=0.0,
                          help="weight of an auxiliary linear regression of the chunk from the cognition feature "
                               "(training from scratch; 0 = CogACT's objective alone)")
    training.add_argument("--val-data", help="demonstrations of other placements (vlart demos --seed N): each "
                          "checkpoint's sampled chunks are scored against theirs (OUT/val.csv)")
    training.add_argument("--val-samples", type=int, default=256, help="held-out frames scored (default 256)")
    training.add_argument("--max-committed-rows", type=int, default=0, metavar="D",
                          help="training-time action conditioning: up to D leading rows of each chunk given clean "
                               "and marked committed, the loss on the rest; the checkpoint then continues a robot's "
                               "plan under delay by conditioning (default 0: off)")
    training.add_argument("--zero-committed-fraction", type=float, default=0.5,
                          help="with --max-committed-rows: the share of chunks with no committed row (default 0.5)")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--out", required=True, help="checkpoint folder (resumes when it holds a run)")
    training.set_defaults(func=cmd_train)
