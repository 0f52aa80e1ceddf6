#!/usr/bin/env bash
# Installs the Debian packages tinybert needs to build and test (run as root on Debian 12).
set -euo pipefail
packages=(cmake g++ ninja-build pkg-config libeigen3-dev libutf8proc-dev nlohmann-json3-dev catch2 libdnnl-dev)
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
echo "setup: build dependencies present"
