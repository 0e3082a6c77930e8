#!/usr/bin/env bash
# The GPU check in one call, for a machine with an NVIDIA GPU. Installs nothing: it runs the repository in place with
# the machine's python3 (torch, transformers, diffusers, pyyaml, pillow, safetensors, tokenizers, pyzmq, msgpack and a
# C++ compiler for torch.compile must be there).
#   bash benchmarks/gpu_check.sh [ARGS...]    (ARGS go to python3 -m benchmarks.gpu_check; see its --help)
# Profiles the CogACT-Base shape (7.63B, random weights) in bfloat16, baseline and efficientvla, eager and compiled
# (CUDA graphs), checks the CUDA-event stage timers against wall time, serves 8 clients batched and compiled against
# unbatched and eager, and writes one stamped JSON, docs/results/gpu_check/gpu_check.json, within about 7 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 - <<'PY'
import importlib.util, sys
needed = ("torch", "transformers", "diffusers", "yaml", "PIL", "safetensors", "tokenizers", "numpy", "zmq", "msgpack")
missing = [m for m in needed if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {', '.join(missing)}")
import torch
print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if torch.cuda.is_available() else 'the CPU'}")
PY
exec python3 -m benchmarks.gpu_check "$@"
