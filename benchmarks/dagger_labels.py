"""How DAgger's expert labels compare with what the policy did, per task folder of a demonstrations directory.

    .venv/bin/python -m benchmarks.dagger_labels DATA_DIR [--out docs/results/dagger/labels.json]

For the ``@dagger`` episodes of ``DATA_DIR`` (``vlart demos --policy``): episodes, solved ones, and on how many steps
the expert's gripper label (open / closed) agrees with the executed one, over all episodes and over the solved ones.
On a solved episode the policy did the right thing, so a labeller that follows the state should agree there on
nearly every step; where the policy failed, the disagreements are the lessons.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.evidence import write_stamped
from policies.training.demo_dataset import episode_files


def folder_agreement(files: list[Path]) -> dict[str, Any]:
    import h5py

    agree, steps, solved_agree, solved_steps, solved = 0, 0, 0, 0, 0
    for path in files:
        with h5py.File(path, "r") as file:
            labels = file["action"][()][:, 6] > 0.5
            executed = file["executed_action"][()][:, 6] > 0.5
            success = bool(file.attrs["success"])
        same = int((labels == executed).sum())
        agree, steps = agree + same, steps + len(labels)
        if success:
            solved, solved_agree, solved_steps = solved + 1, solved_agree + same, solved_steps + len(labels)
    return {"episodes": len(files), "solved": solved, "steps": steps,
            "gripper_agreement": round(agree / max(steps, 1), 4),
            "gripper_agreement_solved": round(solved_agree / max(solved_steps, 1), 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    folders: dict[str, list[Path]] = {}
    for path in episode_files(args.data):
        if path.parent.name.endswith("@dagger"):
            folders.setdefault(path.parent.name, []).append(path)
    if not folders:
        raise SystemExit(f"no @dagger episodes under {args.data / 'episodes'} (make them with vlart demos --policy)")
    rows = {name: folder_agreement(files) for name, files in sorted(folders.items())}
    print("| folder | episodes | solved | gripper label = executed | on solved episodes |\n|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['episodes']} | {row['solved']} | {100 * row['gripper_agreement']:.1f} % | "
              f"{100 * row['gripper_agreement_solved']:.1f} % |")
    if args.out is not None:
        import json

        meta = json.loads((args.data / "meta.json").read_text())["tasks"]
        policies = sorted({meta[name.replace("__", "/")]["policy"] for name in rows})
        write_stamped(args.out, {"benchmark": "dagger_labels", "folders": rows}, policies)


if __name__ == "__main__":
    main()
