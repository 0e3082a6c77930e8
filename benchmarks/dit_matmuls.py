"""Why the demo model's action head is far from the machine's peak: its matrix products, hot and cold, and their share.

    .venv/bin/python -m benchmarks.dit_matmuls [--model checkpoints/cogact-demo] [--repeats 200]
        [--out docs/results/dit_matmuls.json]

1. **Hot and cold weights.** Every linear layer of the DiT's blocks (rows = 2 x (chunk + 1) under guidance), timed
   two ways in one run, interleaved: *hot*, one layer called again and again (its weights stay in cache), and *cold*,
   the layers called in the order a denoising step calls them (each one's weights have left the cache by its next
   call). The median per layer, GFLOP/s and fraction of the matrix-multiply peak measured in the same run.
2. **Share of the action head.** ``torch.profiler`` over whole DDIM loops of the eager policy: the matrix products'
   (``aten::addmm``) share of the loop's CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped


def linear_layers(head) -> list:
    from torch import nn

    return [m for block in head.blocks for m in block.modules() if isinstance(m, nn.Linear)]


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "cogact-demo"))
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "dit_matmuls.json"))
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from policies.loading import load_policy
    from policies.roofline import matmul_peak_gflops

    policy = load_policy(args.model)
    head = policy.action_head
    layers = linear_layers(head)
    rows = 2 * (head.config.chunk_length + 1)
    weights_mb = sum(m.weight.numel() + m.bias.numel() for m in layers) * 4 / 2**20
    x = {m.in_features: torch.randn(rows, m.in_features) for m in layers}
    flop = sum(2 * rows * m.in_features * m.out_features for m in layers)
    hot, cold = [], []
    peak = matmul_peak_gflops(torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        for _ in range(args.repeats):
            start = time.perf_counter()
            for m in layers:  # each layer once, in a step's order: cold
                m(x[m.in_features])
            cold.append((time.perf_counter() - start) / len(layers))
            elapsed = 0.0
            for m in layers:  # each layer twice in a row, the second call timed: hot
                m(x[m.in_features])
                start = time.perf_counter()
                m(x[m.in_features])
                elapsed += time.perf_counter() - start
            hot.append(elapsed / len(layers))
        noise, cognition = policy.initial_noise(1, 0), torch.randn(1, policy.config.llm.hidden_size)
        loop = lambda: policy.sampler.sample(head, noise, cognition, uncondition=head.z_embedder.uncondition)  # noqa: E731
        for _ in range(3):
            loop()
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            for _ in range(10):
                loop()
    events = trace.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::addmm", "aten::mm", "aten::bmm"))
    result = {"rows": rows, "layers": len(layers), "weights_mb": round(weights_mb, 2),
              "matmul_peak_gflops": round(peak, 2)}
    for name, times in (("cold", cold), ("hot", hot)):
        seconds = float(np.median(times))
        rate = flop / len(layers) / seconds / 1e9
        result[name] = {"ms_per_layer": round(seconds * 1e3, 4), "gflops_per_s": round(rate, 2),
                        "fraction_of_peak": round(rate / peak, 4)}
    result["cold_over_hot"] = round(result["cold"]["ms_per_layer"] / result["hot"]["ms_per_layer"], 2)
    result["matmul_share_of_action_head"] = round(matmul / total, 4)
    print(f"{len(layers)} DiT linear layers, {rows} rows, {weights_mb:.1f} MB of weights; "
          f"matrix-multiply peak {peak:.1f} GFLOP/s")
    for name in ("hot", "cold"):
        r = result[name]
        print(f"  {name:<5}{r['ms_per_layer']:>9.3f} ms per layer{r['gflops_per_s']:>8.1f} GFLOP/s"
              f"{100 * r['fraction_of_peak']:>6.1f} % of peak")
    print(f"  cold / hot: {result['cold_over_hot']:.2f}x; matrix products: "
          f"{100 * result['matmul_share_of_action_head']:.0f} % of the DDIM loop's CPU time")
    write_stamped(args.out, {"benchmark": "dit_matmuls", **result}, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
