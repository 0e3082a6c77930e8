#!/usr/bin/env bash
# Sets up vlart in ./.venv: torch first (its build chosen explicitly, below), then the project with the extras given
# (default: policy,plot,sim,websocket,ray,test,docs,real2sim), then, for the simulator, a Vulkan driver.
# `real2sim` is not a pip extra: it builds the second environment, .venv-real2sim, where the original SimplerEnv runs
# (SAPIEN 2.2.2 and numpy < 2, which cannot share .venv with ManiSkill3). It needs python3.11, and gcc with the
# Vulkan headers where no GPU Vulkan driver exists; by default it is skipped, with one line saying what to install,
# when those are missing; asked for explicitly (e.g. `./setup.sh policy,sim,real2sim`) it is an error.
#   ./setup.sh                 # everything: policy, plots, SIMPLER (both robots), websocket endpoints, Ray
#                              # sweeps, tests, docs
#   ./setup.sh policy          # the policy only
# Environment:
#   TORCH_BUILD      cpu | cuda | auto (default: cuda where `nvidia-smi -L` lists a GPU, else cpu). cpu takes
#                    torch==2.13.0+cpu (PyTorch's CPU index added to pip's), cuda the PyPI build (CUDA 12, several GB)
#   TORCH_SPEC       a pip requirement that replaces the choice above (e.g. torch==2.13.0+cu128 with PIP_EXTRA_INDEX_URL)
#   PYTHON           the interpreter of .venv (default python3)
#   REAL2SIM_PYTHON  the interpreter of .venv-real2sim (default python3.11)
#   REAL2SIM_SOURCE  ManiSkill2_real2sim's source: default the pack beside this checkout, ../shared/simpler_real2sim,
#                    else its public repository at the pinned commit (the one step that clones from GitHub)
set -euo pipefail

TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
DEFAULT_EXTRAS=policy,plot,sim,websocket,ray,test,docs,real2sim

# pip arguments that install torch, the build named by TORCH_BUILD; printed one per line for "$@"-style use.
torch_requirement() {
    if [[ -n "${TORCH_SPEC:-}" ]]; then
        echo "$TORCH_SPEC"
        return
    fi
    local build="${TORCH_BUILD:-auto}"
    if [[ "$build" == auto ]]; then
        build=cpu
        if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; then build=cuda; fi
    fi
    case "$build" in
        cpu) printf '%s\n' "torch==$TORCH_VERSION+cpu" --extra-index-url "$TORCH_CPU_INDEX" ;;
        cuda) echo "torch==$TORCH_VERSION" ;;
        *) echo "setup: ERROR: TORCH_BUILD must be cpu, cuda or auto, not '$build'" >&2; return 1 ;;
    esac
}

# Installs torch alone into the environment of the given interpreter; the project's install that follows brings its
# dependencies from the usual index (asking the CPU index for each of them too costs retries where it is unreachable).
install_torch() {
    local python=$1 args
    args=$(torch_requirement)
    echo "setup: installing $(head -1 <<<"$args") into $python (TORCH_BUILD/TORCH_SPEC choose another build)"
    mapfile -t args <<<"$args"
    "$python" -m pip --disable-pip-version-check -q install --no-deps "${args[@]}"
}

# `--compile` (torch.compile) generates C++ for the CPU and needs a C++ compiler; without one a compiled policy falls
# back to eager with a warning. Installed only as root where apt-get exists.
ensure_cxx() {
    command -v g++ >/dev/null && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null && return 0
    fi
    echo "setup: no C++ compiler (g++): --compile runs eagerly on the CPU until one is installed" >&2
}


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

REAL2SIM_COMMIT=ef7a4d4fdf4b69f2c2154db5b15b9ac8dfe10682  # simpler-env/ManiSkill2_real2sim, as the shared pack

