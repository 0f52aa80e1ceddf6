#!/usr/bin/env bash
# One command for the GPU benchmark (issue 5), on a machine with an NVIDIA GPU: tinybert's CUDA
# backend (f16, bf16, int8) on a bert-base-chinese-shaped random model and on bge-small-zh-v1.5,
# and PyTorch + transformers fp16 (eager attention and SDPA) on the same shapes, in this run.
# Batch 1 at seq 16..512, batch 128 at seq 128. Writes bench/results/gpu-<date>.jsonl and prints
# the markdown table (latency medians, sequences/s, TFLOP/s, GPU memory).
#   bash bench/gpu/run_gpu_bench.sh [build-dir]      (needs ../shared, nvcc, python3 with torch)
# PYTHON picks the interpreter that has torch and transformers (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-gpu}
shared=../shared
python=${PYTHON:-python3}
out=bench/results/gpu-$(date +%Y%m%d-%H%M).jsonl
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p bench/results

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTINYBERT_CUDA=ON -DTINYBERT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target bench_gpu tinybert-convert >/dev/null
"$build/tools/convert/tinybert-convert" "$shared/models/bge-small-zh-v1.5" "$scratch/bge.tbw" >/dev/null 2>&1
"$build/bench/bench_gpu" --make-bert-base "$scratch/bert-base.tbw"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    head -1 | sed 's/^/{"machine":"/; s/$/"}/' || true
  for model in bert-base bge; do
    label=$model; [ "$model" = bge ] && label=bge-small
    for precision in f16 bf16 int8; do
      "$build/bench/bench_gpu" --model "$scratch/$model.tbw" --precision "$precision" --label "$label" ||
        echo "{\"error\":\"bench_gpu $model $precision failed\"}"
    done
  done
  "$python" bench/gpu/torch_bench.py --models bert-base,bge-small --attention eager,sdpa ||
    echo '{"error":"torch_bench.py failed"}'
} | tee "$out" >/dev/null
python3 bench/gpu/gpu_table.py "$out"
