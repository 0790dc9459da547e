#!/usr/bin/env bash
# Compile every kernel file (kernels/*.cu of the manifest) to cubin for sm_80 and sm_90 with `-Xptxas -v`,
# print ptxas's resource report as a table (arch, kernel, registers, shared memory,
# spill stores/loads, stack frame), and exit non-zero on any compile error, any spill or
# any manifest kernel ptxas did not report as an entry function.
#
# The files and nvcc come from the built binary, so nothing here re-implements build.rs:
# the files of `duel devices --kernels` (the kernel manifest), and $DUEL_NVCC if set, else
# the nvcc build.rs compiled the PTX with (`duel devices --nvcc`), else the one
# scripts/install-cuda-compiler.sh installs (or finds installed). The binary is $DUEL_BIN,
# or `cargo run --release` (built first if needed).
#   DUEL_CHECK_ARCHS   architectures to check (default: "sm_80 sm_90")
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kernels="$root/kernels"
read -r -a archs <<< "${DUEL_CHECK_ARCHS:-sm_80 sm_90}"
duel() {
    if [ -n "${DUEL_BIN:-}" ]; then "$DUEL_BIN" "$@"; else (cd "$root" && cargo run --release --quiet -- "$@"); fi
}

listing=$(duel devices --kernels) || {
    echo "error: could not list the kernels with \`duel devices --kernels\` (does duel build?)" >&2
    exit 1
}
mapfile -t sources < <(awk '{ print $2 }' <<< "$listing" | sort -u | sed "s|^|$root/|")
if [ ${#sources[@]} -eq 0 ] || [ -z "${sources[0]}" ]; then
    echo "error: duel devices --kernels lists no kernels" >&2
    exit 1
fi

if [ -n "${DUEL_NVCC:-}" ]; then
    [ -x "$DUEL_NVCC" ] || { echo "error: DUEL_NVCC=$DUEL_NVCC is not an executable" >&2; exit 1; }
    nvcc="$DUEL_NVCC"
elif ! nvcc=$(duel devices --nvcc 2> /dev/null) || [ ! -x "$nvcc" ]; then
    echo "duel was built without nvcc; using scripts/install-cuda-compiler.sh" >&2
    nvcc=$("$root/scripts/install-cuda-compiler.sh" | tail -n 1)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "nvcc: $nvcc ($("$nvcc" --version | tail -n 1))"

errors=0
rows="$work/rows.tsv"
: > "$rows"
for arch in "${archs[@]}"; do
    for src in "${sources[@]}"; do
        name=$(basename "$src" .cu)
        log="$work/$name.$arch.log"
        if ! "$nvcc" --cubin -arch="$arch" -O3 --std=c++17 -I "$kernels" -Xptxas -v \
                -o "$work/$name.$arch.cubin" "$src" > "$log" 2>&1; then
            echo "error: nvcc failed on kernels/$name.cu for $arch:" >&2
            cat "$log" >&2
            errors=$((errors + 1))
            continue
        fi
        # ptxas -v: "Compiling entry function 'K' for 'sm_80'", then "Function properties
        # for K" / "N bytes stack frame, N bytes spill stores, N bytes spill loads", then
        # "Used N registers, ... N bytes smem" (smem only when non-zero). Non-entry
        # functions get properties too; their spills count, reported as "(device) F".
        awk -v arch="$arch" -v file="$name" '
            /Compiling entry function/ { split($0, q, "\047"); entry = q[2] }
            /Function properties for/  { fn = $NF }
            /bytes stack frame/ {
                stack[fn] = $1; st[fn] = $5; ld[fn] = $9
                if (fn != entry && ($5 > 0 || $9 > 0))
                    printf "%s\t%s\t(device) %s\t-\t-\t%d\t%d\t%d\n", arch, file, fn, $5, $9, $1
            }
            /Used [0-9]+ registers/ {
                regs = 0; smem = 0
                if (match($0, /Used [0-9]+ registers/)) { split(substr($0, RSTART, RLENGTH), r, " "); regs = r[2] }
                if (match($0, /[0-9]+ bytes smem/)) { split(substr($0, RSTART, RLENGTH), s, " "); smem = s[1] }
                printf "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", arch, file, entry, regs, smem, st[entry] + 0, ld[entry] + 0, stack[entry] + 0
            }
        ' "$log" >> "$rows"
    done
done

printf '%-6s %-14s %-40s %5s %10s %12s %11s %11s\n' \
    arch file kernel regs smem_bytes spill_stores spill_loads stack_bytes
sort -t $'\t' -k1,1 -k2,2 -k3,3 "$rows" | awk -F '\t' '
    { printf "%-6s %-14s %-40s %5s %10s %12s %11s %11s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'

missing=0
for arch in "${archs[@]}"; do
    while read -r kernel file; do
        if ! awk -F '\t' -v a="$arch" -v k="$kernel" '$1 == a && $3 == k { found = 1 } END { exit !found }' "$rows"; then
            echo "error: $kernel ($file) is in the manifest but ptxas reported no entry function for $arch" >&2
            missing=$((missing + 1))
        fi
    done <<< "$listing"
done
kernel_rows=$(awk -F '\t' '$3 !~ /^\(device\)/' "$rows" | wc -l)
spills=$(awk -F '\t' '$6 > 0 || $7 > 0' "$rows" | wc -l)
echo "checked ${#sources[@]} files, $kernel_rows kernel builds (${archs[*]}): $errors compile errors, $spills with spills"
if [ "$errors" -ne 0 ] || [ "$spills" -ne 0 ] || [ "$missing" -ne 0 ]; then
    [ "$spills" -ne 0 ] && echo "error: register spills (see spill_stores/spill_loads above)" >&2
    exit 1
fi
