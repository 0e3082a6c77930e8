"""What the benchmark scripts share: where they put what they measured, the stamp every result file carries, and
their start-up.

The small artefacts the docs cite (JSON tables, PNG plots) go under ``RESULTS``, which git tracks, so that the
evidence is in the repository beside the claim; what is bulky or only a means to them (eval run folders, traces,
frames, calibration plans) goes under ``RUNS``, which git ignores. Every JSON result names the model(s) it measured,
the command that wrote it, the machine and the checkout's commit, so that a number can be traced and rerun.

The scripts run as modules from the repository root (``python -m benchmarks.NAME``), so ``benchmarks`` and vlart's
packages import from the checkout; vlart itself never imports them. As a script this module stamps a JSON result that
another program wrote (``vlart profile --json`` in gpu_check.sh):

    python3 -m benchmarks.evidence FILE --model MODEL [--model MODEL ...] --command "benchmarks/gpu_check.sh ..."
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from runtime.core.provenance import provenance

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
RUNS = REPO / "runs" / "benchmarks"
STAMP = ("model", "command", "machine", "provenance")


def repo_relative(path: str | Path) -> str:
    """An existing path inside the checkout, relative to it (the same on every machine); anything else as given."""
    resolved = Path(path).resolve()
    return resolved.relative_to(REPO).as_posix() if resolved.exists() and resolved.is_relative_to(REPO) else str(path)


def machine() -> dict[str, Any]:
    found = {"platform": platform.platform(), "cpus": os.cpu_count(),
             "processor": platform.processor() or platform.machine(),
             "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}
    # Asked of the driver, not of torch: most benchmarks never import torch, and a GPU number needs its card named.
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=60, check=False)
        if listed.returncode == 0:
            found["gpus"] = [name.strip() for name in listed.stdout.splitlines() if name.strip()]
    return found


def hub_offline() -> None:
    """Models come from the checkout only: a benchmark must neither time a download nor wait on the network. Called
    before anything imports huggingface_hub (which reads the setting once); the servers a benchmark starts inherit
    it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def invocation() -> str:
    """The command line that started this process, as it reruns from the repository root: ``python -m benchmarks.NAME
    ARGS`` for a module, the script's path otherwise."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["python", "-m", spec.name] if spec is not None else [repo_relative(sys.argv[0])]
    return shlex.join([*program, *sys.argv[1:]])


def rerun_in_simplerenv(module: str) -> None:
    """Re-run ``python -m module`` with this command line in the SimplerEnv interpreter (``.venv-real2sim``) unless
    this is it: the original SimplerEnv's tasks, and any worker processes they start, live there."""
    import importlib.util

    if importlib.util.find_spec("mani_skill2_real2sim") is not None:
        return
    from envs.real2sim_workers import real2sim_python

    python = str(real2sim_python())
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    os.execve(python, [python, "-m", module, *sys.argv[1:]], dict(os.environ, PYTHONPATH=path))


def write_stamped(out: str | Path, result: dict[str, Any], model: str | Sequence[str] | None,
                  command: str | None = None) -> None:
    """``result`` stamped with ``model`` (a path or name, or a list of them; None where no policy ran), ``command``
    (default: this script's command line), the machine and the checkout's provenance, written as JSON to ``out``."""
    if clash := set(STAMP) & result.keys():
        raise ValueError(f"the stamp would overwrite the result's own {sorted(clash)}")
    if model is not None:
        model = repo_relative(model) if isinstance(model, str) else [repo_relative(name) for name in model]
    stamped = {**result, "model": model,
               "command": command or invocation(),
               "machine": machine(), "provenance": provenance()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a JSON object, stamped in place")
    parser.add_argument("--model", action="append", required=True, help="the model measured (repeat for several)")
    parser.add_argument("--command", required=True, help="the command that wrote the file")
    args = parser.parse_args()
    model = args.model[0] if len(args.model) == 1 else args.model
    result = json.loads(args.file.read_text())
    if "model" in result:  # vlart's own JSON names the model as it printed it (`vlart info`, `vlart flops`)
        result["model_as_printed"] = result.pop("model")
    write_stamped(args.file, result, model, args.command)


if __name__ == "__main__":
    main()
