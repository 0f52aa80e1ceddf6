#!/usr/bin/env bash
# Installs tinybert from BUILD_DIR into a scratch prefix, builds tests/consumer against it with
# find_package(tinybert), converts a tiny model with the installed converter and runs the consumer.
set -euo pipefail
build_dir=$1 source_dir=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
cmake -S "$source_dir/tests/consumer" -B "$prefix/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/bin/tinybert-convert" "$source_dir/tests/data/tiny/tiny-bert" "$prefix/tiny-bert.tbw" 2>/dev/null
"$prefix/build/consumer" "$prefix/tiny-bert.tbw"
