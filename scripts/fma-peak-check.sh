#!/usr/bin/env bash
# The f32 FMA peak `duel bench` measures, next to a plain C loop's (scripts/fma_peak.c,
# gcc -O2 -mavx512f: the same 24 AVX-512 chains a thread), on 1 and 2 threads, run back
# to back so both see the same machine; prints both and duel/C. Issue 11 wants the ratio
# within 10% of 1. The host is shared: run it when `uptime` shows a low load, and repeat.
#
# Usage: scripts/fma-peak-check.sh [THREADS...]   (default: 1 2)
# Needs: gcc with AVX-512 support, a release build (target/release/duel, else cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=("${@:-1}")
[ $# -eq 0 ] && threads=(1 2)
grep -qw avx512f /proc/cpuinfo || { echo "this CPU has no avx512f: the C loop is AVX-512 only" >&2; exit 1; }
command -v gcc >/dev/null || { echo "gcc not found: install gcc to build scripts/fma_peak.c" >&2; exit 1; }
duel=target/release/duel
[ -x "$duel" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -mavx512f -pthread scripts/fma_peak.c -o "$work/fma_peak"
# The compiler must keep all 24 chains: count the FMAs in the loop's object code.
fmas=$(objdump -d "$work/fma_peak" | grep -c 'vfmadd...ps.*%zmm' || true)
[ "$fmas" -ge 24 ] || { echo "the C loop has $fmas zmm FMAs, expected >= 24: compiler shortened it" >&2; exit 1; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %14s %14s %8s\n' threads "duel GFLOP/s" "C GFLOP/s" duel/C
for t in "${threads[@]}"; do
  # Same work as duel's full header: 2,000,000 rounds, best of 5.
  d=$("$duel" --device cpu bench --machine-only --threads "$t" | sed -n 's/^FMA peak *\([0-9.]*\) GFLOP.*/\1/p')
  c=$("$work/fma_peak" "$t" 2000000 5 | sed -n 's/^\([0-9.]*\) GFLOP.*/\1/p')
  printf '%-8s %14s %14s %8s\n' "$t" "$d" "$c" "$(awk -v d="$d" -v c="$c" 'BEGIN{printf "%.3f", d/c}')"
done
