#!/usr/bin/env bash
# One command for the CPU benchmark (issue 6): tinybert (oneDNN backend, f32/bf16/int8) on a
# bert-base-chinese-shaped random model and on bge-small-zh-v1.5, PyTorch (Debian python3-torch,
# fp32 via OpenBLAS when available, bf16, dynamic int8) and ONNX Runtime (int8 bge ONNX), all in
# this run, 2 threads (THREADS), ROUNDS alternating rounds (default 2). Writes
# bench/results/cpu-<date>.jsonl and prints the markdown table.
#   bash bench/run_cpu_bench.sh [build-dir]     (needs ../shared, python3-torch, node + npm)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shared=../shared
threads=${THREADS:-2}
out=bench/results/cpu-$(date +%Y%m%d-%H%M).jsonl
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p bench/results

cmake --build "$build" --target bench_cpu tinybert-convert >/dev/null
"$build/tools/convert/tinybert-convert" "$shared/models/bge-small-zh-v1.5" "$scratch/bge.tbw" 2>/dev/null
"$build/bench/bench_cpu" --make-bert-base "$scratch/bert-base.tbw"
{
  lscpu | sed -n 's/^Model name:\s*/{"machine":"/p' | sed 's/$/"}/'
  # The machine is shared and noisy: tinybert and ONNX Runtime alternate for ROUNDS rounds and
  # the table keeps each side's best (PyTorch takes the best of its own 3 passes once).
  if command -v npm >/dev/null; then
    (cd "$scratch" && npm install --silent --ignore-scripts --no-audit --no-fund onnxruntime-node >/dev/null 2>&1 &&
     cp "$OLDPWD/$shared/tools/ort_bench.mjs" .) || true
  fi
  for round in $(seq "${ROUNDS:-2}"); do
    for model in bert-base bge; do
      for precision in f32 bf16 int8; do
        "$build/bench/bench_cpu" --model "$scratch/$model.tbw" --precision "$precision" --threads "$threads"
      done
    done
    if [ -f "$scratch/ort_bench.mjs" ]; then
      (cd "$scratch" && node ort_bench.mjs "$OLDPWD/$shared/models/bge-small-zh-v1.5/onnx/model_quantized.onnx" "$threads") ||
        echo '{"error":"onnxruntime-node did not run"}'
    fi
  done
  # PyTorch: fp32 through OpenBLAS (Debian's libopenblas0-openmp, unpacked, as PERF.md section 4 does)
  openblas=""
  if (cd "$scratch" && apt-get download libopenblas0-openmp >/dev/null 2>&1); then
    dpkg-deb -x "$scratch"/libopenblas0-openmp*.deb "$scratch/openblas"
    openblas=$(dirname "$(find "$scratch/openblas" -name 'libblas.so.3' | head -1)")
  fi
  /usr/bin/python3 "$shared/tools/torch_bert_bench.py" --models bert-base,bge-small --dtypes bf16,int8 \
    --threads "$threads" --runs 10 --budget-s 10 ${openblas:+--openblas-dir "$openblas"} 2>/dev/null | grep '^{' || true
} | tee "$out" >/dev/null
/usr/bin/python3 bench/cpu_table.py "$out"
