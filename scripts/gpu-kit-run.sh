#!/usr/bin/env bash
# run.sh OUTDIR — the GPU kit's driver (packed by scripts/pack-gpu-kit.sh as DIR/run.sh).
# On a machine with an NVIDIA GPU and driver, no Rust needed: `duel devices`,
# `duel check --device cuda`, the cuda test executables, a 200-step `duel train --device
# cuda` and `duel bench --device cuda --json`, each with a time limit (all in under 8
# minutes), logs and JSON in OUTDIR, then a one-screen summary. Without a CUDA driver or
# GPU it stops at once, saying so.
set -uo pipefail
kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: run.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
duel=$kit/bin/duel

"$duel" devices > "$out/devices.log" 2>&1
if grep -q "^GPU *no GPU" "$out/devices.log"; then
    why=$(grep "^GPU" "$out/devices.log" | sed 's/^GPU *no GPU: *//')
    echo "run.sh: no CUDA driver or GPU usable on this machine: $why" >&2
    echo "run.sh: nothing was run; use a machine with an NVIDIA GPU and its driver (libcuda.so)" >&2
    exit 1
fi

# Tests and the built-in digits open files by their build-time path: provide it.
manifest_dir=$(sed -n 's/^manifest_dir=//p' "$kit/MANIFEST")
if [ -n "$manifest_dir" ] && [ ! -e "$manifest_dir" ]; then
    mkdir -p "$(dirname "$manifest_dir")" 2>/dev/null && ln -s "$kit/tree" "$manifest_dir" 2>/dev/null ||
        echo "run.sh: cannot create $manifest_dir (build-time path); tests that read fixtures will fail" >&2
fi
bin_exe=$(sed -n 's/^bin_exe=//p' "$kit/MANIFEST")
if [ -n "$bin_exe" ] && [ ! -e "$bin_exe" ]; then
    mkdir -p "$(dirname "$bin_exe")" 2>/dev/null && ln -s "$duel" "$bin_exe" 2>/dev/null ||
        echo "run.sh: cannot create $bin_exe (build-time path of duel); the cli tests will fail" >&2
fi

declare -a summary
part() { # part NAME SECONDS LOG COMMAND...
    local name=$1 limit=$2 log=$3 start=$SECONDS
    shift 3
    timeout "$limit" "$@" > "$log" 2>&1
    local rc=$?
    local verdict=pass
    [ $rc -eq 124 ] && verdict="FAIL (over ${limit}s)"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict="FAIL (exit $rc)"
    summary+=("$(printf '%-34s %-18s %4ds  %s' "$name" "$verdict" $((SECONDS - start)) "$log")")
}

part "duel devices" 30 "$out/devices.log" "$duel" devices
part "duel check --device cuda" 60 "$out/check.log" "$duel" --device cuda check
for t in "$kit"/tests/*; do
    part "test $(basename "$t")" 90 "$out/test-$(basename "$t").log" "$t" --test-threads 4
done
part "duel train --device cuda (200 steps)" 120 "$out/train.log" \
    "$duel" --device cuda train --steps 200 --runs-dir "$out/runs" --name kit --quiet \
    --data "$kit/tree/data/digits-5k-images-idx3-ubyte.gz"
part "duel bench --device cuda" 180 "$out/bench.txt" \
    "$duel" --device cuda bench --json "$out/bench.json"

echo "duel GPU kit ($(sed -n 's/^commit=//p' "$kit/MANIFEST")), $(head -n 3 "$out/devices.log" | grep '^GPU' | head -n 1)"
printf '%s\n' "${summary[@]}"
echo
cat "$out/bench.txt"
failed=$(printf '%s\n' "${summary[@]}" | grep -c "FAIL")
echo
echo "$failed parts failed; logs and bench.json in $out"
[ "$failed" -eq 0 ]
