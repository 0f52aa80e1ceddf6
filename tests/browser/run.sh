#!/usr/bin/env bash
# Browser test of tinybert-server's web page: converts the three demo models (and the tiny
# ModelScope SiameseUIE of tests/data/modelscope), starts the server on
# a free port, drives the page with headless Chromium (browser_test.mjs) and always stops the server.
# usage: run.sh SERVER_BIN CONVERT_BIN OUT_DIR      exit 4 = skipped (no Chromium, node_modules or ../shared)
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 SERVER_BIN CONVERT_BIN OUT_DIR" >&2
  exit 2
fi
server_bin=$1 convert_bin=$2 out_dir=$3
here=$(cd "$(dirname "$0")" && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}
models=${TINYBERT_SHARED_DIR:-$here/../../../shared}/models

if [ ! -x "$chromium" ]; then
  echo "SKIP: $chromium not found (apt-get install chromium)"
  exit 4
fi
if ! command -v node >/dev/null; then
  echo "SKIP: node not found (apt-get install nodejs npm)"
  exit 4
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "SKIP: $here/node_modules/playwright-core not found (cd tests/browser && npm ci)"
  exit 4
fi
if [ ! -d "$models" ]; then
  echo "SKIP: $models not found (../shared is not beside the repo)"
  exit 4
fi

mkdir -p "$out_dir"
for pair in bge:bge-small-zh-v1.5 mlm:demo-mlm uie:demo-uie; do
  name=${pair%%:*} folder=${pair#*:}
  "$convert_bin" "$models/$folder" "$out_dir/$name.tbw" >"$out_dir/convert-$name.log" 2>&1 ||
    { cat "$out_dir/convert-$name.log"; echo "FAIL: converting $models/$folder"; exit 1; }
done

"$convert_bin" "$here/../data/modelscope/siamese-uie" "$out_dir/siamese.tbw" >"$out_dir/convert-siamese.log" 2>&1 ||
  { cat "$out_dir/convert-siamese.log"; echo "FAIL: converting the tiny SiameseUIE"; exit 1; }

port_file=$out_dir/port.txt
rm -f "$port_file"
server_pid=
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

"$server_bin" --model "bge=$out_dir/bge.tbw" --model "mlm=$out_dir/mlm.tbw" --model "uie=$out_dir/uie.tbw" \
  --model "siamese=$out_dir/siamese.tbw" --port 0 --port-file "$port_file" >"$out_dir/server.log" 2>&1 &
server_pid=$!

# Wait for the port file, then for GET /health to answer 200.
for _ in $(seq 600); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$out_dir/server.log"
    echo "FAIL: tinybert-server exited before listening"
    exit 1
  fi
  [ -s "$port_file" ] && break
  sleep 0.1
done
if [ ! -s "$port_file" ]; then
  cat "$out_dir/server.log"
  echo "FAIL: tinybert-server wrote no port file within 60 s"
  exit 1
fi
base_url="http://127.0.0.1:$(tr -d '[:space:]' <"$port_file")"
node -e '
const url = process.argv[1] + "/health";
const deadline = Date.now() + 60000;
(async () => {
  for (;;) {
    try { if ((await fetch(url)).status === 200) return; } catch {}
    if (Date.now() > deadline) { console.log("FAIL: " + url + " did not answer 200 within 60 s"); process.exit(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
})();' "$base_url" || { cat "$out_dir/server.log"; exit 1; }

echo "tinybert-server listening at $base_url (log: $out_dir/server.log)"
status=0
CHROMIUM="$chromium" node "$here/browser_test.mjs" "$base_url" "$out_dir/screenshots" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 40 lines) ---"
  tail -n 40 "$out_dir/server.log"
fi
exit "$status"
