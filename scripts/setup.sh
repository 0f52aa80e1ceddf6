#!/usr/bin/env bash
# Installs what tinybert needs to build and test (run as root on Debian 12): the Debian packages,
# and playwright-core for the browser test of the server's web page (npm, pinned in
# tests/browser/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(cmake g++ ninja-build pkg-config libeigen3-dev libutf8proc-dev nlohmann-json3-dev catch2 libdnnl-dev
          libboost-dev libcpp-httplib-dev libhiredis-dev redis-server nginx wrk chromium fonts-wqy-microhei curl
          clang-format python3-dev pybind11-dev python3-numpy python3-pytest python3-yaml
          clang libclang-rt-14-dev)  # the last two: libFuzzer (scripts/fuzz.sh)
# A Node.js installed outside Debian's packages (node and npm on PATH) is as good as Debian's.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "setup: installing playwright-core for the browser test"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ ! -d tests/scaleout/node_modules/kubernetes-models ]; then
  echo "setup: installing kubernetes-models for the manifest schema check"
  (cd tests/scaleout && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "setup: build and test dependencies present"
