#!/usr/bin/env bash
# Cross-builds tinybert for aarch64 (Debian's g++-aarch64-linux-gnu) and runs its tests under
# qemu-user. The arm64 libraries come from Debian's own packages, unpacked into a sysroot in a
# cache folder: libdnnl-dev:arm64 cannot be installed beside libdnnl-dev:amd64, and installing
# the others as :arm64 would touch the host's packages, so nothing is installed: a private apt
# state (lists of arm64 packages) serves `apt-get download`, no root needed.
#
#   scripts/cross_aarch64.sh            sysroot, configure, build everything, all tests
#   scripts/cross_aarch64.sh --ci       only the CI subset (below): its targets and its tests
#   scripts/cross_aarch64.sh --sysroot  only prepare the sysroot and print its path
#   ... -- ARGS                         more arguments for ctest (e.g. -- -R tokenizer)
#
# TINYBERT_BUILD_DIR (default build-aarch64) and TINYBERT_CACHE_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/tinybert) choose the folders; the sysroot is keyed by the exact
# package versions, so reruns reuse it and a Debian point release makes a new one.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
ctest_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ci) mode=ci ;;
    --sysroot) mode=sysroot ;;
    --) shift; ctest_extra=("$@"); break ;;
    *) echo "cross_aarch64: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
build=${TINYBERT_BUILD_DIR:-build-aarch64}
cache=${TINYBERT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tinybert}

# The CI subset, chosen by label (each test carries its program's name): the tokenizer, the tiny
# models end to end, the readers, the .tbw format, oneDNN parity (with its int8 path on each
# emulated CPU), and the CLI and the server started as programs through the emulator: 78 tests,
# 70 s under qemu on this machine. Under emulation the real-model tests take minutes each
# (oneDNN on bge-small-zh alone 161 s, the UIE windows 15 min): the native build runs those, and
# the full mode here.
ci_targets=(test_tokenizer test_tiny_models test_readers test_format test_onednn test_cli
            test_server tinybert_cli tinybert-server)
ci_labels='^test_(tokenizer|tiny_models|readers|format|onednn|cli|server)$'
ci_long='^oneDNN backend on bge-small-zh'

# Host tools: the cross compiler and the emulator (amd64 packages; only these are installed).
host_packages=(g++-aarch64-linux-gnu qemu-user cmake ninja-build pkg-config)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross_aarch64: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The arm64 packages of the sysroot: libraries we link and their -dev packages, what those
# libraries load at run time (cpp-httplib: OpenSSL, zlib, brotli; pkg-config wants their .pc
# files too), and the header-only dependencies, so that nothing comes from the host's /usr/include.
# libc, libstdc++ and libgomp come with the cross compiler (/usr/aarch64-linux-gnu).
sysroot_packages=(libdnnl2 libdnnl-dev libutf8proc2 libutf8proc-dev libhiredis0.14 libhiredis-dev
                  libcpp-httplib0.11 libcpp-httplib-dev libssl3 libssl-dev zlib1g zlib1g-dev
                  libbrotli1 libbrotli-dev libeigen3-dev nlohmann-json3-dev catch2 libboost1.74-dev)
apt_dir=$cache/apt-arm64
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/debs"
# An apt that sees only arm64 packages, keeps its lists in the cache and no status of installed
# packages (/dev/null), so that it neither needs nor changes the host's apt state.
apt_opts=(-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
          -o "Dir::Cache::archives=$apt_dir/archives" -o Dir::State::status=/dev/null
          -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Debug::NoLocking=1
          -o APT::Sandbox::User="$(id -un)" -qq)
sysroot_link=$cache/sysroot-arm64
if apt-get "${apt_opts[@]}" update 2>/dev/null &&
   uris=$(apt-get "${apt_opts[@]}" download --print-uris "${sysroot_packages[@]}"); then
  # The .deb file names carry the versions: they are the key.
  key=$(awk '{print $2}' <<<"$uris" | sort | sha256sum | cut -c1-12)
  sysroot=$cache/sysroot-arm64-$key
  if [ ! -f "$sysroot/.complete" ]; then
    echo "cross_aarch64: unpacking the arm64 sysroot into $sysroot"
    (cd "$cache/debs" && apt-get "${apt_opts[@]}" download "${sysroot_packages[@]}")
    rm -rf "$sysroot.tmp"
    mkdir -p "$sysroot.tmp"
    for deb in $(awk '{print $2}' <<<"$uris"); do
      dpkg-deb -x "$cache/debs/$deb" "$sysroot.tmp"
    done
    # The cross compiler's runtime (libc, ld.so, libstdc++, libgomp) beside the unpacked
    # libraries, so that `qemu-aarch64 -L SYSROOT` (or a chroot) finds every library there.
    mkdir -p "$sysroot.tmp/lib/aarch64-linux-gnu"
    for lib in /usr/aarch64-linux-gnu/lib/*.so*; do
      ln -sf "$lib" "$sysroot.tmp/lib/aarch64-linux-gnu/"
    done
    ln -sf /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 "$sysroot.tmp/lib/"
    printf '%s\n' "$uris" | awk '{print $2}' >"$sysroot.tmp/.packages"
    touch "$sysroot.tmp/.complete"
    rm -rf "$sysroot"
    mv "$sysroot.tmp" "$sysroot"
  fi
  ln -sfn "$sysroot" "$sysroot_link"
elif [ -f "$sysroot_link/.complete" ]; then
  echo "cross_aarch64: no package lists (offline?); reusing $(readlink "$sysroot_link")" >&2
else
  echo "cross_aarch64: could not read Debian's arm64 package lists and no sysroot is cached" >&2
  exit 1
fi
sysroot=$(readlink -f "$sysroot_link")
if [ "$mode" = sysroot ]; then
  echo "$sysroot"
  exit 0
fi

# The preset (CMakePresets.json) names the toolchain file; cross builds default to no
# -march=native and no CUDA there. Python and benchmarks are host tools, not edge programs.
nice -n 5 cmake -S . -B "$build" --preset aarch64-linux-gnu -DTINYBERT_SYSROOT="$sysroot" \
  -DTINYBERT_WERROR=ON -DTINYBERT_BUILD_PYTHON=OFF -DTINYBERT_BUILD_BENCH=OFF >/dev/null
if [ "$mode" = ci ]; then
  nice -n 5 cmake --build "$build" --target "${ci_targets[@]}"
  ctest --test-dir "$build" --output-on-failure -j2 -L "$ci_labels" -E "$ci_long" \
    "${ctest_extra[@]}"
else
  nice -n 5 cmake --build "$build"
  # These start the programs from shell scripts (page, nginx, systemd) or build natively (an
  # installed consumer, Unix Makefiles): the native build runs them.
  host_only='^(browser_page|scaleout_failover|deploy_systemd_unit|consumer_find_package'
  host_only+='|build_with_unix_makefiles)$'
  ctest --test-dir "$build" --output-on-failure -j2 -E "$host_only" "${ctest_extra[@]}"
fi
