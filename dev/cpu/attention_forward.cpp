// The CPU attention kernels side by side, as llm.c's dev/cuda does for its GPU kernels: one
// program, a version number on the command line, every version checked against v1 and timed.
//
//   v1  naive: per sequence and head, the whole L x L score matrix, a softmax, then P V; scalar
//       loops, the definition written out. The reference of the others.
//   v2  blocked: OneDnnBackend's attention (the version that shipped first): per block of query
//       rows two batched oneDNN matmuls over the heads (Q Kᵀ, then P V) with a softmax sweep
//       between them over a block x L score matrix in memory.
//   v3  fused: include/tinybert/backend/flash_attention.hpp, FlashAttention-2's online softmax:
//       per (sequence, head, query block) the keys in blocks of 64, scores only in registers.
//   v4  fused on AMX tiles (bf16 only, CPUs with AMX): the same file; per 16 query rows the
//       whole score rows (tiles cannot be rescaled in place), an exact softmax, P V in tiles.
//
//   attention_forward VERSION [--bf16] [--heads 8] [--head-dim 64] [--threads 2] [--runs 20]
//
// Shapes: batch 1 at 16..512 tokens and 32 packed sequences of 16..128 tokens (bench_cpu's). Per
// shape: the best time of `runs` (after one warm-up), GFLOP/s (4 L² d per head and sequence: two
// matmuls of 2 L² d each; the softmax is not counted), their share of the machine's dot-product
// ceiling for 2 cores from ../shared/docs/PERF.md (f32 FMA 204, bf16 454 GFLOP/s at M=128,
// oneDNN; v4 is measured against the bf16 one too, which AMX may pass), and the largest
// difference from v1. bf16: Q, K, V and P rounded to bf16 as the bf16
// backend does, so about 1e-2 from v1 is expected. Exits 1 when a version strays further from v1
// than a loose bound (CTest runs it so, as a smoke test).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tinybert/backend/flash_attention.hpp"
#include "tinybert/backend/onednn.hpp"

using namespace tinybert;