# The Vulkan layer SAPIEN 2 needs on lavapipe (envs/vulkan_layer/), built into the environment that loads it.
build_vulkan_layer() {
    local target=$1/vulkan_layer
    if [[ ! -f /usr/include/vulkan/vk_layer.h ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan-dev >/dev/null
    fi
    if ! command -v gcc >/dev/null || [[ ! -f /usr/include/vulkan/vk_layer.h ]]; then
        echo "setup: ERROR: building the Vulkan layer for SAPIEN 2 needs gcc and the Vulkan headers" \
             "(Debian: apt-get install gcc libvulkan-dev)" >&2
        return 1
    fi
    mkdir -p "$target"
    gcc -O2 -shared -fPIC -fvisibility=hidden -Wall -o "$target/libVkLayer_vlart_hide_cuda_interop.so" \
        envs/vulkan_layer/hide_cuda_interop.c
    cp envs/vulkan_layer/VkLayer_vlart_hide_cuda_interop.json "$target/"
}

real2sim_interpreter() { echo "${REAL2SIM_PYTHON:-python3.11}"; }

needs_vulkan_layer() {
    [[ "$(.venv/bin/python -c 'from envs.rendering import gpu_vulkan_icd; print(gpu_vulkan_icd() is None)' \
          2>/dev/null || echo True)" == True ]]
}

# What .venv-real2sim lacks to be built here (nothing printed: it can be).
real2sim_missing() {
    local missing=()
    command -v "$(real2sim_interpreter)" >/dev/null || missing+=("$(real2sim_interpreter) (set REAL2SIM_PYTHON)")
    if needs_vulkan_layer; then
        command -v gcc >/dev/null || missing+=(gcc)
        if [[ ! -f /usr/include/vulkan/vk_layer.h ]] && ! { [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; }
        then
            missing+=("the Vulkan headers (Debian: libvulkan-dev)")
        fi
    fi
    local IFS=,
    echo "${missing[*]}"
}

setup_real2sim() {
    local venv=.venv-real2sim source="${REAL2SIM_SOURCE:-}"
    [ -x "$venv/bin/python" ] || "$(real2sim_interpreter)" -m venv "$venv"
    pip2() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
    pip2 install "sapien==2.2.2" "numpy<2" scipy "gymnasium>=0.28.1,<1.0" h5py pyyaml tqdm transforms3d \
        opencv-python-headless "imageio[ffmpeg]" trimesh rtree ruckig pillow
    if [[ -z "$source" && -d ../shared/simpler_real2sim/ManiSkill2_real2sim ]]; then
        source=../shared/simpler_real2sim/ManiSkill2_real2sim
    fi
    if ! "$venv/bin/python" -c "import mani_skill2_real2sim" 2>/dev/null; then
        if [[ -n "$source" ]]; then
            # Built from a copy without its data/ (83 MB of assets, found through MS2_REAL2SIM_ASSET_DIR): the
            # source may be read-only, and pip builds in the source tree.
            local copy
            copy=$(mktemp -d)
            tar -C "$source" --exclude=./data -cf - . | tar -C "$copy" -xf -
            pip2 install --no-deps "$copy"
            rm -rf "$copy"
        else
            pip2 install --no-deps "git+https://github.com/simpler-env/ManiSkill2_real2sim@$REAL2SIM_COMMIT"
        fi
    fi
    pip2 install .  # vlart's base install (numpy, pyzmq, msgpack): the thin client and the simulator side
    if needs_vulkan_layer; then
        build_vulkan_layer "$venv"
    fi
    echo "setup: the original SimplerEnv (simplerenv/ tasks: Bridge and Google robot) is set up in $(pwd)/$venv"
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")"
    local extras="${1:-$DEFAULT_EXTRAS}"
    has_extra() { [[ ",$extras," == *",$1,"* ]]; }
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
    if has_extra policy && ! .venv/bin/python -c "import torch" 2>/dev/null; then
        install_torch .venv/bin/python
    fi
    if has_extra policy; then
        ensure_cxx
    fi
    local pip_extras
    pip_extras=$(tr ',' '\n' <<<"$extras" | grep -vx real2sim | paste -sd, -)
    pip install -e ".[$pip_extras]"
    if has_extra test; then
        # The foreign clients the endpoint tests use, at the versions they were checked with; --no-deps because
        # openpi-client pins numpy < 2 (its code runs on numpy 2) and vla-eval's CLI pulls a config stack the tests
        # skip.
        pip install --no-deps "openpi-client==0.1.2" "vla-eval==0.8.0"
    fi
    if has_extra sim || has_extra real2sim; then
        ensure_vulkan
    fi
    if has_extra real2sim; then
        local missing
        missing=$(real2sim_missing)
        if [[ -z "$missing" ]]; then
            # In a subshell with errexit of its own, so that a failed build (e.g. no network for the clone) is caught
            local existed=false status
            [[ -x .venv-real2sim/bin/python ]] && existed=true
            set +e
            (set -e; setup_real2sim)
            status=$?
            set -e
            if ((status != 0)); then
                # Half built, it would pass for an interpreter that can run SimplerEnv; one built before is kept.
                [[ $existed == true ]] || rm -rf .venv-real2sim
                [[ -n "${1:-}" ]] && return "$status"
                echo "setup: .venv-real2sim could not be built (the error is above); everything else is set up"
            fi
        elif [[ -n "${1:-}" ]]; then
            echo "setup: ERROR: .venv-real2sim (the original SimplerEnv) needs: $missing" >&2
            return 1
        else
            echo "setup: skipped .venv-real2sim (the original SimplerEnv: Google robot, original Bridge tasks);" \
                 "to build it, install: $missing; then run ./setup.sh again"
        fi
    fi
    echo "vlart is set up in $(pwd)/.venv ($(.venv/bin/vlart --help >/dev/null && echo 'vlart command ok'))"
}

# Sourced (as .ci/run does, for install_torch), it only defines the functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
