#!/usr/bin/env bash
# Sets up vlart in ./.venv: torch first (the pinned CPU wheel, so nothing pulls a multi-GB CUDA build), then the
# project with the extras given (default: policy,plot,test).
#   ./setup.sh                 # policy + plots + tests
#   ./setup.sh policy          # the policy only
# Environment: PYTHON (default python3), TORCH_SPEC (default torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-policy,plot,test}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if [[ ",$extras," == *",policy,"* ]] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip install "$torch_spec"
fi
pip install -e ".[$extras]"
echo "vlart is set up in $(pwd)/.venv ($(.venv/bin/vlart --help >/dev/null && echo 'vlart command ok'))"
