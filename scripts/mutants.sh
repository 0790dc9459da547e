#!/usr/bin/env bash
# mutants.sh [--list] [ID...] — plants bugs one at a time and runs the tests that should
# catch each, the way CI runs them (emulator schedules forward, reverse, random:1 and
# the race detector). Each mutant is applied to a scratch copy of the working tree
# ($DUEL_MUTANTS_DIR, default $TMPDIR/duel-mutants; one target dir shared by all mutants
# so rebuilds are incremental), rebuilt and tested; the source file is restored after.
# Prints killed / survived / invalid (the text to replace was not found exactly once, or
# the mutant does not compile) per mutant and the mutation score = killed / (killed +
# survived). Not part of CI: every mutant rebuilds the emulator and the crate.
#
# Mutant list: ID | class | file | text to find (exactly once) | replacement | tests.
# `\n` in the texts is a newline. Tests are `cargo test --release` selections.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scratch=${DUEL_MUTANTS_DIR:-${TMPDIR:-/tmp}/duel-mutants}

MUTANTS=$(cat <<'LIST'
tail-unary | vector tail past the end | kernels/elementwise.cu | const long long n4 = n / 4;\n        const float4* x4 | const long long n4 = (n + 3) / 4;\n        const float4* x4 | --test elementwise
tail-binary | vector tail past the end | kernels/elementwise.cu | const long long n4 = n / 4;\n        const float4* a4 | const long long n4 = (n + 3) / 4;\n        const float4* a4 | --test elementwise
align-unary | misaligned vector access | kernels/elementwise.cu | if (ew_aligned16(x) && ew_aligned16(y)) { | if (ew_aligned16(y)) { | --test elementwise
align-binary | misaligned vector access | kernels/elementwise.cu | if (ew_aligned16(a) && ew_aligned16(b) && ew_aligned16(y)) { | if (ew_aligned16(y)) { | --test elementwise
align-matmul-ld | misaligned vector access | kernels/matmul.cu | const bool vecA = mm_aligned16(A) && (lda & 3) == 0; | const bool vecA = mm_aligned16(A); | --test matmul
tail-matmul | vector tail past the end | kernels/matmul.cu | if (vec && limit >= 4) { | if (vec && limit >= 1) { | --test matmul
relu-grad-nan | gradient at NaN | kernels/elementwise.cu | case EW_RELU: return y <= 0.0f ? 0.0f : g; | case EW_RELU: return y > 0.0f ? g : 0.0f; | --test edge_values
leaky-grad-zero | gradient at exact zero | kernels/elementwise.cu | case EW_LEAKY_RELU: return x > 0.0f ? g : g * p0; | case EW_LEAKY_RELU: return x >= 0.0f ? g : g * p0; | --test edge_values
abs-grad-nan | gradient at NaN | kernels/elementwise.cu | case EW_ABS: return x > 0.0f ? g : (x < 0.0f ? -g : 0.0f); | case EW_ABS: return x > 0.0f ? g : (x < 0.0f ? -g : x); | --test edge_values
clamp-grad-bound | gradient at a bound | kernels/elementwise.cu | case EW_CLAMP: return (x > p0 && x < p1) ? g : 0.0f; | case EW_CLAMP: return (x >= p0 && x < p1) ? g : 0.0f; | --test edge_values --test elementwise_grad
clip-nan | NaN through clipping | kernels/optim.cu | p[i] = x < lo ? lo : (x > hi ? hi : x); | p[i] = x > hi ? hi : (x >= lo ? x : lo); | --test edge_values --test optim
clamp-nan | NaN through clamp | kernels/elementwise.cu | const float lo = x < p0 ? p0 : x; | const float lo = x >= p0 ? x : p0; | --test edge_values --test elementwise
maximum-nan | NaN through maximum | kernels/elementwise.cu | case EW_MAXIMUM: return (a > b || a != a) ? a : b; | case EW_MAXIMUM: return (a > b) ? a : b; | --test elementwise
sigmoid-unstable | unstable formula | kernels/elementwise.cu | if (x >= 0.0f) {\n                return 1.0f / (1.0f + expf(-x)); | if (x != x) {\n                return 1.0f / (1.0f + expf(-x)); | --test edge_values --test elementwise
tanh-grad | wrong backward term | kernels/elementwise.cu | case EW_TANH: return g * (1.0f - y * y); | case EW_TANH: return g * (1.0f + y * y); | --test elementwise_grad
sigmoid-grad | wrong backward term | kernels/elementwise.cu | case EW_SIGMOID: return g * ((1.0f - y) * y); | case EW_SIGMOID: return g * (1.0f - y); | --test elementwise_grad
reduce-barrier | missing barrier | kernels/reduce.cu | warp_part[warp] = acc;\n    }\n    __syncthreads();\n    if (warp == 0) {\n        float v = lane | warp_part[warp] = acc;\n    }\n    if (warp == 0) {\n        float v = lane | --test reduce
reduce-warp | wrong reduction | kernels/reduce.cu | for (int offset = 16; offset > 0; offset >>= 1) {\n        v = duel_reduce_combine | for (int offset = 8; offset > 0; offset >>= 1) {\n        v = duel_reduce_combine | --test reduce
reduce-shared | launch: dynamic shared too small | src/ops/reduce/simt.rs | shared_bytes: (THREADS / 32) * DType::F32.size_in_bytes() as u32, | shared_bytes: (THREADS / 32) * DType::F32.size_in_bytes() as u32 - 4, | --test reduce
reduce-threads | launch: block over the limit | src/ops/reduce/simt.rs | block: (THREADS, 1, 1),\n        shared_bytes | block: (2 * 1024, 1, 1),\n        shared_bytes | --test reduce
conv-barrier | missing barrier | kernels/conv.cu | partial[threadIdx.x] = acc;\n    __syncthreads(); | partial[threadIdx.x] = acc; | --test conv
conv-off-by-one | off-by-one bound (static shared) | kernels/conv.cu | if ((int)threadIdx.x < half) partial | if ((int)threadIdx.x <= half) partial | --test conv
conv-shared-size | static shared too small | kernels/conv.cu | __shared__ float partial[256]; | __shared__ float partial[255]; | --test conv
matmul-barrier | missing barrier | kernels/matmul.cu | acc = fmaf(As[ty][kk], Bs[kk][tx], acc);\n        }\n        __syncthreads(); | acc = fmaf(As[ty][kk], Bs[kk][tx], acc);\n        } | --test matmul
matmul-bound | off-by-one bound | kernels/matmul.cu | As[ty][tx] = (i < M && p < K) ? | As[ty][tx] = (i <= M && p < K) ? | --test matmul
norm-barrier | missing barrier | kernels/norm.cu | part[warp] = v;\n    }\n    __syncthreads(); | part[warp] = v;\n    } | --test norm
norm-shared-size | static shared too small | kernels/norm.cu | float momentum, float eps) {\n    __shared__ float part[33]; | float momentum, float eps) {\n    __shared__ float part[32]; | --test norm
loss-barrier | missing barrier | kernels/loss.cu | part[threadIdx.x] = acc;\n    __syncthreads(); | part[threadIdx.x] = acc; | --test loss
loss-half | off-by-one bound | kernels/loss.cu | if ((int)threadIdx.x < half) {\n            part | if ((int)threadIdx.x <= half) {\n            part | --test loss
concat-bound | off-by-one bound | kernels/concat.cu | p < n; p += stride | p <= n; p += stride | --test concat
upsample-bound | off-by-one bound | kernels/upsample.cu | for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {\n        const int ox = idx % ow; | for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx <= n; idx += stride) {\n        const int ox = idx % ow; | --test upsample
adam-moment | wrong update term | kernels/optim.cu | const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_minus_beta1, d)); | const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), d); | --test optim
dropout-scale | wrong scale | kernels/dropout.cu | out[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f; | out[i] = u >= p ? x[i] : 0.0f; | --test dropout
reduce-shared-write | write past dynamic shared | kernels/reduce.cu | warp_part[warp] = acc; | warp_part[warp + 1] = acc; | --test reduce
reduce-shared-read | read past dynamic shared | kernels/reduce.cu | float v = lane < nwarps ? warp_part[lane] : duel_reduce_identity(op); | float v = warp_part[lane]; | --test reduce
loss-shared-read | read past dynamic shared | kernels/loss.cu | float v = lane < warps ? warp_part[lane] : 0.0f; | float v = warp_part[lane]; | --test loss
norm-unwritten-shared | read of static shared no thread wrote | kernels/norm.cu | float t = lane < nwarps ? part[lane] : 0.0f; | float t = part[lane]; | --test norm
norm-shared-rmw | non-atomic += on one shared slot | kernels/norm.cu | if (lane == 0) {\n        part[warp] = v;\n    }\n    __syncthreads();\n    if (warp == 0) {\n        float t = lane < nwarps ? part[lane] : 0.0f;\n        t = duel_norm_warp_sum(t);\n        if (lane == 0) {\n            part[32] = t;\n        }\n    } | if (threadIdx.x == 0) part[32] = 0.0f;\n    __syncthreads();\n    if (lane == 0) part[32] += v; | --test norm
conv-shared-rmw | non-atomic += on one shared slot | kernels/conv.cu | partial[threadIdx.x] = acc;\n    __syncthreads();\n    for (int half = 128; half > 0; half >>= 1) {\n        if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];\n        __syncthreads();\n    } | if (threadIdx.x == 0) partial[0] = 0.0f;\n    __syncthreads();\n    partial[0] += acc;\n    __syncthreads(); | --test conv
mma-barrier | missing barrier | kernels/matmul_mma.cu | mma_stage(Bs[cur ^ 1], rb, kmB, bf16);\n        }\n        __syncthreads(); | mma_stage(Bs[cur ^ 1], rb, kmB, bf16);\n        } | --test matmul_mma
mma-truncate | operands truncated, not rounded | kernels/matmul_mma.cu | (unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(x)) | (__float_as_uint(x) >> 16) | --test matmul_mma
mma-tail | vector tail past the end | kernels/matmul_mma.cu | if (vec && limit >= 4) { | if (vec && limit >= 1) { | --test matmul_mma
mma-fragment | wrong ldmatrix row address | kernels/matmul_mma.cu | kk + (lane / 16) * 8]); | kk + ((lane / 8) % 2) * 8]); | --test matmul_mma
mma-store-bound | off-by-one store bound | kernels/matmul_mma.cu | if (j + 1 < N) dst[1] = v1; | if (j + 1 <= N) dst[1] = v1; | --test matmul_mma
grid-rounding | launch: grid rounded down | src/device/simt/runtime.rs | let blocks = n.div_ceil(threads as usize).max(1); | let blocks = (n / threads as usize).max(1); | --test view_grad --test fill --test cast --test reduce --test dropout --test rng
LIST
)

field() { awk -F' [|] ' -v n="$1" '{ gsub(/^ +| +$/, "", $n); print $n }' <<< "$2"; }

if [ "${1:-}" = "--list" ]; then
    while IFS= read -r m; do printf '%-18s %s (%s)\n' "$(field 1 "$m")" "$(field 2 "$m")" "$(field 3 "$m")"; done <<< "$MUTANTS"
    exit 0
fi
wanted=" $* "

# A fresh copy each run: files deleted from the tree since the last run must not linger
# (a stale cols.rs beside cols/mod.rs made every mutant "not compile").
rm -rf "$scratch/src" && mkdir -p "$scratch/src"
echo "copying the working tree to $scratch/src"
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$scratch/src" -xf -) || exit 1
export CARGO_TARGET_DIR="$scratch/target"
cd "$scratch/src"

run_tests() {  # the CI schedules, stopping at the first failure
    local tests=$1
    # shellcheck disable=SC2086
    cargo test --release -q $tests > "$scratch/log" 2>&1 || return 1
    for env in DUEL_EMU_SCHEDULE=reverse DUEL_EMU_SCHEDULE=random:1 DUEL_EMU_RACES=1; do
        # shellcheck disable=SC2086
        env "$env" cargo test --release -q $tests >> "$scratch/log" 2>&1 || return 1
    done
}

killed=0 survived=0 invalid=0
survivors=""
while IFS= read -r m; do
    id=$(field 1 "$m"); file=$(field 3 "$m"); tests=$(field 6 "$m")
    [ "$wanted" != "  " ] && [[ "$wanted" != *" $id "* ]] && continue
    cp "$root/$file" "$file"
    if ! python3 - "$file" "$(field 4 "$m")" "$(field 5 "$m")" <<'PY'
import sys
path, find, repl = sys.argv[1], sys.argv[2].replace("\\n", "\n"), sys.argv[3].replace("\\n", "\n")
text = open(path).read()
if text.count(find) != 1:
    sys.exit(f"found {text.count(find)} times")
open(path, "w").write(text.replace(find, repl))
PY
    then
        echo "invalid   $id: the text to replace is not in $file exactly once"
        invalid=$((invalid + 1))
        continue
    fi
    start=$SECONDS
    # shellcheck disable=SC2086
    if ! cargo build --release -q --tests > "$scratch/log" 2>&1; then
        echo "invalid   $id: does not compile"
        invalid=$((invalid + 1))
    elif run_tests "$tests"; then
        echo "SURVIVED  $id ($(field 2 "$m"), $file; $tests) $((SECONDS - start))s"
        survived=$((survived + 1)); survivors+=" $id"
    else
        echo "killed    $id ($(field 2 "$m")) by: $(grep -m1 -E 'panicked|error:|FAILED' "$scratch/log" | cut -c1-150) $((SECONDS - start))s"
        killed=$((killed + 1))
    fi
    cp "$root/$file" "$file"
done <<< "$MUTANTS"

total=$((killed + survived))
echo "mutants: $killed killed, $survived survived, $invalid invalid"
[ $total -gt 0 ] && echo "mutation score: $killed/$total = $((100 * killed / total))%"
[ -n "$survivors" ] && echo "survivors:$survivors"
[ $survived -eq 0 ]
