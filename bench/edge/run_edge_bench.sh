#!/usr/bin/env bash
# The edge table of bench/RESULTS.md ("Edge: aarch64"), measured on an x86 machine: stripped
# sizes of the aarch64 programs and libraries, a dependency-light CLI, RSS after load and peak
# under qemu-user with the emulator's own share apart (rss_split.py), and guest instructions per
# token on emulated Cortex-A72 (Pi 4) / Cortex-A76 (Pi 5) against x86-64, counted by a TCG plugin
# (qemu_insn_count.c: Debian's qemu-user loads plugins but ships none).
#
#   bash bench/edge/run_edge_bench.sh      (needs ../shared/models/bge-small-zh-v1.5)
#
# Builds: build-aarch64 (scripts/cross_aarch64.sh's) and build-x86-generic (no -march=native, so
# that qemu-x86_64 can run it; its converter and bench_cpu make the models). Raw lines:
# bench/results/edge/.
set -euo pipefail
cd "$(dirname "$0")/../.."
cross=build-aarch64 x86=build-x86-generic out=bench/results/edge
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sysroot=$(bash scripts/cross_aarch64.sh --sysroot | tail -1)
libs=$sysroot/usr/lib/aarch64-linux-gnu
qemu=(qemu-aarch64 -L "$sysroot")

cmake -S . -B "$cross" --preset aarch64-linux-gnu -DTINYBERT_SYSROOT="$sysroot" \
  -DTINYBERT_BUILD_PYTHON=OFF >/dev/null
nice -n 5 cmake --build "$cross" --target tinybert_cli tinybert-server tinybert-convert
cmake -S . -B "$x86" -G Ninja -DTINYBERT_NATIVE=OFF -DTINYBERT_CUDA=OFF \
  -DTINYBERT_BUILD_PYTHON=OFF -DTINYBERT_BUILD_TESTS=OFF >/dev/null
nice -n 5 cmake --build "$x86" --target tinybert_cli tinybert-convert bench_cpu

# The dependency-light CLI: the same objects with libstdc++, libgcc and utf8proc linked in (Debian
# has no libdnnl.a, so oneDNN stays shared: no fully static CLI with the fast backend).
objects=$cross/apps/CMakeFiles/tinybert_cli.dir
aarch64-linux-gnu-g++ -O3 -static-libstdc++ -static-libgcc -fopenmp -Wl,-rpath-link,"$libs" \
  "$objects"/*.cpp.o "$libs/libutf8proc.a" "$libs"/libdnnl.so.2.* -ldl -o "$scratch/tinybert-light"

{
  for f in "$cross/apps/tinybert" "$scratch/tinybert-light" "$cross/apps/server/tinybert-server" \
           "$cross/tools/convert/tinybert-convert" "$libs"/libdnnl.so.2.* \
           "$libs"/libutf8proc.so.2.* "$x86/apps/tinybert" /usr/lib/x86_64-linux-gnu/libdnnl.so.2.*
  do
    strip=strip
    readelf -h "$f" | grep -q AArch64 && strip=aarch64-linux-gnu-strip
    "$strip" -o "$scratch/stripped" "$f"
    needed=$(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
    echo "size $f $(stat -c %s "$scratch/stripped") needs: $needed"
  done
} | tee "$out/sizes.txt"

"$x86/tools/convert/tinybert-convert" ../shared/models/bge-small-zh-v1.5 "$scratch/bge-small.tbw"
"$x86/bench/bench_cpu" --make-bert-base "$scratch/bert-base.tbw"
python3 -c "
base = '今天天气真好我们去公园散步吧明天会下雨吗'
base += '这家餐厅的菜非常好吃中国的首都是北京'
for i in range(32): print((base * 4)[:round(14 + i * 112 / 31)])" >"$scratch/b32.txt"
# 66 tokens with [CLS] and [SEP]
text=$(printf '今天天气真好，我们去公园散步吧。%.0s' 1 2 3 4)
printf '%s\n' "$text" >"$scratch/one.txt"
printf '%s\n%s\n' "$text" "$text" >"$scratch/two.txt"

# Memory with 4 OpenMP threads (a Pi's cores): after load (one 3-token text) and peak (32 texts).
/usr/bin/time -f "rss qemu tinybert --help max_rss_kib %M" "${qemu[@]}" "$cross/apps/tinybert" \
  --help 2>&1 >/dev/null | tail -1 | tee "$out/rss.txt"
/usr/bin/time -f "rss x86 tinybert --help max_rss_kib %M" "$x86/apps/tinybert" --help 2>&1 \
  >/dev/null | tail -1 | tee -a "$out/rss.txt"
for model in bge-small bert-base; do
  embed=(embed --backend int8 --model "$scratch/$model.tbw")
  export OMP_NUM_THREADS=4
  echo "rss $model aarch64 after_load $(python3 bench/edge/rss_split.py "${qemu[@]}" \
    -cpu cortex-a76 "$cross/apps/tinybert" "${embed[@]}" a)" | tee -a "$out/rss.txt"
  echo "rss $model aarch64 peak $(python3 bench/edge/rss_split.py sh -c \
    "exec ${qemu[*]} -cpu cortex-a76 $cross/apps/tinybert ${embed[*]} <$scratch/b32.txt")" |
    tee -a "$out/rss.txt"
  /usr/bin/time -f "rss $model x86 after_load max_rss_kib %M" "$x86/apps/tinybert" "${embed[@]}" \
    a 2>&1 >/dev/null | tail -1 | tee -a "$out/rss.txt"
  /usr/bin/time -f "rss $model x86 peak max_rss_kib %M" "$x86/apps/tinybert" "${embed[@]}" \
    <"$scratch/b32.txt" 2>&1 >/dev/null | tail -1 | tee -a "$out/rss.txt"
done

# Instructions per token, one thread: the 66-token text embedded twice minus once.
cc -O2 -shared -fPIC -o "$scratch/insn.so" bench/edge/qemu_insn_count.c
export OMP_NUM_THREADS=1
count() {  # count EMULATOR... -- ARGS: guest instructions of one run, stdin from $input
  "$@" <"$input" 2>&1 >/dev/null | sed -n 's/^insns //p'
}
for model in bge-small bert-base; do
  for backend in ref f32 int8; do
    for cpu in cortex-a72 cortex-a76 x86-64; do
      if [ $cpu = x86-64 ]; then
        run=(qemu-x86_64 -cpu max -plugin "$scratch/insn.so" "$x86/apps/tinybert")
      else
        run=("${qemu[@]}" -cpu $cpu -plugin "$scratch/insn.so" "$cross/apps/tinybert")
      fi
      run+=(embed --backend $backend --model "$scratch/$model.tbw")
      input=$scratch/one.txt one=$(count "${run[@]}")
      input=$scratch/two.txt two=$(count "${run[@]}")
      echo "insns $model $backend $cpu per_token $(((two - one) / 66))" | tee -a "$out/insns.txt"
    done
  done
done
