#!/usr/bin/env bash
# `duel bench`'s dcgan28 step time next to an outside timing of the same work: the wall
# time of `duel train --steps N` (same arch, batch, threads, cpu), with startup and the
# end-of-run writes subtracted by timing two step counts and dividing the difference.
# Issue 11 wants bench/train within 10% of 1. Prints both and the ratio. The host is
# shared: run it when `uptime` shows a low load, and repeat.
#
# Usage: scripts/step-time-check.sh [THREADS] [N1] [N2]   (default: 2 30 80)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2} n1=${2:-30} n2=${3:-80}
[ "$n2" -gt "$n1" ] || { echo "N2 ($n2) must be larger than N1 ($n1)" >&2; exit 2; }
duel=target/release/duel
[ -x "$duel" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Seconds `duel train --steps $1` takes: no samples or checkpoints before the end, no eval.
train_seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$duel" --device cpu train --arch dcgan28 --steps "$1" --threads "$threads" --quiet \
    --sample-every 1000000 --checkpoint-every 1000000 --eval-every 0 \
    --runs-dir "$work" --name "steps$1" >/dev/null 2>>"$work/train.log"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$duel" --device cpu bench --threads "$threads" --filter step/dcgan28 --json "$work/b.json" >/dev/null
bench_ms=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["steps"][0]; print(s["median_s"]*1e3, sum(s["samples_s"])/len(s["samples_s"])*1e3)' "$work/b.json")
s1=$(train_seconds "$n1")
s2=$(train_seconds "$n2")
awk -v b="$bench_ms" -v s1="$s1" -v s2="$s2" -v n1="$n1" -v n2="$n2" -v t="$threads" 'BEGIN{
  split(b, m, " ");
  train = (s2 - s1) / (n2 - n1) * 1e3;
  printf "threads %d: train --steps %d: %.2f s, --steps %d: %.2f s -> %.1f ms/step\n", t, n1, s1, n2, s2, train;
  printf "bench step/dcgan28: median %.1f ms, mean %.1f ms\n", m[1], m[2];
  printf "bench median / train: %.3f   bench mean / train: %.3f\n", m[1] / train, m[2] / train;
}'
