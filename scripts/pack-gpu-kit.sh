#!/usr/bin/env bash
# Pack a GPU kit: everything needed to try duel's cuda path on a machine that has an
# NVIDIA GPU and driver but no Rust toolchain.
#
#   export DUEL_NVCC=$(scripts/install-cuda-compiler.sh | tail -n 1)
#   scripts/pack-gpu-kit.sh DIR        # here, on any x86-64 Linux machine
#   DIR/run.sh OUTDIR                  # there: logs, JSON and a one-screen summary
#
# DIR gets: bin/duel (release, kernels embedded as PTX by nvcc), tests/* (the test
# executables that exercise the cuda device, from `cargo test --release --no-run`),
# tree/ (the data and fixture files the tests and the built-in data open by their
# build-time path), run.sh, and MANIFEST (that path and what was packed). Debug info
# is stripped; the script fails if the kit is 60 MB or more.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

dir=${1:?usage: scripts/pack-gpu-kit.sh DIR}
if [ -z "${DUEL_NVCC:-}" ] || [ ! -x "$DUEL_NVCC" ]; then
    echo "error: DUEL_NVCC must name nvcc, so the kernels are embedded as PTX; run" >&2
    echo "  export DUEL_NVCC=\$(scripts/install-cuda-compiler.sh | tail -n 1)" >&2
    exit 2
fi
limit_mb=60
# The test targets that open the cuda device (the rest run on cpu and emu only).
cuda_tests=$(grep -l 'cuda' tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | sort)

echo "==> cargo build --release (PTX from $DUEL_NVCC)" >&2
cargo build --release --quiet
if ! target/release/duel devices | grep -q "built as PTX"; then
    echo "error: the release binary has no embedded PTX (is DUEL_NVCC a working nvcc?)" >&2
    exit 1
fi

echo "==> cargo test --release --no-run (lib and: $(echo $cuda_tests))" >&2
test_args=(--lib)
for t in $cuda_tests; do test_args+=(--test "$t"); done
mapfile -t executables < <(
    cargo test --release --no-run --message-format=json "${test_args[@]}" 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"] + "\t" + m["executable"])
')
[ "${#executables[@]}" -gt 0 ] || { echo "error: cargo test --no-run built no test executable" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/tests" "$dir/tree"
strip_copy() { objcopy --strip-debug "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
strip_copy target/release/duel "$dir/bin/duel"
for entry in "${executables[@]}"; do
    name=${entry%%$'\t'*}
    strip_copy "${entry#*$'\t'}" "$dir/tests/$name"
done
# Files opened through env!("CARGO_MANIFEST_DIR") paths: the built-in digits, the kernel
# sources (one test lists them) and the PyTorch fixtures.
cp -r data kernels "$dir/tree/"
mkdir -p "$dir/tree/tests" && cp -r tests/data "$dir/tree/tests/"
cp scripts/gpu-kit-run.sh "$dir/run.sh"
chmod +x "$dir/run.sh"
{
    echo "manifest_dir=$root"
    # tests/cli.rs runs the binary at its build-time path (env!("CARGO_BIN_EXE_duel")).
    echo "bin_exe=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/duel"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "packed=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "tests=$(ls "$dir/tests" | tr '\n' ' ')"
} > "$dir/MANIFEST"

size_kb=$(du -sk "$dir" | cut -f1)
size_mb=$(( (size_kb + 1023) / 1024 ))
echo "packed $dir: $size_mb MB (limit $limit_mb MB): bin/duel, ${#executables[@]} test executables, run.sh" >&2
if [ "$size_mb" -ge "$limit_mb" ]; then
    echo "error: the kit is $size_mb MB, over the $limit_mb MB limit" >&2
    exit 1
fi
echo "$dir"
