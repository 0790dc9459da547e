#!/usr/bin/env bash
# Install nvcc from the package registry's NVIDIA wheels into a venv outside the source
# tree, then print the path of nvcc on the last line. Idempotent: a second run only checks.
#   DUEL_CUDA_VENV   where the venv lives (default: ~/.cache/duel/cuda-venv)
#   DUEL_CUDA_PIN    version of the compiler wheels (default: 13.5.37); cccl (the headers)
#                    is versioned on its own and pinned to 13.3.5.0.6, the newest served
set -euo pipefail

venv="${DUEL_CUDA_VENV:-$HOME/.cache/duel/cuda-venv}"
pin="${DUEL_CUDA_PIN:-13.5.37}"
requirements=(nvidia-cuda-nvcc=="$pin" nvidia-cuda-crt=="$pin" nvidia-cuda-runtime=="$pin"
              nvidia-nvvm=="$pin" nvidia-cuda-cccl==13.3.5.0.6)

find_nvcc() {
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null) || return 1
    for candidate in "$site"/nvidia/cu13/bin/nvcc "$site"/nvidia/cuda_nvcc/bin/nvcc; do
        [ -x "$candidate" ] && { echo "$candidate"; return 0; }
    done
    return 1
}

if nvcc=$(find_nvcc) && "$nvcc" --version >/dev/null 2>&1; then
    echo "nvcc already installed in $venv" >&2
    echo "$nvcc"
    exit 0
fi

python=$(command -v python3 || true)
[ -n "$python" ] || { echo "error: python3 is needed to install the CUDA compiler wheels" >&2; exit 1; }
echo "installing ${requirements[*]} into $venv" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "${requirements[@]}" >&2

nvcc=$(find_nvcc) || { echo "error: the wheels installed but no nvcc was found under $venv" >&2; exit 1; }
"$nvcc" --version >&2
echo "$nvcc"
