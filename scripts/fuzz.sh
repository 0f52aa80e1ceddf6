#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang + ASan + UBSan) in build-fuzz and runs each for
# SECONDS (default 20) on a copy of its seed corpus, so the repository stays clean. Exits non-zero
# on any crash, leak, timeout, out-of-memory or failed invariant, printing the reproducer's path.
# FUZZ_BUILD_DIR, FUZZ_WORK_DIR and FUZZ_TARGETS (space-separated) override the defaults;
# tests/fuzz/README.md says how to run for hours.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
build=${FUZZ_BUILD_DIR:-build-fuzz}
work=${FUZZ_WORK_DIR:-$(mktemp -d /tmp/tinybert-fuzz.XXXXXX)}
targets=${FUZZ_TARGETS:-"fuzz_tbw fuzz_safetensors fuzz_pytorch_bin fuzz_onnx fuzz_configs
  fuzz_tokenizer fuzz_uie_schema fuzz_request_bodies"}

CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTINYBERT_FUZZ=ON -DTINYBERT_WERROR=ON -DTINYBERT_BUILD_TESTS=OFF -DTINYBERT_BUILD_BENCH=OFF \
  -DTINYBERT_BUILD_PYTHON=OFF -DTINYBERT_CUDA=OFF -DTINYBERT_NATIVE=OFF >/dev/null
# shellcheck disable=SC2086  # the target list splits on purpose
cmake --build "$build" --target $targets

failed=()
for target in $targets; do
  name=${target#fuzz_}
  corpus="$work/corpus/$target"
  mkdir -p "$corpus" "$work/findings/$target"
  cp -n tests/fuzz/corpus/"$target"/* "$corpus"/
  dict=()
  [ -f "tests/fuzz/dict/$name.dict" ] && dict=(-dict="tests/fuzz/dict/$name.dict")
  log="$work/$target.log"
  # -timeout: one input may take 10 s (a slow input is a finding); -rss_limit_mb /
  # -malloc_limit_mb: a declared huge tensor must be refused, not allocated.
  if "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$work/findings/$target/" "$corpus" >"$log" 2>&1; then
    echo "$target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log")," \
      "$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)"
  else
    failed+=("$target")
    echo "$target: FAILED; log $log, reproducer:" "$work/findings/$target"/*
    grep -E 'ERROR|INVARIANT|what\(\)' "$log" | head -5 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]} (reproduce: $build/tests/fuzz/<target> <reproducer>)"
  exit 1
fi
echo "fuzz: no findings"
# a temporary work directory goes; one the caller named stays
[ -z "${FUZZ_WORK_DIR:-}" ] && rm -rf "$work"
exit 0
