#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds tinybert, converts the default models
# (scripts/get_models.sh) and starts tinybert-server with its web page:
#   http://${HOST:-127.0.0.1}:${PORT:-8080}/      (Ctrl-C or SIGTERM stops it)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
# Only what this script runs: the tests and benchmarks are the second README command's.
cmake --build build --target tinybert-server tinybert-convert
bash scripts/get_models.sh
args=()
[ -f models/bge-small-zh-v1.5.tbw ] && args+=(--model bge=models/bge-small-zh-v1.5.tbw)
[ -f models/demo-mlm.tbw ] && args+=(--model mlm=models/demo-mlm.tbw)
[ -f models/demo-uie.tbw ] && args+=(--model uie=models/demo-uie.tbw)
if [ ${#args[@]} -eq 0 ]; then
  echo "quickstart: no model could be converted" >&2
  exit 1
fi
echo "quickstart: open http://${HOST:-127.0.0.1}:${PORT:-8080}/ in a browser"
exec build/apps/server/tinybert-server "${args[@]}" --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" \
  --backend "${BACKEND:-int8}"
