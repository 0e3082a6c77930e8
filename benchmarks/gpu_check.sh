#!/usr/bin/env bash
# GPU latency check, for a machine with an NVIDIA GPU. Installs nothing: it runs the repository in place with the
# machine's python3 (torch, transformers, diffusers, pyyaml, pillow, safetensors, tokenizers must be there).
#   bash benchmarks/gpu_check.sh [OUT_DIR]    (default docs/results/gpu_check)
# Profiles cogact-small and the cogact-base shape (7.63B, random weights) in bfloat16 on cuda: per-stage p50/p95/p99
# from CUDA events, against the WidowX 5 Hz budget. The base shape has no tokenizer in the repo, so it uses vlart-tiny:
# the prompt is about 13 text tokens shorter than with LLaMA-2's tokenizer (269 instead of ~282 tokens in the LLM).
# Each profile's JSON is then stamped as every benchmark result is (benchmarks/evidence.py): model, command, machine
# (GPU included), commit.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-docs/results/gpu_check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "transformers", "diffusers", "yaml", "PIL", "safetensors", "tokenizers", "numpy")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {', '.join(missing)}")
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
PY
common=(--device cuda --set runtime.dtype=bfloat16 --budget configs/budgets/widowx-5hz.yaml --steps 30 --warmup 5)
python3 -m runtime.app.cli profile --model configs/models/cogact-small.yaml "${common[@]}" \
    --json "$out/gpu_profile_small.json"
python3 -m runtime.app.cli profile --model configs/models/cogact-base.yaml "${common[@]}" \
    --set llm.tokenizer=vlart-tiny --ddim-steps --json "$out/gpu_profile_base.json" --plot "$out/gpu_profile_base.png"
for size in small base; do
    python3 -m benchmarks.evidence "$out/gpu_profile_$size.json" --model "configs/models/cogact-$size.yaml" \
        --command "benchmarks/gpu_check.sh $out"
done
