#!/usr/bin/env bash
# HTTP load test of tinybert-server (issue 4, item 7): 64 concurrent clients (wrk) for DURATION
# on /v1/classify and /v1/extract, with micro-batching on (a few --max-wait-ms values) and off,
# each configuration on a fresh server, all in one run. Builds nothing.
#
#   TINYBERT_BUILD_DIR=build bash bench/load/run_load_test.sh
#
# Environment (defaults): TINYBERT_BUILD_DIR (build), TINYBERT_SHARED (REPO/../shared),
# DURATION (30, seconds measured), WARMUP (5), CONNECTIONS (64), WRK_THREADS (2),
# SERVER_THREADS (80), BACKEND (int8), WRK_TIMEOUT (10s),
# CONFIGS ("--max-wait-ms 2;--no-batching;--max-wait-ms 0;--max-wait-ms 10": server flags of each
# configuration, ';'-separated), ROUNDS (2: the configurations run in turn ROUNDS times, so that
# a noisy machine hits all of them alike), OUT (bench/results/load_DATE.jsonl).
# Needs wrk (Debian: apt-get install -y wrk), curl, python3. Prints the markdown table
# (bench/load/load_table.py) and writes it next to OUT as .md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${TINYBERT_BUILD_DIR:-$REPO/build}" && pwd)
SHARED=${TINYBERT_SHARED:-$REPO/../shared}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
SERVER_THREADS=${SERVER_THREADS:-80}
BACKEND=${BACKEND:-int8}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
ROUNDS=${ROUNDS:-2}
CONFIGS=${CONFIGS:---max-wait-ms 2;--no-batching;--max-wait-ms 0;--max-wait-ms 10}
STAMP=$(date +%Y%m%d-%H%M)
OUT=${OUT:-$REPO/bench/results/load_$STAMP.jsonl}

SERVER=$BUILD/apps/server/tinybert-server
CONVERT=$BUILD/tools/convert/tinybert-convert
for tool in "$SERVER" "$CONVERT"; do
  [[ -x $tool ]] || { echo "missing $tool: build tinybert-server and tinybert-convert first" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }
[[ -d $SHARED/models && -d $SHARED/data ]] || { echo "no models/ and data/ under $SHARED (set TINYBERT_SHARED)" >&2; exit 1; }

SCRATCH=$(mktemp -d /tmp/tinybert-load.XXXXXX)
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

echo "== converting models into $SCRATCH" >&2
"$CONVERT" "$SHARED/models/bge-small-zh-v1.5" "$SCRATCH/bge.tbw" >&2
"$CONVERT" "$SHARED/models/demo-uie" "$SCRATCH/uie.tbw" >&2
python3 "$HERE/make_texts.py" "$SHARED/data" "$SCRATCH" 500

start_server() {  # flags...
  rm -f "$SCRATCH/port"
  "$SERVER" --model "bge=$SCRATCH/bge.tbw" --model "uie=$SCRATCH/uie.tbw" --port 0 --port-file "$SCRATCH/port" \
    --backend "$BACKEND" --threads "$SERVER_THREADS" "$@" >"$SCRATCH/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if [[ -s $SCRATCH/port ]] && curl -sf "http://127.0.0.1:$(cat "$SCRATCH/port")/health" >/dev/null; then
      PORT=$(cat "$SCRATCH/port"); return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not become ready:" >&2; cat "$SCRATCH/server.log" >&2; exit 1
}

stop_server() {
  kill "$SERVER_PID"; wait "$SERVER_PID" || { echo "server exited with $?:" >&2; cat "$SCRATCH/server.log" >&2; }
  SERVER_PID=
}

json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

mkdir -p "$(dirname "$OUT")"
: >"$OUT"
CPU=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
CMD="TINYBERT_BUILD_DIR=${TINYBERT_BUILD_DIR:-build} DURATION=$DURATION ROUNDS=$ROUNDS bash bench/load/run_load_test.sh"
printf '{"type": "meta", "date": "%s", "cpu": %s, "cores": %s, "loadavg_start": %s, "command": %s, "wrk": %s, "server": %s, "rounds": %s, "duration_s": %s, "warmup_s": %s, "connections": %s, "wrk_threads": %s, "wrk_timeout": "%s", "backend": "%s", "server_threads": %s}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(json_str "$CPU")" "$(nproc)" "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" \
  "$(json_str "$CMD")" "$(json_str "wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --timeout $WRK_TIMEOUT -s bench/load/ENDPOINT.lua URL -- TEXTS")" \
  "$(json_str "tinybert-server --model bge=bge-small-zh-v1.5.tbw --model uie=demo-uie.tbw --backend $BACKEND --threads $SERVER_THREADS FLAGS")" \
  "$ROUNDS" "$DURATION" "$WARMUP" "$CONNECTIONS" "$WRK_THREADS" "$WRK_TIMEOUT" "$BACKEND" "$SERVER_THREADS" >>"$OUT"

IFS=';' read -r -a CONFIG_LIST <<<"$CONFIGS"
for round in $(seq 1 "$ROUNDS"); do
for flags in "${CONFIG_LIST[@]}"; do
  read -r -a FLAGS <<<"$flags"
  start_server "${FLAGS[@]}"
  echo "== round $round: server ${FLAGS[*]} on port $PORT (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  for endpoint in classify extract; do
    model=bge; [[ $endpoint == extract ]] && model=uie
    url="http://127.0.0.1:$PORT"
    wrk_args=(-t"$WRK_THREADS" -c"$CONNECTIONS" --timeout "$WRK_TIMEOUT" -s "$HERE/$endpoint.lua" "$url" -- "$SCRATCH/$endpoint.txt")
    wrk -d"${WARMUP}s" "${wrk_args[@]}" >"$SCRATCH/warmup.txt"
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    curl -sf "$url/metrics" >"$SCRATCH/before.prom"
    wrk -d"${DURATION}s" "${wrk_args[@]}" >"$SCRATCH/wrk.txt"
    curl -sf "$url/metrics" >"$SCRATCH/after.prom"
    rss_mib=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status")
    grep -E '^ +(Latency|[0-9]+ requests|Non-2xx|Socket)|^Requests/sec' "$SCRATCH/wrk.txt" | sed "s/^/   $endpoint: /" >&2 || true
    config=$(printf '{"round": %s, "endpoint_name": "%s", "batching": %s, "server_flags": %s, "connections": %s, "wrk_threads": %s, "loadavg_1m_before": %s, "server_rss_mib": %s}' \
      "$round" "$endpoint" "$([[ $flags == *--no-batching* ]] && echo false || echo true)" "$(json_str "$flags")" \
      "$CONNECTIONS" "$WRK_THREADS" "$load_before" "$rss_mib")
    python3 "$HERE/record.py" "$SCRATCH/wrk.txt" "$SCRATCH/before.prom" "$SCRATCH/after.prom" "$model" "$config" >>"$OUT"
  done
  stop_server
done
done

echo "== wrote $OUT" >&2
python3 "$HERE/load_table.py" "$OUT" | tee "${OUT%.jsonl}.md"
