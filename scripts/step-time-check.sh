#!/usr/bin/env bash
# `duel bench`'s dcgan28 step time next to an outside timing of the same work: the wall
# time of `duel train --steps N` (same arch, batch, threads, cpu), with startup and the
# end-of-run writes subtracted by timing two step counts and dividing the difference.
# Also shown: train's own per-step times (metrics.jsonl) over the same steps N1+1..N2.
# Issue 11 wants bench/train within 10% of 1. The host is shared and step times drift by
# ±20% from minute to minute, so the three are measured REPS times, one right after the
# other, each repetition's ratio taken, and the median ratio reported; run it when
# `uptime` shows a low load.
#
# Usage: scripts/step-time-check.sh [THREADS] [N1] [N2] [REPS]   (default: 2 30 80 3)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2} n1=${2:-30} n2=${3:-80} reps=${4:-3}
[ "$n2" -gt "$n1" ] || { echo "N2 ($n2) must be larger than N1 ($n1)" >&2; exit 2; }
duel=target/release/duel
[ -x "$duel" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Seconds `duel train --steps $1` takes: no samples or checkpoints before the end, no eval.
train_seconds() {
  local t0 t1
  rm -rf "$work/steps$1"
  t0=$(date +%s.%N)
  "$duel" --device cpu train --arch dcgan28 --steps "$1" --threads "$threads" --quiet \
    --sample-every 1000000 --checkpoint-every 1000000 --eval-every 0 \
    --runs-dir "$work" --name "steps$1" >/dev/null 2>>"$work/train.log"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); dcgan28, batch 64, $threads threads, steps $n1 and $n2, $reps repetitions"
printf '%-4s %14s %15s %14s %13s %11s\n' rep "train wall ms" "train's own ms" "bench mean ms" "bench med ms" "mean/wall"
for r in $(seq 1 "$reps"); do
  s1=$(train_seconds "$n1")
  s2=$(train_seconds "$n2")
  "$duel" --device cpu bench --threads "$threads" --filter step/dcgan28 --json "$work/b.json" >/dev/null
  python3 - "$work/b.json" "$work/steps$n2/metrics.jsonl" "$s1" "$s2" "$n1" "$n2" "$r" >>"$work/rows" <<'PY'
import json, sys
bench, metrics, s1, s2, n1, n2, r = sys.argv[1:]
n1, n2 = int(n1), int(n2)
step = json.load(open(bench))["steps"][0]
samples = step["samples_s"]
own = [json.loads(l) for l in open(metrics)]
own = [step["batch"] / m["img_per_s"] for m in own if n1 < m["step"] <= n2]
wall = (float(s2) - float(s1)) / (n2 - n1)
row = [wall * 1e3, sum(own) / len(own) * 1e3, sum(samples) / len(samples) * 1e3, step["median_s"] * 1e3]
print(r, *("%.1f" % x for x in row))
PY
  tail -n 1 "$work/rows" | awk '{printf "%-4s %14s %15s %14s %13s %11.3f\n", $1, $2, $3, $4, $5, $4 / $2}'
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[1])]
wall, own, mean, med = (statistics.median(c) for c in zip(*rows))
ratio = statistics.median(r[2] / r[0] for r in rows)
ratio_med = statistics.median(r[3] / r[0] for r in rows)
print(f"medians: train wall {wall:.1f} ms/step, train's own {own:.1f}, bench mean {mean:.1f}, bench median {med:.1f}")
print(f"median over repetitions of bench mean / train wall: {ratio:.3f} (bench median / train wall: {ratio_med:.3f})")
PY
