"""The control loop at a robot's rate with a real policy: effective rate, tick jitter, stale ticks, inference delay.

    .venv/bin/python -m benchmarks.control_loop [--model configs/models/cogact-small.yaml] [--rate 5] [--ticks 60]
        [--execution ensemble] [--out docs/results/control_loop.json]

The policy runs in this process (as on a robot with an onboard GPU); the camera is the sample Bridge frame and the
robot a recorder. The refill threshold is chosen from a measured inference latency so the next chunk arrives before
the queue runs dry.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.evidence import REPO, RESULTS, hub_offline, write_stamped


def main() -> int:
    hub_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "configs" / "models" / "cogact-small.yaml"))
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--execution", default="ensemble", choices=["hold", "ensemble", "blend", "rtc"])
    parser.add_argument("--out", default=str(RESULTS / "control_loop.json"))
    args = parser.parse_args()

    from envs.sample_frames import real_frame
    from policies.api.interface import Observation
    from policies.loading import load_policy
    from runtime.robot.control_loop import ControlLoop, ControlLoopConfig, policy_predictor, ticks_of_delay

    policy = load_policy(args.model)
    frame, _ = real_frame()
    obs = Observation(frame, "put the carrot on the plate")
    for _ in range(2):
        policy.predict_action(obs, seed=0)
    started = time.perf_counter()
    policy.predict_action(obs, seed=0)
    latency_s = time.perf_counter() - started
    delay = ticks_of_delay(latency_s * 1.3, args.rate)
    chunk = policy.conventions.chunk_length
    threshold = min(chunk - 1, delay + 2)

    class Camera:
        def observe(self):
            return obs

    class Robot:
        def __init__(self):
            self.actions = []

        def act(self, action):
            self.actions.append(action)

    robot = Robot()
    config = ControlLoopConfig(rate_hz=args.rate, refill_threshold=threshold, execution=args.execution,
                               watchdog_s=max(2.0, 3 * latency_s))
    loop = ControlLoop(Camera(), robot, policy_predictor(policy), config)
    report = loop.run(ticks=args.ticks)
    loop.close()
    result = {
        "benchmark": "control_loop", "rate_hz": args.rate, "execution": args.execution,
        "measured_latency_ms": round(latency_s * 1e3, 1), "refill_threshold": threshold, "chunk_length": chunk,
        "report": report.to_dict(),
    }
    r = report
    print(f"{policy.config.name} at {args.rate:g} Hz ({args.ticks} ticks, execution {args.execution}, inference "
          f"{latency_s * 1e3:.0f} ms measured, refill below {threshold} queued actions)")
    print(f"{'effective Hz':>13}{'jitter p50':>12}{'jitter p99':>12}{'stale ratio':>13}{'delay p50':>11}"
          f"{'delay max':>11}{'infer p50':>11}{'inferences':>12}{'overruns':>10}")
    print(f"{r.effective_rate_hz:>13.3f}{r.jitter_p50_ms:>10.2f}ms{r.jitter_p99_ms:>10.2f}ms{r.stale_ratio:>13.3f}"
          f"{r.inference_delay_ticks_p50:>11.1f}{r.inference_delay_ticks_max:>11d}"
          f"{r.inference_latency_p50_ms:>9.0f}ms{r.inferences:>12d}{r.overruns:>10d}")
    assert all(np.isfinite(a).all() for a in robot.actions)
    write_stamped(args.out, result, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
