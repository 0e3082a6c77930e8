"""How far the ManiSkill3 twins' first frames are from the original SimplerEnv's, per Bridge task.

    .venv/bin/python -m benchmarks.twin_first_frames [--episodes 0 7 13 22] [--out docs/results/twin_first_frames.json]

For each of the four Bridge tasks and each episode, the policy's first frame (640x480, after the reset) in the twin
(``ms3_twin/...``, in this interpreter) and in the original (``simplerenv/...``, in the SimplerEnv interpreter):
the mean and largest absolute pixel difference and the share of pixels more than 32/255 apart. The eggplant's twin
grid has 64 configurations (8 positions x 8 orientations) where the original has 24 (8 x 3 yaws): original episode
``i`` is compared with twin episode ``8 (i // 3) + (1, 2, 0)[i % 3]`` (yaw 0, +45, -45 degrees among the twin's -45,
0, 45, ... degrees; derived from the twin's comments).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evidence import REPO, RESULTS, write_stamped

PAIRS = {  # original -> twin
    "simplerenv/widowx_spoon_on_towel": "ms3_twin/widowx_spoon_on_towel",
    "simplerenv/widowx_carrot_on_plate": "ms3_twin/widowx_carrot_on_plate",
    "simplerenv/widowx_stack_cube": "ms3_twin/widowx_stack_cube",
    "simplerenv/widowx_put_eggplant_in_basket": "ms3_twin/widowx_eggplant_in_basket",
}


def twin_episode(original: str, episode: int) -> int:
    if original.endswith("eggplant_in_basket"):
        return 8 * (episode // 3) + (1, 2, 0)[episode % 3]
    return episode


def first_frames(names: list[str], episodes: list[int], original: bool) -> dict[str, np.ndarray]:
    from envs.registry import TASKS
    from envs.tasks import make_task

    frames = {}
    for name in names:
        task = make_task(TASKS[name])
        for episode in episodes:
            ep = episode if original else twin_episode(next(o for o, t in PAIRS.items() if t == name), episode)
            frames[f"{name}|{episode}"] = task.reset(ep, seed=ep).image
        task.close()
    return frames


def main() -> None:
    from envs.real2sim_workers import real2sim_python

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", nargs="+", type=int, default=[0, 7, 13, 22])
    parser.add_argument("--out", default=str(RESULTS / "twin_first_frames.json"))
    parser.add_argument("--side", help=argparse.SUPPRESS)  # the SimplerEnv side writes its frames here (.npz)
    args = parser.parse_args()
    if args.side:
        np.savez(args.side, **first_frames(list(PAIRS), args.episodes, original=True))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "original.npz"
        subprocess.run([str(real2sim_python()), "-m", "benchmarks.twin_first_frames", "--side", str(path),
                        "--episodes", *map(str, args.episodes)], cwd=REPO, check=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL)
        original = dict(np.load(path))
    twin = first_frames(list(PAIRS.values()), args.episodes, original=False)
    rows: list[dict[str, Any]] = []
    print("| task | episode (original / twin) | mean abs diff (/255) | max abs diff | pixels > 32 apart |")
    print("|---|---|---|---|---|")
    for name, twin_name in PAIRS.items():
        for episode in args.episodes:
            a = original[f"{name}|{episode}"].astype(np.int16)
            b = twin[f"{twin_name}|{episode}"].astype(np.int16)
            diff = np.abs(a - b)
            row = {"task": name, "twin_task": twin_name, "episode": episode,
                   "twin_episode": twin_episode(name, episode), "mean_abs_diff": round(float(diff.mean()), 3),
                   "max_abs_diff": int(diff.max()), "share_over_32": round(float((diff.max(-1) > 32).mean()), 4)}
            rows.append(row)
            print(f"| {name} | {episode} / {row['twin_episode']} | {row['mean_abs_diff']} | {row['max_abs_diff']} | "
                  f"{100 * row['share_over_32']:.2f} % |")
    write_stamped(args.out, {"benchmark": "twin_first_frames", "rows": rows}, None)


if __name__ == "__main__":
    main()
