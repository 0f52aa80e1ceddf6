#!/usr/bin/env bash
# Checks that every C++ and CUDA source of the repository is formatted as .clang-format says
# (clang-format 14, Debian 12's). CTest runs it as "clang_format"; exit 4 (skipped) without
# clang-format. To reformat instead of checking: bash scripts/check_format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
clang_format=${CLANG_FORMAT:-clang-format}
if ! command -v "$clang_format" >/dev/null; then
  echo "SKIP: $clang_format not found (apt-get install clang-format)"
  exit 4
fi
# Other versions format some constructs differently: only 14's verdict counts.
version=$("$clang_format" --version | sed -n 's/.*version \([0-9]*\).*/\1/p')
if [ "$version" != 14 ] && [ "${1:-}" != --fix ]; then
  echo "SKIP: $clang_format is version $version; the check uses Debian 12's clang-format 14"
  exit 4
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.cpp' '*.hpp' '*.h' '*.cu')
else
  mapfile -t files < <(find apps bench include src tests tools -name '*.c' -o -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu')
fi
if [ "${1:-}" = --fix ]; then
  "$clang_format" -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$clang_format" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "not formatted (fix: bash scripts/check_format.sh --fix):"
  printf '  %s\n' "${bad[@]}"
  "$clang_format" --dry-run "${bad[0]}" 2>&1 | head -20
  exit 1
fi
echo "clang-format: ${#files[@]} files formatted"
