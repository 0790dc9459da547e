#!/usr/bin/env bash
# The README's mode-collapse table: every variant's default toy run on DATA for SEEDS,
# judged by `duel eval` (the protocol: 2,500 samples, 3 std, modes captured, reverse KL),
# printed as a Markdown table of mean ± standard error over the seeds.
#   scripts/toy-protocol-table.sh [DATA=ring8] [SEEDS="1 2 3"]
# Each run takes ~10 s on 2 cores (wgan ~20 s); runs go to a temporary directory.
set -euo pipefail
data=${1:-ring8}
seeds=${2:-1 2 3}
duel=${DUEL:-target/release/duel}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for v in "gan" "nsgan" "lsgan" "lsgan --ls-coding pm1" "wgan"; do
  for s in $seeds; do
    name="$(echo "$v" | tr -d ' -')-$s"
    # shellcheck disable=SC2086
    "$duel" train --device cpu --data "$data" --variant $v --seed "$s" --quiet \
      --runs-dir "$tmp" --name "$name" > /dev/null
    printf '%s\t%s\t' "$v" "$s"
    "$duel" eval --device cpu --json "$tmp/$name"
  done
done | python3 -c '
import json, sys, math
rows = {}
for line in sys.stdin:
    v, s, j = line.rstrip("\n").split("\t")
    rows.setdefault(v, []).append(json.loads(j))
def ms(xs):
    m = sum(xs) / len(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else 0.0
    return m, se
k = None
print("| variant | modes captured | high quality | reverse KL |")
print("|---|---|---|---|")
for v, rs in rows.items():
    k = rs[0]["modes"]
    m, mse = ms([r["modes_captured"] for r in rs])
    h, hse = ms([100 * r["high_quality"] for r in rs])
    r, rse = ms([r["reverse_kl"] for r in rs])
    print(f"| `--variant {v}` | {m:.1f} ± {mse:.1f} / {k} | {h:.1f} ± {hse:.1f}% | {r:.3f} ± {rse:.3f} |")
'
