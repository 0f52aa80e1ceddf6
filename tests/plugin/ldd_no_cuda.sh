#!/usr/bin/env bash
# Usage: ldd_no_cuda.sh FILE... : fails when ldd of any FILE names a CUDA library (issue 16, 2f:
# the CPU programs must start on a machine without CUDA; only the plugin may need it). An
# argument ending in / is a folder that stands for the Python extension modules (_native*.so) in
# it; absent (no pybind11 in this build), it is skipped with a note.
set -euo pipefail
status=0 checked=0
for arg in "$@"; do
  files=("$arg")
  if [ "${arg: -1}" = / ] && [ ! -d "$arg" ]; then
    echo "not built, skipped: $arg"
    continue
  fi
  if [ -d "$arg" ]; then
    shopt -s nullglob
    files=("$arg"/_native*.so)
    shopt -u nullglob
  fi
  for file in "${files[@]}"; do
    [ -e "$file" ] || { echo "missing: $file"; status=1; continue; }
    deps=$(ldd "$file")
    if cuda=$(grep -E 'lib(cuda|cudart|cublas|cublasLt|nvrtc|nvJitLink)[.-]' <<<"$deps"); then
      echo "$file links CUDA:"
      echo "$cuda"
      status=1
    else
      echo "$file: no CUDA library"
    fi
    checked=$((checked + 1))
  done
done
[ "$checked" -gt 0 ] || { echo "nothing checked"; exit 1; }
exit $status
