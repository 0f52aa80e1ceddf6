#!/usr/bin/env bash
# Faults under load at full size (issue 16, item 4): one tinybert-server serving
# bge-small-zh-v1.5 int8, 64 wrk clients on /v1/classify (TNEWS titles, 15 labels) before,
# during and after a second client's slow (one byte a second), malformed, not-HTTP and oversized
# requests, then SIGTERM under load. The same code as the CTest faults_under_load
# (tests/scaleout/faults.py), longer and with the real model. Builds nothing.
#
#   TINYBERT_BUILD_DIR=build bash bench/load/faults.sh
#
# Environment (defaults): TINYBERT_BUILD_DIR (build), TINYBERT_SHARED (REPO/../shared),
# BEFORE (15), DURING (30), AFTER (15), SIGTERM_PHASE (10) seconds, TERM_AT (5), SLOW (70),
# READ_TIMEOUT_MS (10000), BACKEND (int8), OUT (bench/results/faults_DATE.json; the table goes
# next to it as .md). Needs wrk (apt-get install -y wrk).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${TINYBERT_BUILD_DIR:-$REPO/build}" && pwd)
SHARED=${TINYBERT_SHARED:-$REPO/../shared}
OUT=${OUT:-$REPO/bench/results/faults_$(date +%Y%m%d-%H%M).json}
[[ -d $SHARED/models/bge-small-zh-v1.5 && -d $SHARED/data ]] ||
  { echo "no models/bge-small-zh-v1.5 and data/ under $SHARED (set TINYBERT_SHARED)" >&2; exit 1; }
SCRATCH=$(mktemp -d /tmp/tinybert-faults.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
python3 "$HERE/make_texts.py" "$SHARED/data" "$SCRATCH" 500
mkdir -p "$(dirname "$OUT")"
{
  echo "Machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores;" \
       "load average at start $(cut -d' ' -f1-3 /proc/loadavg). Date: $(date -u +%Y-%m-%dT%H:%MZ)."
  echo
  python3 "$REPO/tests/scaleout/faults.py" --server "$BUILD/apps/server/tinybert-server" \
    --convert "$BUILD/tools/convert/tinybert-convert" --model-dir "$SHARED/models/bge-small-zh-v1.5" \
    --texts "$SCRATCH/classify.txt" --server-arg=--backend --server-arg="${BACKEND:-int8}" \
    --before "${BEFORE:-15}" --during "${DURING:-30}" --after "${AFTER:-15}" \
    --sigterm-phase "${SIGTERM_PHASE:-10}" --term-at "${TERM_AT:-5}" --slow "${SLOW:-70}" \
    --read-timeout-ms "${READ_TIMEOUT_MS:-10000}" --max-body-bytes 1048576 --json "$OUT"
} | tee "${OUT%.json}.md"
