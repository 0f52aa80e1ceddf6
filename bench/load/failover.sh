#!/usr/bin/env bash
# Failover at full size (issue 14): nginx (deploy/nginx/tinybert.conf) in front of 3
# tinybert-server replicas serving bge-small-zh-v1.5 int8, 64 wrk clients on /v1/classify (TNEWS
# titles, 15 labels), in three phases: before; during (replica 1 SIGKILLed, replica 2 SIGTERMed,
# both restarted); after. Then the cost of the nginx hop: the same load straight to one replica
# and through nginx to that one replica. The same code as the CTest scaleout_failover
# (tests/scaleout/failover.py), longer and with the real model. Builds nothing.
#
#   TINYBERT_BUILD_DIR=build bash bench/load/failover.sh
#
# Environment (defaults): TINYBERT_BUILD_DIR (build), TINYBERT_SHARED (REPO/../shared),
# BEFORE (15), DURING (30), AFTER (15) seconds per phase; KILL_AT (5), TERM_AT (10), RESTART_AT
# (15) seconds into the during phase; CONNECTIONS (64), WRK_THREADS (2), BACKEND (int8),
# SERVER_THREADS (128), REPLICA_ENV (e.g. "OMP_NUM_THREADS=1": KEY=VALUE ... for the replicas),
# OVERHEAD (15 s per run, 0: skip), OVERHEAD_ROUNDS (2), OVERHEAD_CONNECTIONS (64,8: client
# counts of the overhead runs), OUT (bench/results/failover_DATE.json;
# the printed tables go next to it as .md). Needs nginx and wrk (apt-get install -y nginx wrk).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${TINYBERT_BUILD_DIR:-$REPO/build}" && pwd)
SHARED=${TINYBERT_SHARED:-$REPO/../shared}
BEFORE=${BEFORE:-15} DURING=${DURING:-30} AFTER=${AFTER:-15}
KILL_AT=${KILL_AT:-5} TERM_AT=${TERM_AT:-10} RESTART_AT=${RESTART_AT:-15}
CONNECTIONS=${CONNECTIONS:-64} WRK_THREADS=${WRK_THREADS:-2}
BACKEND=${BACKEND:-int8} SERVER_THREADS=${SERVER_THREADS:-128} REPLICA_ENV=${REPLICA_ENV:-}
OVERHEAD=${OVERHEAD:-15} OVERHEAD_ROUNDS=${OVERHEAD_ROUNDS:-2}
OVERHEAD_CONNECTIONS=${OVERHEAD_CONNECTIONS:-64,8}
OUT=${OUT:-$REPO/bench/results/failover_$(date +%Y%m%d-%H%M).json}

SERVER=$BUILD/apps/server/tinybert-server
CONVERT=$BUILD/tools/convert/tinybert-convert
for tool in "$SERVER" "$CONVERT"; do
  [[ -x $tool ]] || { echo "no $tool: build tinybert-server and tinybert-convert" >&2; exit 1; }
done
for tool in nginx wrk; do
  command -v $tool >/dev/null || { echo "no $tool: apt-get install -y nginx wrk" >&2; exit 1; }
done
[[ -d $SHARED/models/bge-small-zh-v1.5 && -d $SHARED/data ]] ||
  { echo "no models/bge-small-zh-v1.5 and data/ under $SHARED (set TINYBERT_SHARED)" >&2; exit 1; }

SCRATCH=$(mktemp -d /tmp/tinybert-failover.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
"$CONVERT" "$SHARED/models/bge-small-zh-v1.5" "$SCRATCH/bge.tbw" >&2
python3 "$HERE/make_texts.py" "$SHARED/data" "$SCRATCH" 500

env_args=()
for kv in $REPLICA_ENV; do env_args+=(--replica-env "$kv"); done
mkdir -p "$(dirname "$OUT")"
{
  echo "Machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores;" \
       "load average at start $(cut -d' ' -f1-3 /proc/loadavg). Date: $(date -u +%Y-%m-%dT%H:%MZ)."
  echo
  echo "3 replicas \`tinybert-server --model m=bge-small-zh-v1.5.tbw --backend $BACKEND" \
       "--threads $SERVER_THREADS\`${REPLICA_ENV:+ ($REPLICA_ENV)} behind nginx" \
       "(deploy/nginx/tinybert.conf);" \
       "\`wrk -t$WRK_THREADS -c$CONNECTIONS -s bench/load/classify.lua\`" \
       "per phase: before ${BEFORE} s, during ${DURING} s (SIGKILL replica1 at +${KILL_AT} s," \
       "SIGTERM replica2 at +${TERM_AT} s, both restarted from +${RESTART_AT} s), after ${AFTER} s."
  echo
  python3 "$REPO/tests/scaleout/failover.py" --server "$SERVER" --model-tbw "$SCRATCH/bge.tbw" \
    --texts "$SCRATCH/classify.txt" --server-arg=--backend --server-arg="$BACKEND" \
    --server-threads "$SERVER_THREADS" "${env_args[@]}" \
    --connections "$CONNECTIONS" --wrk-threads "$WRK_THREADS" \
    --before "$BEFORE" --during "$DURING" --after "$AFTER" \
    --kill-at "$KILL_AT" --term-at "$TERM_AT" --restart-at "$RESTART_AT" \
    --overhead "$OVERHEAD" --overhead-rounds "$OVERHEAD_ROUNDS" \
    --overhead-connections "$OVERHEAD_CONNECTIONS" --json "$OUT"
} | tee "${OUT%.json}.md"
echo "== wrote $OUT and ${OUT%.json}.md" >&2
