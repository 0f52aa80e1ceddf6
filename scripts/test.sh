#!/usr/bin/env bash
# Builds everything (Release, warnings as errors) and runs all tests with CTest.
# TINYBERT_BUILD_DIR (default build) and TINYBERT_SANITIZE=ON (ASan + UBSan) select a variant.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${TINYBERT_BUILD_DIR:-build}
sanitize=${TINYBERT_SANITIZE:-OFF}
build_type=Release bench=ON cuda=""
# Under the sanitizers: no benchmarks (not tests), and no CUDA library: without a GPU its only
# CI test is the CPU fallback, which the Release build runs (compute-sanitizer checks the GPU side).
[ "$sanitize" = ON ] && build_type=RelWithDebInfo bench=OFF cuda=-DTINYBERT_CUDA=OFF
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=$build_type -DTINYBERT_WERROR=ON -DTINYBERT_SANITIZE="$sanitize" \
  -DTINYBERT_BUILD_BENCH=$bench $cuda >/dev/null
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure -j2
