#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds tinybert, converts the default models from
# ../shared/models and runs each of them once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
mkdir -p models
shared=../shared/models
for m in bge-small-zh-v1.5 demo-mlm demo-uie; do
  if [ -d "$shared/$m" ]; then
    build/tools/convert/tinybert-convert "$shared/$m" "models/$m.tbw"
  else
    echo "quickstart: $shared/$m not found; skipping that model" >&2
  fi
done
if [ -f models/demo-mlm.tbw ]; then
  echo "== fill-mask (demo-mlm)"
  build/apps/tinybert fill-mask --model models/demo-mlm.tbw --top-k 3 "床前明月光，疑是地[MASK]霜。"
fi
if [ -f models/bge-small-zh-v1.5.tbw ]; then
  echo "== embed (bge-small-zh-v1.5): first 4 of 512 dims"
  build/apps/tinybert embed --model models/bge-small-zh-v1.5.tbw "今天天气真好。" |
    sed -E 's/("embeddings":\[\[)([^,]*,[^,]*,[^,]*,[^,]*),.*/\1\2, ...]]}/'
fi
