"""``vlart sweep`` and ``vlart report``: evaluation grids on Ray, resumable, and their report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401  (checked before anything runs: the extra may be missing)
    except ImportError:
        raise RuntimeError("vlart sweep runs on Ray: pip install 'vlart[ray]'") from None
    from runtime.app.sweep import run_sweep
    from runtime.app.sweep_config import load_sweep

    config = load_sweep(args.sweep)
    out = Path(args.out).resolve()  # episode workers write videos there, whatever their working directory
    result = run_sweep(config, out, address=args.address)
    run = result["run"]
    print(f"sweep {config.name}: {len(result['episodes'])} episodes in {len(result['cells'])} cells "
          f"({run['episodes_run']} run now, {run['resumed_with_done']} done before, {run['retried']} retried) "
          f"in {run['wall_time_s']:.1f} s; results in {out / 'results.json'}")
    for cell, entry in result["cells"].items():
        for task, aggregate in entry["tasks"].items():
            rate = aggregate["success_final"]
            print(f"  {cell:<48} {task:<36} {rate['successes']:>3}/{aggregate['episodes']:<3} "
                  f"{100 * rate['rate']:5.1f}% [{100 * rate['ci95'][0]:.1f}, {100 * rate['ci95'][1]:.1f}]"
                  + (f"  ({entry['missing']} missing)" if entry["missing"] else ""))
    if args.report:
        return cmd_report(argparse.Namespace(dir=str(out)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from runtime.app.report import write_report

    md_path, html_path = write_report(Path(args.dir))
    print(f"wrote {md_path} and {html_path}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep", help="evaluate a grid of cells (tasks x models x presets x ...) on Ray, resumable",
        description="Expands SWEEP.yaml (see configs/sweeps/) to cells, runs their episodes on Ray and writes each "
                    "one to DIR/episodes.jsonl as it finishes; the same command again resumes. Needs vlart[ray].")
    sweep.add_argument("sweep", metavar="SWEEP.yaml")
    sweep.add_argument("--out", required=True, metavar="DIR", help="results folder (reuse it to resume)")
    sweep.add_argument("--address", default=None,
                       help="an existing Ray cluster (auto, ray://HOST:PORT); default: Ray in this process, on this "
                            "machine's cores")
    sweep.add_argument("--report", action="store_true", help="write DIR/report.md and report.html at the end")
    sweep.set_defaults(func=cmd_sweep, log_level=logging.WARNING)

    report = commands.add_parser("report", help="a sweep's results as Markdown and self-contained HTML")
    report.add_argument("dir", metavar="DIR", help="the folder of a vlart sweep (its results.json)")
    report.set_defaults(func=cmd_report)
