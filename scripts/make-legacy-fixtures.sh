#!/usr/bin/env bash
# Regenerates tests/data/fixtures/{ring8,dcgan28,idx}: runs made by the duel binary given as
# $1 (the fixtures in git were made by main at 8e3b19f, before the run description moved
# to serde derive), so tests/legacy_fixtures.rs can check that today's code still loads
# them and continues them bit for bit. One cpu thread: results then do not depend on the
# machine. Usage: scripts/make-legacy-fixtures.sh path/to/old/duel
set -euo pipefail
D=$(realpath "$1")
OUT=$(realpath "$(dirname "$0")/..")/tests/data/fixtures
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
export RAYON_NUM_THREADS=1
python3 - <<'PY'
import random, struct
random.seed(3)
n = 16
imgs = bytes(random.randrange(256) for _ in range(n * 28 * 28))
open('tiny-images-idx3-ubyte', 'wb').write(struct.pack('>BBBBIII', 0, 0, 8, 3, n, 28, 28) + imgs)
open('tiny-labels-idx1-ubyte', 'wb').write(struct.pack('>BBBBI', 0, 0, 8, 1, n) + bytes(i % 3 for i in range(n)))
PY
"$D" train --device cpu --data ring8 --variant lsgan --ls-coding pm1 --width 8 --nz 4 --batch-size 16 \
  --steps 10 --checkpoint-every 10 --sample-every 10 --name ring8 --quiet --seed 7
"$D" train --device cpu --data digits --variant wgan --clip 0.02 --conditional --width 2 --nz 4 \
  --batch-size 4 --steps 4 --checkpoint-every 4 --sample-every 4 --name dcgan28 --quiet
"$D" train --device cpu --data tiny-images-idx3-ubyte --variant gan --optimizer sgd --beta1 0.9 \
  --lr-g 1e-3 --lr-d 3e-3 --width 2 --nz 3 --batch-size 4 --steps 2 --name idx --quiet
mkdir cont && cp -r runs/ring8 runs/dcgan28 cont/
"$D" train --device cpu --resume cont/ring8 --steps 20 --checkpoint-every 10 --sample-every 10 --quiet
"$D" train --device cpu --resume cont/dcgan28 --steps 8 --checkpoint-every 4 --sample-every 4 --quiet
for r in ring8 dcgan28 idx; do
  mkdir -p "$OUT/$r"
  cp runs/$r/{config.json,checkpoint.safetensors,generator.safetensors,metrics.jsonl} "$OUT/$r/"
done
for r in ring8 dcgan28; do
  cp cont/$r/checkpoint.safetensors "$OUT/$r/continued-checkpoint.safetensors"
  cp cont/$r/metrics.jsonl "$OUT/$r/continued-metrics.jsonl"
done
cp tiny-images-idx3-ubyte tiny-labels-idx1-ubyte "$OUT/idx/"
