#!/usr/bin/env bash
# bench_cpu's flags on a tiny model, one run each (CTest "bench_cpu flags"): every --attention
# value, a bNxL shape with its tokens per second, and the refusal of a bad one. Timings are not
# checked (never a timing assertion in a test).
#   bench_cpu_smoke.sh CONVERTER BENCH_CPU MODEL_FOLDER
set -euo pipefail
convert=$1 bench=$2 folder=$3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$convert" "$folder" "$scratch/tiny.tbw" >/dev/null 2>&1
for attention in blocked fused amx; do
  out=$("$bench" --model "$scratch/tiny.tbw" --precision int8 --attention "$attention" \
    --shapes 16,b3x7 --passes 1 --runs 1)
  grep -q '"attention":"' <<<"$out" || { echo "no attention field: $out"; exit 1; }
  grep -q '"shape":"b1 s16"' <<<"$out" || { echo "no b1 s16 line: $out"; exit 1; }
  grep -q '"shape":"b3x7".*"tokens":21,"tokens_per_s":' <<<"$out" || { echo "no b3x7 line: $out"; exit 1; }
done
if "$bench" --model "$scratch/tiny.tbw" --precision int8 --shapes b0x7 >/dev/null 2>"$scratch/err"; then
  echo "b0x7 was accepted"; exit 1
fi
grep -q "shape b0x7" "$scratch/err" || { echo "unclear error: $(cat "$scratch/err")"; exit 1; }
if "$bench" --model "$scratch/tiny.tbw" --attention sideways >/dev/null 2>"$scratch/err"; then
  echo "--attention sideways was accepted"; exit 1
fi
grep -q "unknown option --attention sideways" "$scratch/err" || { echo "unclear error: $(cat "$scratch/err")"; exit 1; }
echo "bench_cpu flags: ok"
