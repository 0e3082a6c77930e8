"""Training step time of one model in float32 and in bfloat16 autocast, measured in one run.

    .venv/bin/python -m benchmarks.train_step [--model configs/models/cogact-demo.yaml] [--batch 32] [--steps 6]
        [--out docs/results/train_step.json]

Synthetic frames (the model's input size) and normalised chunks; each step is augmentation-free forward (front end,
LLM, DiT with 4 noise draws per sample), backward and an AdamW update, as ``vlart train`` runs it. The two precisions
alternate step by step so machine noise hits both alike; the first step of each is a warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped


def main() -> int:
    hub_offline()
    import torch

    from policies.loading import load_policy
    from policies.training.objective import diffusion_loss
    from policies.training.trainer import _autocast

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "configs" / "models" / "cogact-demo.yaml"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default=str(RESULTS / "train_step.json"))
    args = parser.parse_args()
    policy = load_policy(args.model)
    policy.train()
    head = policy.config.action_head
    rng = np.random.default_rng(0)
    size = policy.vision.image_size
    images = list(rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8))
    instructions = ["put carrot on plate"] * args.batch
    actions = torch.from_numpy(rng.uniform(-1, 1, (args.batch, head.chunk_length, head.action_dim)).astype(np.float32))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    alphas = policy.sampler.scheduler.alphas_cumprod
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(args.steps + 1):
        for precision in times:
            started = time.perf_counter()
            with _autocast(policy.device, precision):
                cognition = policy.cognition_features(images, instructions)
                loss = diffusion_loss(policy.action_head, cognition, actions, alphas, 4, 0.1, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[precision].append(time.perf_counter() - started)
    rows = {p: {"mean_s": round(float(np.mean(t[1:])), 4), "p50_s": round(float(np.median(t[1:])), 4)}
            for p, t in times.items()}
    speedup = rows["float32"]["mean_s"] / rows["bfloat16"]["mean_s"]
    print(f"{'precision':<12}{'mean s/step':>14}{'p50 s/step':>13}")
    for precision, row in rows.items():
        print(f"{precision:<12}{row['mean_s']:>14.3f}{row['p50_s']:>13.3f}")
    print(f"bfloat16 speedup {speedup:.2f}x ({args.model}, batch {args.batch}, {args.steps} steps each)")
    write_stamped(args.out, {"benchmark": "train_step", "batch": args.batch, "steps": args.steps, "rows": rows,
                             "speedup": round(speedup, 3)}, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
