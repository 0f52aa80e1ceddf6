#!/usr/bin/env bash
# Installs tinybert from BUILD_DIR into a scratch prefix, builds tests/consumer against it with
# find_package(tinybert), converts a tiny model with the installed converter and runs the consumer.
set -euo pipefail
build_dir=$1 source_dir=$2 sanitize=${3:-OFF}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
cmake -S "$source_dir/tests/consumer" -B "$prefix/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/bin/tinybert-convert" "$source_dir/tests/data/tiny/tiny-bert" "$prefix/tiny-bert.tbw" 2>/dev/null
"$prefix/build/consumer" "$prefix/tiny-bert.tbw"

# The README's C example, as a user pastes it: compiled with pkg-config against the installed
# libtinybert.so, run on the tiny encoder.
awk '/^## C API/ {section = 1} section && /^```c$/ {code = 1; next} code && /^```$/ {exit} code' \
  "$source_dir/README.md" > "$prefix/example.c"
[ -s "$prefix/example.c" ] || { echo "README.md has no \`\`\`c block under '## C API'"; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# A library built with the sanitizers needs their runtime first in the program that loads it.
sanitizer_flags=()
[ "$sanitize" = ON ] && sanitizer_flags=(-fsanitize=address,undefined)
# shellcheck disable=SC2046  # pkg-config's output is meant to be split into words
cc -std=c99 -Wall -Werror "${sanitizer_flags[@]}" -o "$prefix/example" "$prefix/example.c" \
  $(pkg-config --cflags --libs tinybert)
LD_LIBRARY_PATH="$prefix/lib" "$prefix/example" "$prefix/tiny-bert.tbw" | tee "$prefix/example.out"
grep -q '"results"' "$prefix/example.out"
