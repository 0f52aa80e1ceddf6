#!/usr/bin/env bash
# Checks deploy/systemd/tinybert-server.service (CTest: deploy_systemd_unit) with Debian's
# systemd-analyze, offline (no running systemd needed): `verify` (syntax, directives, the
# ExecStart binary: pointed at the built tinybert-server) and `security --offline` (the
# hardening: fails above an exposure of 2.0 on systemd's 0..10 scale). Exits 4 (skipped)
# without systemd-analyze.
#   bash tests/scaleout/check_systemd.sh build/apps/server/tinybert-server
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
unit=$here/../../deploy/systemd/tinybert-server.service
server=$(realpath "${1:?usage: check_systemd.sh TINYBERT_SERVER}")
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIPPED: no systemd-analyze (Debian: apt-get install -y systemd)"
  exit 4
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/tinybert-server#$server#" "$unit" >"$tmp/tinybert-server.service"
# verify prints its findings on stderr and may still exit 0: any output is a failure.
(cd "$tmp" && systemd-analyze verify "$tmp/tinybert-server.service") >"$tmp/verify.txt" 2>&1 || {
  cat "$tmp/verify.txt"; echo "FAILED: systemd-analyze verify"; exit 1; }
if [ -s "$tmp/verify.txt" ]; then
  cat "$tmp/verify.txt"; echo "FAILED: systemd-analyze verify"; exit 1
fi
if ! systemd-analyze security --offline=yes --threshold=20 "$tmp/tinybert-server.service" \
    >"$tmp/security.txt" 2>&1; then
  cat "$tmp/security.txt"; echo "FAILED: exposure above 2.0"; exit 1
fi
echo "systemd: verify clean; $(grep -o 'Overall exposure level.*' "$tmp/security.txt")"
