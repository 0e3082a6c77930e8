#!/usr/bin/env bash
# Sets up vlart in ./.venv: torch first (the pinned CPU wheel, so nothing pulls a multi-GB CUDA build), then the
# project with the extras given (default: policy,plot,sim,test), then, for the simulator, a Vulkan driver.
#   ./setup.sh                 # everything: policy, plots, SIMPLER, tests
#   ./setup.sh policy          # the policy only
# Environment: PYTHON (default python3), TORCH_SPEC (default torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-policy,plot,sim,test}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

has_extra() { [[ ",$extras," == *",$1,"* ]]; }

# SAPIEN renders on the CPU through Mesa's lavapipe, which must be Mesa >= 25. Debian bookworm ships 22; its
# backports suite has 25. Installed only as root on Debian bookworm, and only where no GPU Vulkan driver exists.
ensure_vulkan() {
    local icd
    for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
        [[ -e /dev/nvidia0 && -f "$icd" ]] && return 0
    done
    local version
    version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
    if [[ -f /usr/share/vulkan/icd.d/lvp_icd.json && "${version%%.*}" =~ ^[0-9]+$ && "${version%%.*}" -ge 25 ]]; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
        echo "setup: installing Mesa lavapipe (mesa-vulkan-drivers from bookworm-backports) for CPU rendering"
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                > /etc/apt/sources.list.d/bookworm-backports.sources
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
    else
        echo "setup: WARNING: no Vulkan driver for simulator rendering. Install Mesa >= 25 lavapipe" \
             "(Debian bookworm: apt-get install -t bookworm-backports mesa-vulkan-drivers) or a GPU driver." >&2
    fi
}

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if has_extra policy && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip install "$torch_spec"
fi
pip install -e ".[$extras]"
if has_extra sim; then
    ensure_vulkan
fi
echo "vlart is set up in $(pwd)/.venv ($(.venv/bin/vlart --help >/dev/null && echo 'vlart command ok'))"
