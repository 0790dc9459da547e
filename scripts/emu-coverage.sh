#!/usr/bin/env bash
# emu-coverage.sh TRACE_FILE
# Compare the product kernels (as the built binary lists them: `duel devices --kernels`,
# the manifest build.rs made from kernels/*.cu; kernels/emu/ self-tests do not count) with
# the kernels the emulator launched, as recorded in its trace (DUEL_EMU_TRACE=file; one
# line per launch: `kernel=NAME grid=x,y,z block=x,y,z shared=N`). Prints
# `emu kernel coverage: N/M`, the kernels never launched, and exits non-zero below 100%.
# The binary is $DUEL_BIN, or `cargo run --release` (built first if needed).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 TRACE_FILE" >&2
    exit 2
fi
trace=$1
[ -f "$trace" ] || { echo "error: trace file '$trace' not found (run the tests with DUEL_EMU_TRACE=$trace)" >&2; exit 1; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${DUEL_BIN:-}" ]; then
    listing=$("$DUEL_BIN" devices --kernels)
else
    listing=$(cd "$root" && cargo run --release --quiet -- devices --kernels)
fi || { echo "error: could not list the kernels with \`duel devices --kernels\` (does duel build?)" >&2; exit 1; }

python3 - "$trace" "$listing" <<'EOF'
import re, sys

trace, listing = sys.argv[1], sys.argv[2]
product = dict(line.split() for line in listing.splitlines() if line.strip())
launched = set(re.findall(r'(?:^|\s)kernel=(\S+)', open(trace).read(), re.M))
covered = sorted(set(product) & launched)
missing = sorted(set(product) - launched)
print(f"emu kernel coverage: {len(covered)}/{len(product)}")
for name in missing:
    print(f"  not launched: {name} ({product[name]})")
unknown = sorted(launched - set(product))
if unknown:
    print(f"  (also launched, not product kernels: {' '.join(unknown)})")
if not product:
    print("error: duel devices --kernels listed no product kernels", file=sys.stderr)
    sys.exit(1)
sys.exit(1 if missing else 0)
EOF
