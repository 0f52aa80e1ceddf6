#!/usr/bin/env bash
# `cmake -S . -B build && cmake --build build` uses the default generator, Unix Makefiles, not
# Ninja: configure the whole project with it (CUDA included when this build has it) and build one
# program, so a generator-specific failure shows up in CTest.
# usage: unix_makefiles.sh SOURCE_DIR CUDA(ON|OFF)
set -euo pipefail
source_dir=$1 cuda=$2
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cmake -S "$source_dir" -B "$build" -G "Unix Makefiles" -DTINYBERT_CUDA="$cuda" \
  -DTINYBERT_BUILD_PYTHON=OFF >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target tinybert-convert -j2 >"$build/build.log" 2>&1 || {
  tail -30 "$build/build.log"
  exit 1
}
"$build/tools/convert/tinybert-convert" --help | grep -q "usage: tinybert-convert"
echo "Unix Makefiles: configured (CUDA $cuda) and built tinybert-convert"