namespace {

struct Options {
  int version = 3;
  bool bf16 = false;
  int64_t heads = 8, head_dim = 64;
  int threads = 2, runs = 20;
};

// v1: the definition, one (sequence, head) at a time.
void attention_v1(const HostMatrix& qkv, const Batch& batch, int64_t heads, HostMatrix& context) {
  const int64_t hidden = qkv.cols() / 3, d = hidden / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  context.resize(qkv.rows(), hidden);
  std::vector<float> p;
  for (int64_t s = 0; s < batch.num_sequences(); ++s) {
    const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
    p.resize(static_cast<size_t>(len * len));
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < len; ++i) {
        const float* q = qkv.row(begin + i) + h * d;
        float max = -INFINITY;
        for (int64_t j = 0; j < len; ++j) {
          const float* k = qkv.row(begin + j) + hidden + h * d;
          float dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
          p[i * len + j] = dot * scale;
          max = std::max(max, p[i * len + j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < len; ++j) sum += p[i * len + j] = std::exp(p[i * len + j] - max);
        for (int64_t j = 0; j < len; ++j) p[i * len + j] /= sum;
      }
      for (int64_t i = 0; i < len; ++i) {
        float* out = context.row(begin + i) + h * d;
        std::fill(out, out + d, 0.0f);
        for (int64_t j = 0; j < len; ++j) {
          const float* v = qkv.row(begin + j) + 2 * hidden + h * d;
          for (int64_t c = 0; c < d; ++c) out[c] += p[i * len + j] * v[c];
        }
      }
    }
  }
}

struct BenchShape {
  std::string name;
  std::vector<int32_t> lengths;
};

std::vector<BenchShape> shapes() {
  std::vector<BenchShape> all;
  for (const int32_t len : {16, 32, 64, 128, 256, 512})
    all.push_back({"b1 s" + std::to_string(len), {len}});
  BenchShape packed{"b32 packed 16..128", {}};
  for (int i = 0; i < 32; ++i) packed.lengths.push_back(16 + (112 * i) / 31);
  all.push_back(packed);
  return all;
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "attention_forward: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (a == "--bf16")
      o.bf16 = true;
    else if (a == "--heads")
      o.heads = value();
    else if (a == "--head-dim")
      o.head_dim = value();
    else if (a == "--threads")
      o.threads = value();
    else if (a == "--runs")
      o.runs = value();
    else if (a.size() == 1 && a[0] >= '1' && a[0] <= '4')
      o.version = a[0] - '0';
    else {
      std::fprintf(stderr,
                   "usage: attention_forward 1|2|3|4 [--bf16] [--heads 8] [--head-dim 64] "
                   "[--threads 2] [--runs 20]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.version == 4) o.bf16 = true;  // AMX computes in bf16 only
  omp_set_num_threads(o.threads);
  const int64_t hidden = o.heads * o.head_dim;
  const flash::Arithmetic arithmetic = o.version == 4 ? flash::Arithmetic::amx_bf16
                                       : o.bf16       ? flash::Arithmetic::bf16
                                                      : flash::Arithmetic::f32;
  if (o.version >= 3 && !flash::available(o.head_dim, arithmetic)) {
    std::fprintf(stderr, "attention_forward: no v%d kernel for head_dim %lld in %s here\n",
                 o.version, static_cast<long long>(o.head_dim), flash::arithmetic_name(arithmetic));
    return 4;  // CTest: skipped
  }
  const OneDnnBackend v2(o.bf16 ? Precision::bf16 : Precision::f32, 128,
                         OneDnnBackend::AttentionKernel::blocked);
  if (o.bf16 && v2.precision() != Precision::bf16) {
    std::fprintf(stderr, "attention_forward: %s\n", v2.fallback_reason().c_str());
    return 4;
  }
  const double ceiling = o.bf16 ? 454.0 : 204.0;  // PERF.md, 2 cores, M = 128
  std::printf("v%d %s, %lld heads x %lld, %d threads; ceiling %.0f GFLOP/s (PERF.md)\n", o.version,
              o.bf16 ? "bf16" : "f32", static_cast<long long>(o.heads),
              static_cast<long long>(o.head_dim), o.threads, ceiling);
  std::printf("%-20s %10s %10s %8s %12s\n", "shape", "best ms", "GFLOP/s", "ceiling", "max |v-v1|");
  // Outputs are O(1) here; f32 agrees to rounding, bf16 to its 8-bit mantissa (the harness in
  // tests/test_backend_ops.cpp states the bounds per dtype; these are loose smoke-test ones).
  const float tolerance = o.bf16 ? 5e-2f : 1e-5f;
  bool failed = false;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const BenchShape& shape : shapes()) {
    Batch batch;
    double flops = 0;
    for (const int32_t len : shape.lengths) {
      batch.add(std::vector<int32_t>(static_cast<size_t>(len), 1));
      flops += 4.0 * len * len * static_cast<double>(hidden);
    }
    const int64_t tokens = batch.cu_seqlens.back();
    HostMatrix qkv, context, want;
    qkv.resize(tokens, 3 * hidden);
    for (int64_t i = 0; i < tokens * 3 * hidden; ++i) qkv.data()[i] = normal(rng);
    const auto run = [&] {
      switch (o.version) {
        case 1:
          attention_v1(qkv, batch, o.heads, context);
          break;
        case 2:
          v2.attention(qkv, batch, o.heads, context);
          break;
        default:
          context.resize(tokens, hidden);
          flash::attention(qkv.data(), batch, o.heads, hidden, context.data(), arithmetic);
      }
    };
    run();  // warm-up: primitives, scratch
    double best = 1e30;
    for (int r = 0; r < (o.version == 1 ? 2 : o.runs); ++r) {
      const double t0 = seconds_now();
      run();
      best = std::min(best, seconds_now() - t0);
    }
    attention_v1(qkv, batch, o.heads, want);
    float worst = 0;
    for (int64_t i = 0; i < tokens * hidden; ++i)
      worst = std::max(worst, std::abs(context.data()[i] - want.data()[i]));
    const double gflops = flops / best / 1e9;
    std::printf("%-20s %10.3f %10.1f %7.1f%% %12.2e\n", shape.name.c_str(), best * 1e3, gflops,
                100.0 * gflops / ceiling, worst);
    if (!(worst <= tolerance)) {
      std::fprintf(stderr, "attention_forward: v%d differs from v1 by %g (tolerance %g)\n",
                   o.version, worst, tolerance);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}
