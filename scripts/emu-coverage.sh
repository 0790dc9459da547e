#!/usr/bin/env bash
# emu-coverage.sh TRACE_FILE
# Compare the product kernels (every `extern "C" __global__` entry point in a top-level
# kernels/*.cu; kernels/emu/ and test kernels elsewhere do not count) with the kernels the
# emulator launched, as recorded in its trace (DUEL_EMU_TRACE=file; one line per launch:
# `kernel=NAME grid=x,y,z block=x,y,z shared=N`). Prints `emu kernel coverage: N/M`, the
# kernels never launched, and exits non-zero below 100%.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 TRACE_FILE" >&2
    exit 2
fi
trace=$1
[ -f "$trace" ] || { echo "error: trace file '$trace' not found (run the tests with DUEL_EMU_TRACE=$trace)" >&2; exit 1; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

python3 - "$root/kernels" "$trace" <<'EOF'
import pathlib, re, sys

kernels_dir, trace = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
entry = re.compile(
    r'(?:extern\s+"C"\s+__global__|__global__\s+extern\s+"C")\s+void\s+'
    r'(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(')
comments = re.compile(r'//[^\n]*|/\*.*?\*/', re.S)
product = {}
for cu in sorted(kernels_dir.glob("*.cu")):
    for name in entry.findall(comments.sub(" ", cu.read_text())):
        product[name] = cu.name
launched = set(re.findall(r'(?:^|\s)kernel=(\S+)', trace.read_text(), re.M))
covered = sorted(set(product) & launched)
missing = sorted(set(product) - launched)
print(f"emu kernel coverage: {len(covered)}/{len(product)}")
for name in missing:
    print(f"  not launched: {name} ({product[name]})")
unknown = sorted(launched - set(product))
if unknown:
    print(f"  (also launched, not product kernels: {' '.join(unknown)})")
if not product:
    print("error: no product kernels found in kernels/*.cu", file=sys.stderr)
    sys.exit(1)
sys.exit(1 if missing else 0)
EOF
