#!/usr/bin/env bash
# Installs the Python package `tinybert` for Debian's /usr/bin/python3 (docs/python.md):
#   bash scripts/install_python.sh [BUILD_DIR]      (default BUILD_DIR: build-python)
# On a fresh Debian 12 it installs the missing build packages from Debian (root or sudo; nothing
# is fetched when they are present, and nothing from PyPI ever), builds only the extension
# module (no tests, no benchmarks, no server), and runs `cmake --install --component python`
# into the interpreter's site dir (/usr/local/lib/python3.11/dist-packages). Environment:
#   PYTHON=/path/to/python3   another interpreter (default /usr/bin/python3)
#   DESTDIR=/tmp/stage        stage the installation there instead (as cmake --install does)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-python}
python=${PYTHON:-/usr/bin/python3}

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

packages=(cmake g++ ninja-build pkg-config libeigen3-dev libutf8proc-dev nlohmann-json3-dev
          libdnnl-dev pybind11-dev python3-dev python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_python: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTINYBERT_BUILD_TESTS=OFF \
  -DTINYBERT_BUILD_BENCH=OFF -DTINYBERT_BUILD_PYTHON=ON -DPython_EXECUTABLE="$python" >/dev/null
if ! cmake --build "$build" --target help | grep -q '^tinybert_python:'; then
  echo "install_python: the Python package is not configured (see the STATUS lines of:" \
       "cmake -S . -B $build)" >&2
  exit 1
fi
cmake --build "$build" --target tinybert_python

site=$(sed -n 's/^TINYBERT_PYTHON_INSTALL_DIR:[A-Z]*=//p' "$build/CMakeCache.txt")
target="${DESTDIR:-}$site"
mkdir -p "$target" 2>/dev/null || true
if [ -w "$target" ]; then
  cmake --install "$build" --component python
else
  $sudo_cmd env DESTDIR="${DESTDIR:-}" cmake --install "$build" --component python
fi

# The check: import the installed copy from outside the source tree.
(cd / && PYTHONPATH="${DESTDIR:+$target}" "$python" -c \
  'import tinybert; print("install_python: tinybert", tinybert.__version__, tinybert.__file__)')
