// One op-parity harness for every backend and dtype (issue 11, after llama.cpp's
// test-backend-ops): each op of the backend interface runs on the same random inputs in every
// backend of this build and in its reference, and max-abs error and normalised MSE are checked
// against bounds declared once per (backend, dtype) below. CpuRefBackend is held to a float64
// implementation written out in this file; every other backend to CpuRefBackend. Packed batches
// of variable length (1, 7, 129, 512 and mixed) and several head counts, as FlashAttention's
// varlen tests do. Outputs start poisoned (NaN), so an element an op forgets to write fails.
// TINYBERT_OPS_VERBOSE=1 prints every measured error and the worst case per backend and op;
// TINYBERT_OPS_BACKEND=NAME runs only the backends whose name contains NAME (e.g. "onednn int8").
#include <Eigen/Core>
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/backend/host_matrix.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/model.hpp"
#include "tinybert/quantize.hpp"
#include "tinybert/weights_f32.hpp"
#if __has_include("tinybert/backend/backend.hpp")
#include "tinybert/backend/backend.hpp"
#define TINYBERT_HAVE_BACKEND_CONCEPT 1
#endif
#ifdef TINYBERT_HAVE_ONEDNN
#include "tinybert/backend/onednn.hpp"
#endif
#ifdef TINYBERT_HAVE_CUDA
#include "tinybert/backend/cuda.hpp"
#endif

using namespace tinybert;

namespace {

// ============================== 1. Error bounds ================================================
// Every op's result is compared with its reference's result on the same inputs:
//   max-abs = max |got - want|, which may be at most bound.max_abs * max(1, max |want|): the
//             outputs here are O(1) (LayerNorm outputs reach about 5, probabilities at most 1),
//             so this is an absolute bound for small values and a relative one for large;
//   nMSE    = sum (got - want)^2 / sum want^2, at most bound.nmse.
// A low-precision backend passes when its error is at most about twice what a straightforward
// implementation in the same precision makes (STYLE.md section 6). The "straightforward" entries
// of section 4 measure that error on every build, GPU or not: the fp32 reference run on inputs
// held at the lower precision, its weights rounded and its results rounded to it. The CUDA bounds
// are about twice their worst case, and those entries are held to them, so a CPU-only build
// checks that the CUDA bounds are neither below what the precision costs nor far above it.
// The fp32 bounds are about 4x the worst case measured (Release, AVX-512, AVX2 and
// ONEDNN_MAX_CPU_ISA=AVX512_CORE), since another CPU or compiler may sum in another order.
// Unit roundoff u (half an ulp, relative): f32 2^-24 = 6e-8, f16 2^-11 = 4.9e-4, bf16 2^-8 =
// 3.9e-3. Rounding a result alone costs max-abs u |y| and nMSE about u^2 / 4.
// TINYBERT_OPS_VERBOSE=1 prints the worst case of each backend and op next to its bound.

struct Bound {
  double max_abs;  // in units of max(1, max |want|)
  double nmse;
};

struct Bounds {
  Bound embed;         // gather of 3-4 table rows, add, LayerNorm
  Bound linear;        // GEMM + bias + activation, 16 outputs or more
  Bound small_linear;  // fewer than 16 outputs (classifiers, UIE start/end): fp32 everywhere
  Bound layernorm;     // layernorm and add_layernorm
  Bound attention;     // the context rows
  Bound probs;         // the attention probabilities (fill-mask attribution)
  Bound pool;          // CLS (a copy) and mean pooling
  Bound gather;        // gather_rows: a copy, exact in every backend
};

// CpuRefBackend against float64: fp32 results, float GEMM sums over up to K = 3072 terms (Eigen
// blocks them, so the error grows like sqrt(K) u, not K u), LayerNorm statistics in double.
// Measured worst: embed 1.4e-7 / 3.3e-15, linear 1.0e-6 / 2.3e-13, layernorm 1.1e-7 / 2.1e-15,
// attention 1.0e-6 / 2.2e-13, probabilities 2.8e-7 / 8.2e-14, mean pooling 1.1e-7 / 1.9e-13.
constexpr Bounds kRefF32 = {
    .embed = {6e-7, 2e-14},
    .linear = {4e-6, 1e-12},
    .small_linear = {4e-6, 1e-12},
    .layernorm = {5e-7, 1e-14},
    .attention = {3e-6, 1e-12},
    .probs = {1e-6, 4e-13},
    .pool = {5e-7, 1e-12},
    .gather = {0, 0},
};

// oneDNN f32 against CpuRefBackend: the same fp32 arithmetic in another order (oneDNN's GEMM
// blocking, LayerNorm statistics in float, Eigen's vectorised exp). Measured worst: embed
// 2.3e-7 / 1.9e-14, linear 1.1e-6 / 3.1e-13 (small 9.5e-7 / 1.2e-12), layernorm 2.0e-7 / 1.5e-14,
// attention 7.0e-7 / 3.2e-13, probabilities 2.1e-7 / 4.2e-14; pooling is CpuRefBackend's code.
constexpr Bounds kOneDnnF32 = {
    .embed = {1e-6, 1e-13},
    .linear = {5e-6, 2e-12},
    .small_linear = {5e-6, 5e-12},
    .layernorm = {1e-6, 1e-13},
    .attention = {3e-6, 2e-12},
    .probs = {1e-6, 2e-13},
    .pool = {5e-7, 1e-13},
    .gather = {0, 0},
};

// oneDNN bf16: the linears round their input and weights to bf16 (8 significant bits) and sum in
// fp32, with fp32 results: each product off by two roundings, nMSE about 2 u^2 / 4 = 7e-6, as
// a straightforward bf16 GEMM. Attention rounds Q, K, V and the probabilities to bf16. Measured
// worst: linear 1.1e-2 / 5.5e-6, attention 5.7e-3 / 1.4e-5, probabilities 2.4e-3 / 6.8e-6.
// Bounds about twice that; everything else runs in fp32 (kOneDnnF32).
constexpr Bounds kOneDnnBf16 = {
    .embed = kOneDnnF32.embed,
    .linear = {2.5e-2, 1.2e-5},
    .small_linear = kOneDnnF32.small_linear,
    .layernorm = kOneDnnF32.layernorm,
    .attention = {1.2e-2, 3e-5},
    .probs = {5e-3, 1.4e-5},
    .pool = kOneDnnF32.pool,
    .gather = {0, 0},
};

// oneDNN int8: per-token int8 inputs and per-channel int8 weights, 127 levels each (a step of
// max|row| / 127, about 1 % of a typical element), int32 sums. Measured worst 3.9e-2 / 1.2e-4,
// the same as the straightforward int8 entry's 3.8e-2 / 1.2e-4; bounds twice that. The rest fp32.
constexpr Bounds kOneDnnInt8 = {
    .embed = kOneDnnF32.embed,
    .linear = {8e-2, 2.5e-4},
    .small_linear = kOneDnnF32.small_linear,
    .layernorm = kOneDnnF32.layernorm,
    .attention = kOneDnnF32.attention,
    .probs = kOneDnnF32.probs,
    .pool = kOneDnnF32.pool,
    .gather = {0, 0},
};

// oneDNN int8 on a CPU with AMX: attention runs in bf16 on AMX tiles (OneDnnBackend's automatic
// kernel), so its bounds are kOneDnnBf16's; the probabilities (attribution) stay f32.
constexpr Bounds kOneDnnInt8AmxAttention = {
    .embed = kOneDnnF32.embed,
    .linear = kOneDnnInt8.linear,
    .small_linear = kOneDnnF32.small_linear,
    .layernorm = kOneDnnF32.layernorm,
    .attention = kOneDnnBf16.attention,
    .probs = kOneDnnF32.probs,
    .pool = kOneDnnF32.pool,
    .gather = {0, 0},
};

// oneDNN int8 without VNNI: the weights get 63 levels (OneDnnBackend::int8_weight_levels()), a
// step twice as large. Measured worst (ONEDNN_MAX_CPU_ISA=AVX512_CORE) 5.8e-2 / 3.0e-4.
constexpr Bounds kOneDnnInt8NoVnni = {
    .embed = kOneDnnF32.embed,
    .linear = {1.2e-1, 6e-4},
    .small_linear = kOneDnnF32.small_linear,
    .layernorm = kOneDnnF32.layernorm,
    .attention = kOneDnnF32.attention,
    .probs = kOneDnnF32.probs,
    .pool = kOneDnnF32.pool,
    .gather = {0, 0},
};

// CUDA f16: activations held in f16 between ops (10 explicit mantissa bits), f16 weights and
// tables, fp32 sums inside the kernels, results rounded to f16. About twice the straightforward
// f16 entry's worst case: embed 6.3e-4 / 9.6e-8, linear 1.1e-3 / 9.9e-8, layernorm 4.1e-4 /
// 4.8e-8, attention 3.3e-4 / 4.6e-8, mean pooling 1.4e-4 / 4.4e-8. Attention gets three times:
// the tensor-core kernel also rounds the probabilities to 16 bits before P V, one more rounding
// of the result's size. The fp32 parts (small linears, probabilities: fp32 from the f16 qkv both
// sides see) get 10x the CPU's fp32 bounds for the GPU's fast exp and other summation orders.
// Never run on a GPU yet (docs/cuda.md): these are the targets the kernels must meet.
constexpr Bounds kCudaF16 = {
    .embed = {1.5e-3, 2e-7},
    .linear = {2.5e-3, 2e-7},
    .small_linear = {5e-5, 5e-11},
    .layernorm = {1e-3, 1e-7},
    .attention = {1.2e-3, 1.4e-7},
    .probs = {1e-5, 2e-12},
    .pool = {4e-4, 1e-7},
    .gather = {0, 0},
};

// CUDA bf16: as f16 with 7 explicit mantissa bits instead of 10 (u 8x larger, nMSE 64x). The
// straightforward bf16 entry's worst: embed 5.3e-3 / 6.0e-6, linear 8.1e-3 / 6.4e-6, layernorm
// 3.3e-3 / 3.1e-6, attention 2.3e-3 / 3.0e-6, mean pooling 1.1e-3 / 3.0e-6.
constexpr Bounds kCudaBf16 = {
    .embed = {1.2e-2, 1.2e-5},
    .linear = {1.6e-2, 1.3e-5},
    .small_linear = kCudaF16.small_linear,
    .layernorm = {8e-3, 6e-6},
    .attention = {1e-2, 9e-6},
    .probs = kCudaF16.probs,
    .pool = {2.5e-3, 6e-6},
    .gather = {0, 0},
};

// CUDA int8: the linears as oneDNN int8 with VNNI (127 levels each side) and an f16 result: the
// straightforward int8 entry's worst is 3.8e-2 / 1.2e-4. The rest is f16.
constexpr Bounds kCudaInt8 = {
    .embed = kCudaF16.embed,
    .linear = {8e-2, 2.5e-4},
    .small_linear = kCudaF16.small_linear,
    .layernorm = kCudaF16.layernorm,
    .attention = kCudaF16.attention,
    .probs = kCudaF16.probs,
    .pool = kCudaF16.pool,
    .gather = {0, 0},
};

// cuBLASLt's fused bias+GELU epilogue is the tanh approximation of GELU: at most 4.8e-4 from the
// exact erf form, nMSE 4e-8 on N(0, 1.2^2) inputs. Added to the linear bound of the entries that
// use it (CudaOptions::exact_gelu = false).
constexpr Bound kTanhGeluAllowance = {5e-4, 1e-7};

// ============================== 2. Inputs and results ==========================================

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Every backend keeps linears with fewer outputs than this in fp32 (classifiers, UIE start/end).
constexpr int64_t kSmallLinearOutputs = 16;

// The type a backend holds activations in between ops. Inputs are rounded to it before the
// backend and its reference see them, so that both start from the same values and what is
// measured is the op's own error (weights are given as stored: converting them is the op's).
enum class Held { f32, f16, bf16 };

float held_value(Held held, float x) {
  switch (held) {
    case Held::f32:
      return x;
    case Held::f16:
      return f16_to_f32(f32_to_f16(x));
    case Held::bf16:
      return bf16_to_f32(f32_to_bf16(x));
  }
  return x;
}

HostMatrix as_held(const HostMatrix& m, Held held) {
  HostMatrix out;
  out.resize(m.rows(), m.cols());
  for (int64_t i = 0; i < m.rows() * m.cols(); ++i) out.data()[i] = held_value(held, m.data()[i]);
  return out;
}

std::vector<float> random_normal(int64_t n, std::mt19937& rng, float stddev = 1.0f,
                                 float mean = 0.0f) {
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> values(static_cast<size_t>(n));
  for (float& x : values) x = normal(rng);
  return values;
}

HostMatrix random_matrix(int64_t rows, int64_t cols, std::mt19937& rng, float stddev = 1.0f,
                         float mean = 0.0f) {
  HostMatrix m;
  m.resize(rows, cols);
  const std::vector<float> values = random_normal(rows * cols, rng, stddev, mean);
  std::copy(values.begin(), values.end(), m.data());
  return m;
}

// Random token, type and task ids in sequences of these lengths, packed; position ids from
// position_offsets[s] (default 0) in sequence s.
Batch random_batch(const std::vector<int64_t>& lengths, int32_t vocab, int32_t types, int32_t tasks,
                   std::mt19937& rng, const std::vector<int32_t>& position_offsets = {}) {
  Batch batch;
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int64_t length = lengths[s];
    std::vector<int32_t> ids(static_cast<size_t>(length)), type_ids(ids.size()),
        task_ids(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
      type_ids[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(types));
      task_ids[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(tasks));
    }
    batch.add(ids, type_ids, task_ids, position_offsets.empty() ? 0 : position_offsets[s]);
  }
  return batch;
}

// A weight as a .tbw file may store it: f32, f16, bf16, or i8 with one scale per row. Owns its
// bytes; `weight` views them. Movable (vectors move their buffers, so the view stays valid), not
// copyable (a copy's view would point at the original's bytes).
struct StoredWeight {
  StoredWeight() = default;
  StoredWeight(StoredWeight&&) = default;
  StoredWeight(const StoredWeight&) = delete;

  std::vector<uint8_t> bytes;
  std::vector<float> row_scales;
  Weight weight;
};

StoredWeight store(const std::vector<float>& values, Shape shape, DType dtype) {
  StoredWeight s;
  const int64_t rows = shape.at(0), cols = static_cast<int64_t>(values.size()) / rows;
  switch (dtype) {
    case DType::f32:
      s.bytes.resize(values.size() * 4);
      std::memcpy(s.bytes.data(), values.data(), s.bytes.size());
      break;
    case DType::f16:
    case DType::bf16:
      s.bytes.resize(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t bits = dtype == DType::f16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
        std::memcpy(s.bytes.data() + 2 * i, &bits, 2);  // little-endian, as .tbw stores it
      }
      break;
    case DType::i8:
      s.bytes.resize(values.size());
      s.row_scales.resize(static_cast<size_t>(rows));
      quantize_rows_symmetric(values.data(), rows, cols, reinterpret_cast<int8_t*>(s.bytes.data()),
                              s.row_scales.data(), 127);
      break;
    case DType::u8:
      throw Error("u8 weights");
  }
  s.weight = Weight{TensorView{dtype, std::move(shape), s.bytes.data()},
                    dtype == DType::i8 ? s.row_scales.data() : nullptr};
  return s;
}

// A result brought back to the host, widened to double (the float64 reference computes in it).
struct Result {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;
};

Result widened(const std::vector<float>& values, int64_t rows, int64_t cols) {
  return {rows, cols, std::vector<double>(values.begin(), values.end())};
}

// How many attention probabilities a batch has: heads x len x len per sequence.
int64_t probability_count(const Batch& batch, int64_t num_heads) {
  int64_t count = 0;
  for (int64_t s = 0; s < batch.num_sequences(); ++s)
    count += num_heads * batch.seq_len(s) * batch.seq_len(s);
  return count;
}

// ============================== 3. Runners: every backend behind one interface ================
// The harness calls each op with host inputs and gets host results, whatever memory the backend
// uses. BackendRunner<B> adapts any backend; the float64 reference and the straightforward
// low-precision implementations are runners too.

// A linear layer prepared once (weights converted, packed or uploaded), run on many inputs.
using LinearOp = std::function<Result(const HostMatrix& in, Activation act)>;

class OpRunner {
 public:
  virtual ~OpRunner() = default;
  virtual Result embed(const EmbeddingWeights& weights, float eps, const Batch& batch) = 0;
  virtual LinearOp prepare_linear(const LinearWeights& weights) = 0;
  virtual Result add_layernorm(const NormWeights& weights, float eps, const HostMatrix& residual,
                               const HostMatrix& x) = 0;
  virtual Result layernorm(const NormWeights& weights, float eps, const HostMatrix& x) = 0;
  // probs, when given, receives the probabilities as one row in CpuRefBackend's layout.
  virtual Result attention(const HostMatrix& qkv, const Batch& batch, int64_t num_heads,
                           Result* probs) = 0;
  virtual Result pool(const HostMatrix& hidden, const Batch& batch, Pooling pooling) = 0;
  virtual Result gather_rows(const HostMatrix& in, std::span<const int64_t> rows) = 0;
};

template <class B>
class BackendRunner final : public OpRunner {
#ifdef TINYBERT_HAVE_BACKEND_CONCEPT
  static_assert(tinybert::Backend<B>, "see include/tinybert/backend/backend.hpp");
#endif

 public:
  using Matrix = typename B::Matrix;
  static constexpr bool kOnHost = std::is_same_v<Matrix, HostMatrix>;

  template <class... Args>
  explicit BackendRunner(Args&&... args) : backend_(std::forward<Args>(args)...) {}
  B& backend() { return backend_; }

  Result embed(const EmbeddingWeights& weights, float eps, const Batch& batch) override {
    const auto embeddings = backend_.prepare(weights, eps);
    Matrix out = poisoned(batch.num_tokens(), weights.word.cols());
    backend_.embed(embeddings, batch, out);
    return download(out);
  }

  LinearOp prepare_linear(const LinearWeights& weights) override {
    // shared: a std::function must be copyable, and some backends' Linear is move-only
    auto linear = std::make_shared<const typename B::Linear>(backend_.prepare(weights));
    const int64_t out_features = weights.weight.rows();
    return [this, linear, out_features](const HostMatrix& in, Activation act) {
      const Matrix input = upload(in);
      Matrix out = poisoned(in.rows(), out_features);
      backend_.linear(*linear, input, out, act);
      return download(out);
    };
  }

  Result add_layernorm(const NormWeights& weights, float eps, const HostMatrix& residual,
                       const HostMatrix& x) override {
    const auto norm = backend_.prepare(weights, eps);
    const Matrix residual_in = upload(residual);
    Matrix out = upload(x);  // in place: nothing to poison
    backend_.add_layernorm(norm, residual_in, out);
    return download(out);
  }

  Result layernorm(const NormWeights& weights, float eps, const HostMatrix& x) override {
    const auto norm = backend_.prepare(weights, eps);
    Matrix out = upload(x);
    backend_.layernorm(norm, out);
    return download(out);
  }

  Result attention(const HostMatrix& qkv, const Batch& batch, int64_t num_heads,
                   Result* probs) override {
    const Matrix input = upload(qkv);
    Matrix context = poisoned(qkv.rows(), qkv.cols() / 3);
    // Poisoned too; a backend that clears the vector first starts from zeros instead, which fail
    // as well (every row of probabilities sums to 1).
    std::vector<float> probabilities;
    if (probs) probabilities.assign(static_cast<size_t>(probability_count(batch, num_heads)), kNaN);
    backend_.attention(input, batch, num_heads, context, probs ? &probabilities : nullptr);
    if (probs) *probs = widened(probabilities, 1, static_cast<int64_t>(probabilities.size()));
    return download(context);
  }

  Result pool(const HostMatrix& hidden, const Batch& batch, Pooling pooling) override {
    const Matrix input = upload(hidden);
    Matrix out = poisoned(batch.num_sequences(), hidden.cols());
    backend_.pool(input, batch, pooling, out);
    return download(out);
  }

  Result gather_rows(const HostMatrix& in, std::span<const int64_t> rows) override {
    const Matrix input = upload(in);
    Matrix out = poisoned(static_cast<int64_t>(rows.size()), in.cols());
    backend_.gather_rows(input, rows, out);
    return download(out);
  }

 private:
  Matrix upload(const HostMatrix& values) {
    if constexpr (kOnHost) {
      return values;
    } else {
      Matrix m;
      backend_.from_host(std::span<const float>(values.data(), values.rows() * values.cols()),
                         values.rows(), values.cols(), m);
      return m;
    }
  }

  // An output matrix of the shape the op will give it, every element NaN: the op's resize keeps
  // the storage, so an element it does not write stays NaN.
  Matrix poisoned(int64_t rows, int64_t cols) {
    Matrix m;
    if constexpr (kOnHost) {
      m.resize(rows, cols);
      std::fill_n(m.data(), rows * cols, kNaN);
    } else {
      backend_.reserve(m, rows, cols);  // allocated poisoned (CudaOptions::poison_allocations)
      backend_.poison(m);               // and poisoned again, should that be off
    }
    return m;
  }

  Result download(const Matrix& m) { return widened(backend_.to_host(m), m.rows(), m.cols()); }

  B backend_;
};

double activate(Activation act, double z) {
  switch (act) {
    case Activation::none:
      return z;
    case Activation::gelu:  // exact erf GELU, as BERT defines it
      return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
    case Activation::tanh:
      return std::tanh(z);
    case Activation::sigmoid:
      return 1.0 / (1.0 + std::exp(-z));
  }
  return z;
}

// LayerNorm of each row in place, in double.
void normalize_rows(Result& x, const std::vector<float>& gamma, const std::vector<float>& beta,
                    float eps) {
  for (int64_t r = 0; r < x.rows; ++r) {
    double* v = x.values.data() + r * x.cols;
    double mean = 0, variance = 0;
    for (int64_t c = 0; c < x.cols; ++c) mean += v[c];
    mean /= static_cast<double>(x.cols);
    for (int64_t c = 0; c < x.cols; ++c) variance += (v[c] - mean) * (v[c] - mean);
    variance /= static_cast<double>(x.cols);
    const double inv_std = 1.0 / std::sqrt(variance + eps);
    for (int64_t c = 0; c < x.cols; ++c) v[c] = (v[c] - mean) * inv_std * gamma[c] + beta[c];
  }
}

// Every op written out in double, as plainly as it can be: the spec that CpuRefBackend, the spec
// of the other backends, is itself measured against.
class Float64Reference final : public OpRunner {
 public:
  Result embed(const EmbeddingWeights& weights, float eps, const Batch& batch) override {
    const std::vector<float> word = dequantize(weights.word),
                             position = dequantize(weights.position),
                             token_type = dequantize(weights.token_type),
                             task_type = weights.task_type ? dequantize(*weights.task_type)
                                                           : std::vector<float>{};
    const int64_t hidden = weights.word.cols();
    Result out{batch.num_tokens(), hidden,
               std::vector<double>(static_cast<size_t>(batch.num_tokens() * hidden))};
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      for (int64_t pos = 0; pos < batch.seq_len(s); ++pos) {
        const int64_t t = batch.seq_begin(s) + pos;
        for (int64_t c = 0; c < hidden; ++c) {
          double sum = double{word[batch.input_ids[t] * hidden + c]} +
                       position[batch.position(s, pos) * hidden + c] +
                       token_type[batch.token_type_ids[t] * hidden + c];
          if (weights.task_type) sum += task_type[batch.task_type_ids[t] * hidden + c];
          out.values[t * hidden + c] = sum;
        }
      }
    }
    normalize_rows(out, dequantize(weights.norm.gamma), dequantize(weights.norm.beta), eps);
    return out;
  }

  LinearOp prepare_linear(const LinearWeights& weights) override {
    struct Prepared {
      std::vector<float> weight_t, bias;  // the weight transposed: [in, out]
      int64_t in = 0, out = 0;
      // The harness asks for every activation of one input in a row: the sums are kept.
      std::vector<float> last_input;
      std::vector<double> last_sums;
    };
    auto p = std::make_shared<Prepared>();
    p->in = weights.weight.cols();
    p->out = weights.weight.rows();
    const std::vector<float> weight = dequantize(weights.weight);
    p->weight_t.resize(weight.size());
    for (int64_t o = 0; o < p->out; ++o)
      for (int64_t k = 0; k < p->in; ++k) p->weight_t[k * p->out + o] = weight[o * p->in + k];
    p->bias = dequantize(weights.bias);
    return [p](const HostMatrix& x, Activation act) {
      const size_t n = static_cast<size_t>(x.rows() * x.cols());
      if (p->last_input.size() != n || !std::equal(x.data(), x.data() + n, p->last_input.begin())) {
        p->last_input.assign(x.data(), x.data() + n);
        p->last_sums.resize(static_cast<size_t>(x.rows() * p->out));
        // sums[o] = bias[o] + x[0] w[0][o] + x[1] w[1][o] + ..., in that order; the loop over
        // the outputs innermost, where it vectorises (a sum over k would not, in order)
        for (int64_t r = 0; r < x.rows(); ++r) {
          double* sums = p->last_sums.data() + r * p->out;
          std::copy(p->bias.begin(), p->bias.end(), sums);
          for (int64_t k = 0; k < p->in; ++k) {
            const double x_k = x.row(r)[k];
            const float* w_k = p->weight_t.data() + k * p->out;
            for (int64_t o = 0; o < p->out; ++o) sums[o] += x_k * w_k[o];
          }
        }
      }
      Result out{x.rows(), p->out, p->last_sums};
      for (double& v : out.values) v = activate(act, v);
      return out;
    };
  }

  Result add_layernorm(const NormWeights& weights, float eps, const HostMatrix& residual,
                       const HostMatrix& x) override {
    Result out{x.rows(), x.cols(), std::vector<double>(static_cast<size_t>(x.rows() * x.cols()))};
    for (size_t i = 0; i < out.values.size(); ++i)
      out.values[i] = double{x.data()[i]} + residual.data()[i];
    normalize_rows(out, dequantize(weights.gamma), dequantize(weights.beta), eps);
    return out;
  }

  Result layernorm(const NormWeights& weights, float eps, const HostMatrix& x) override {
    Result out{x.rows(), x.cols(), std::vector<double>(x.data(), x.data() + x.rows() * x.cols())};
    normalize_rows(out, dequantize(weights.gamma), dequantize(weights.beta), eps);
    return out;
  }

  Result attention(const HostMatrix& qkv, const Batch& batch, int64_t num_heads,
                   Result* probs) override {
    const int64_t hidden = qkv.cols() / 3, head_dim = hidden / num_heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    Result context{qkv.rows(), hidden,
                   std::vector<double>(static_cast<size_t>(qkv.rows() * hidden))};
    if (probs) *probs = Result{1, probability_count(batch, num_heads), {}};
    std::vector<double> p, out(static_cast<size_t>(head_dim));
    // loops in the order of the probabilities' layout: sequence, head, query, key
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      for (int64_t h = 0; h < num_heads; ++h) {
        const auto q = [&](int64_t i) { return qkv.row(begin + i) + h * head_dim; };
        const auto k = [&](int64_t j) { return qkv.row(begin + j) + hidden + h * head_dim; };
        const auto v = [&](int64_t j) { return qkv.row(begin + j) + 2 * hidden + h * head_dim; };
        for (int64_t i = 0; i < len; ++i) {
          p.assign(static_cast<size_t>(len), 0.0);
          double max_score = -std::numeric_limits<double>::infinity(), sum = 0;
          const float* q_i = q(i);
          for (int64_t j = 0; j < len; ++j) {
            const float* k_j = k(j);
            for (int64_t d = 0; d < head_dim; ++d) p[j] += double{q_i[d]} * k_j[d];
            p[j] *= scale;
            max_score = std::max(max_score, p[j]);
          }
          for (double& x : p) {
            x = std::exp(x - max_score);
            sum += x;
          }
          for (double& x : p) x /= sum;
          std::fill(out.begin(), out.end(), 0.0);
          for (int64_t j = 0; j < len; ++j) {
            const float* v_j = v(j);
            for (int64_t d = 0; d < head_dim; ++d) out[d] += p[j] * v_j[d];
          }
          std::copy(out.begin(), out.end(),
                    context.values.begin() + (begin + i) * hidden + h * head_dim);
          if (probs) probs->values.insert(probs->values.end(), p.begin(), p.end());
        }
      }
    }
    return context;
  }

  Result pool(const HostMatrix& hidden, const Batch& batch, Pooling pooling) override {
    const int64_t width = hidden.cols();
    Result out{batch.num_sequences(), width,
               std::vector<double>(static_cast<size_t>(batch.num_sequences() * width))};
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      const int64_t count = pooling == Pooling::cls ? 1 : batch.seq_len(s);
      for (int64_t t = 0; t < count; ++t)
        for (int64_t c = 0; c < width; ++c)
          out.values[s * width + c] += hidden.row(batch.seq_begin(s) + t)[c];
      for (int64_t c = 0; c < width; ++c) out.values[s * width + c] /= static_cast<double>(count);
    }
    return out;
  }

  Result gather_rows(const HostMatrix& in, std::span<const int64_t> rows) override {
    Result out{static_cast<int64_t>(rows.size()), in.cols(), {}};
    for (const int64_t r : rows) out.values.insert(out.values.end(), in.row(r), in.row(r + 1));
    return out;
  }
};

// A straightforward implementation at a lower precision, emulated: the fp32 reference on inputs
// held at that precision (the harness rounds them), weights and tables rounded to it as a 16-bit
// backend stores them, every result rounded to it. With int8, a linear's input is quantised per
// token and its weights per output channel (127 levels) as CUDA's int8 mode does (for shapes
// whose sides are multiples of 4; others run in 16 bits there too). Linears with fewer than 16
// outputs stay fp32 as in every backend, attention probabilities fp32 as CUDA returns them.
// What it measures is what the precision itself costs: section 1's yardstick.
class Straightforward final : public OpRunner {
 public:
  Straightforward(Held element, bool int8_linears)
      : element_(element), int8_linears_(int8_linears) {}

  Result embed(const EmbeddingWeights& weights, float eps, const Batch& batch) override {
    const Rounded word(weights.word, element_), position(weights.position, element_),
        token_type(weights.token_type, element_);
    std::optional<Rounded> task_type;
    if (weights.task_type) task_type.emplace(*weights.task_type, element_);
    const EmbeddingWeights rounded{word.weight, position.weight, token_type.weight,
                                   task_type ? std::optional(task_type->weight) : std::nullopt,
                                   weights.norm};
    return held(reference_.embed(rounded, eps, batch));
  }

  LinearOp prepare_linear(const LinearWeights& weights) override {
    const int64_t out = weights.weight.rows(), in = weights.weight.cols();
    if (out < kSmallLinearOutputs) return reference_.prepare_linear(weights);
    const bool int8 = int8_linears_ && in % 4 == 0 && out % 4 == 0;
    std::vector<float> weight = dequantize(weights.weight), bias = dequantize(weights.bias);
    if (int8) {
      weight = fake_quantized(weight, out, in);  // the bias stays fp32 in the int8 epilogue
    } else {
      for (float& w : weight) w = held_value(element_, w);
      for (float& b : bias) b = held_value(element_, b);
    }
    // CpuRefBackend copies the weights when it prepares them: these vectors may go
    const LinearOp op = reference_.prepare_linear(
        {Weight{TensorView{DType::f32, {out, in}, weight.data()}, nullptr},
         Weight{TensorView{DType::f32, {out}, bias.data()}, nullptr}});
    return [this, op, int8](const HostMatrix& x, Activation act) {
      if (!int8) return held(op(x, act));
      HostMatrix quantized;
      quantized.resize(x.rows(), x.cols());
      const std::vector<float> q = fake_quantized(
          std::vector<float>(x.data(), x.data() + x.rows() * x.cols()), x.rows(), x.cols());
      std::copy(q.begin(), q.end(), quantized.data());
      return held(op(quantized, act));
    };
  }

  Result add_layernorm(const NormWeights& weights, float eps, const HostMatrix& residual,
                       const HostMatrix& x) override {
    return held(reference_.add_layernorm(weights, eps, residual, x));
  }
  Result layernorm(const NormWeights& weights, float eps, const HostMatrix& x) override {
    return held(reference_.layernorm(weights, eps, x));
  }
  Result attention(const HostMatrix& qkv, const Batch& batch, int64_t num_heads,
                   Result* probs) override {
    return held(reference_.attention(qkv, batch, num_heads, probs));
  }
  Result pool(const HostMatrix& hidden, const Batch& batch, Pooling pooling) override {
    return held(reference_.pool(hidden, batch, pooling));
  }
  Result gather_rows(const HostMatrix& in, std::span<const int64_t> rows) override {
    return reference_.gather_rows(in, rows);
  }

 private:
  // A table's values rounded to `element`, as an f32 weight.
  struct Rounded {
    std::vector<float> values;
    Weight weight;
    Rounded(const Weight& stored, Held element) : values(dequantize(stored)) {
      for (float& v : values) v = held_value(element, v);
      weight = Weight{TensorView{DType::f32, stored.values.shape, values.data()}, nullptr};
    }
    Rounded(const Rounded&) = delete;  // the view would point at the original's values
  };

  // Rows quantised to int8 (symmetric, 127 levels) and back: the values an int8 GEMM multiplies.
  static std::vector<float> fake_quantized(const std::vector<float>& values, int64_t rows,
                                           int64_t cols) {
    std::vector<int8_t> q(values.size());
    std::vector<float> scales(static_cast<size_t>(rows)), out(values.size());
    quantize_rows_symmetric(values.data(), rows, cols, q.data(), scales.data(), 127);
    for (size_t i = 0; i < values.size(); ++i)
      out[i] = static_cast<float>(q[i]) * scales[i / static_cast<size_t>(cols)];
    return out;
  }

  Result held(Result r) const {
    for (double& v : r.values) v = held_value(element_, static_cast<float>(v));
    return r;
  }

  Held element_;
  bool int8_linears_;
  BackendRunner<CpuRefBackend> reference_;
};

// ============================== 4. The backends under test =====================================
// One entry per backend, dtype and kernel version. A new backend, or a numbered kernel version
// beside the one that ships ("attention v2"), is one more entry in cpu_backends() or
// cuda_backends(): every op and shape below then runs on it.

enum class Reference { float64, cpu_ref };

struct Entry {
  std::string backend;   // "ref", "onednn", "cuda attention=simple", ...
  std::string dtype;     // "f32", "bf16", "int8", ...
  Held held;             // how it holds activations between ops (see Held)
  Reference reference;   // what it is compared with
  const Bounds* bounds;  // section 1
  std::unique_ptr<OpRunner> runner;
  bool tanh_gelu = false;               // its GELU is the tanh approximation (kTanhGeluAllowance)
  std::vector<int64_t> head_dims = {};  // attention only for these head_dim values (empty: any)
  std::string name() const { return backend + " " + dtype; }
};

std::vector<Entry> cpu_backends() {
  std::vector<Entry> entries;
  entries.push_back({.backend = "ref",
                     .dtype = "f32",
                     .held = Held::f32,
                     .reference = Reference::float64,
                     .bounds = &kRefF32,
                     .runner = std::make_unique<BackendRunner<CpuRefBackend>>()});
#ifdef TINYBERT_HAVE_ONEDNN
  // Each precision with the attention kernel it picks by itself ("onednn"), then with the ones
  // it does not pick (v2, v3 and v4 of dev/cpu/attention_forward.cpp): f32 fused; bf16 blocked
  // and fused with vdpbf16ps (AMX where the CPU has it is the default); int8 blocked (f32
  // attention; AMX bf16 where the CPU has it is the default).
  using Kernel = OneDnnBackend::AttentionKernel;
  const auto bounds_of = [](const OneDnnBackend& backend) {
    if (backend.precision() == Precision::bf16) return &kOneDnnBf16;
    if (backend.precision() == Precision::f32) return &kOneDnnF32;
    if (backend.int8_weight_levels() != 127) return &kOneDnnInt8NoVnni;
    return backend.fused_attention(64) == flash::Arithmetic::amx_bf16 ? &kOneDnnInt8AmxAttention
                                                                      : &kOneDnnInt8;
  };
  const std::pair<Precision, Kernel> variants[] = {
      {Precision::f32, Kernel::automatic},  {Precision::bf16, Kernel::automatic},
      {Precision::int8, Kernel::automatic}, {Precision::f32, Kernel::fused},
      {Precision::bf16, Kernel::blocked},   {Precision::bf16, Kernel::fused},
      {Precision::int8, Kernel::blocked}};
  for (const auto& [asked, kernel] : variants) {
    auto runner = std::make_unique<BackendRunner<OneDnnBackend>>(asked, 128, kernel);
    const OneDnnBackend& backend = runner->backend();
    std::string dtype = precision_name(asked);
    if (backend.precision() != asked) {           // e.g. no bf16 on an AVX2 CPU: held to what runs
      if (kernel != Kernel::automatic) continue;  // reported once
      WARN("oneDNN " << dtype << ": " << backend.fallback_reason());
      dtype += std::string(" (fell back to ") + precision_name(backend.precision()) + ")";
    }
    entries.push_back({.backend = kernel == Kernel::automatic ? "onednn"
                                  : kernel == Kernel::fused   ? "onednn attention=fused"
                                                              : "onednn attention=blocked",
                       .dtype = dtype,
                       .held = Held::f32,
                       .reference = Reference::cpu_ref,
                       .bounds = bounds_of(backend),
                       .runner = std::move(runner)});
  }
#endif
  // The yardsticks of the CUDA bounds (section 1), measured wherever the tests run.
  for (const auto& [dtype, held, bounds] :
       {std::tuple{"f16", Held::f16, &kCudaF16}, std::tuple{"bf16", Held::bf16, &kCudaBf16},
        std::tuple{"int8", Held::f16, &kCudaInt8}}) {
    entries.push_back(
        {.backend = "straightforward",
         .dtype = dtype,
         .held = held,
         .reference = Reference::cpu_ref,
         .bounds = bounds,
         .runner = std::make_unique<Straightforward>(held, std::string(dtype) == "int8")});
  }
  return entries;
}

#ifdef TINYBERT_HAVE_CUDA
std::vector<Entry> cuda_backends() {
  struct Variant {
    const char* backend;
    Precision precision;
    CudaAttentionKernel attention = CudaAttentionKernel::automatic;
    bool exact_gelu = false;
  };
  const std::vector<Variant> variants = {
      {"cuda", Precision::f16},
      {"cuda", Precision::bf16},
      {"cuda", Precision::int8},
      // both attention kernels on their own (automatic picks tensor cores for head_dim 64, 128)
      {"cuda attention=simple", Precision::f16, CudaAttentionKernel::simple},
      {"cuda attention=simple", Precision::bf16, CudaAttentionKernel::simple},
      {"cuda attention=tensor-core", Precision::f16, CudaAttentionKernel::tensor_core},
      {"cuda attention=tensor-core", Precision::bf16, CudaAttentionKernel::tensor_core},
      // our erf GELU kernel after the bias epilogue instead of cuBLASLt's fused tanh form
      {"cuda exact-gelu", Precision::f16, CudaAttentionKernel::automatic, true},
      {"cuda exact-gelu", Precision::bf16, CudaAttentionKernel::automatic, true},
  };
  std::vector<Entry> entries;
  for (const Variant& v : variants) {
    CudaOptions options;
    options.precision = v.precision;
    options.attention = v.attention;
    options.exact_gelu = v.exact_gelu;
    options.poison_allocations = true;
    const bool bf16 = v.precision == Precision::bf16;
    entries.push_back({.backend = v.backend,
                       .dtype = precision_name(v.precision),
                       .held = bf16 ? Held::bf16 : Held::f16,  // int8 mode holds f16 activations
                       .reference = Reference::cpu_ref,
                       .bounds = bf16                             ? &kCudaBf16
                                 : v.precision == Precision::int8 ? &kCudaInt8
                                                                  : &kCudaF16,
                       .runner = std::make_unique<BackendRunner<CudaBackend>>(options),
                       .tanh_gelu = !v.exact_gelu,
                       .head_dims = v.attention == CudaAttentionKernel::tensor_core
                                        ? std::vector<int64_t>{64, 128}
                                        : std::vector<int64_t>{}});
  }
  return entries;
}
#endif

// ============================== 5. The harness =================================================

struct Errors {
  double max_abs = 0, nmse = 0, max_want = 0;
  int64_t not_finite = 0;  // NaN (an unwritten, poisoned element) or infinity
  bool same_shape = true;
};

Errors compare(const Result& got, const Result& want) {
  Errors e;
  if (got.rows != want.rows || got.cols != want.cols || got.values.size() != want.values.size()) {
    e.same_shape = false;
    return e;
  }
  double squared_error = 0, squared_want = 0;
  for (size_t i = 0; i < got.values.size(); ++i) {
    e.max_want = std::max(e.max_want, std::fabs(want.values[i]));
    squared_want += want.values[i] * want.values[i];
    const double difference = got.values[i] - want.values[i];
    if (!std::isfinite(difference)) {
      ++e.not_finite;
      continue;
    }
    e.max_abs = std::max(e.max_abs, std::fabs(difference));
    squared_error += difference * difference;
  }
  e.nmse = squared_want > 0 ? squared_error / squared_want : squared_error;
  return e;
}

const char* column_name(Bound Bounds::*column) {
  const std::pair<Bound Bounds::*, const char*> names[] = {{&Bounds::embed, "embed"},
                                                           {&Bounds::linear, "linear"},
                                                           {&Bounds::small_linear, "small linear"},
                                                           {&Bounds::layernorm, "layernorm"},
                                                           {&Bounds::attention, "attention"},
                                                           {&Bounds::probs, "probs"},
                                                           {&Bounds::pool, "pool"},
                                                           {&Bounds::gather, "gather"}};
  for (const auto& [member, name] : names)
    if (member == column) return name;
  return "?";
}

// One output of an op case and the bound that applies to it.
struct Output {
  std::string op;          // "linear gelu", "attention probs", ...
  Bound Bounds::*bound;    // which column of the entry's Bounds
  bool tanh_gelu = false;  // a GELU output: kTanhGeluAllowance for entries that approximate
};

// The outputs of one op case on one runner, in the order of its Outputs.
using Outputs = std::vector<Result>;
// Runs an op case on a runner, its activation inputs held as given.
using CaseRun = std::function<Outputs(OpRunner& runner, Held held)>;

class Harness {
 public:
  explicit Harness(std::vector<Entry> entries) : entries_(std::move(entries)), verbose_(verbose()) {
    // The references (CpuRefBackend's Eigen GEMMs) do most of this test's work. One thread: on a
    // busy 2-core machine OpenMP's barriers cost several times what a second thread gains, and
    // Eigen splits a GEMM's rows and columns, never its sums, so results do not depend on it.
    Eigen::setNbThreads(1);
    // TINYBERT_OPS_BACKEND=onednn (any part of an entry's name) keeps only the entries that match,
    // as test-backend-ops -b does.
    if (const char* only = std::getenv("TINYBERT_OPS_BACKEND"))
      std::erase_if(entries_,
                    [&](const Entry& e) { return e.name().find(only) == std::string::npos; });
  }

  // Runs one case on every entry that takes it and checks each output against the entry's
  // reference. A reference runs once per case and held type, and only if an entry needs it.
  void check(const std::string& shape, const std::vector<Output>& outputs, const CaseRun& run,
             int64_t head_dim = 0) {
    std::map<std::pair<Reference, Held>, Outputs> references;
    for (Entry& entry : entries_) {
      if (head_dim > 0 && !entry.head_dims.empty() &&
          std::find(entry.head_dims.begin(), entry.head_dims.end(), head_dim) ==
              entry.head_dims.end())
        continue;
      INFO(entry.name() << ": " << outputs[0].op << ", " << shape);
      try {
        const auto key = std::pair(entry.reference, entry.held);
        if (!references.count(key)) {
          OpRunner& reference = entry.reference == Reference::float64
                                    ? static_cast<OpRunner&>(float64_)
                                    : static_cast<OpRunner&>(cpu_ref_);
          references[key] = run(reference, entry.held);
        }
        const Outputs got = run(*entry.runner, entry.held);
        REQUIRE(got.size() == outputs.size());
        for (size_t i = 0; i < outputs.size(); ++i)
          check_output(entry, outputs[i], shape, compare(got[i], references[key][i]));
      } catch (const std::exception& error) {  // one backend failing does not hide the others
        FAIL_CHECK(entry.name() << " threw: " << error.what());
      }
    }
  }

  // The worst case of every backend and op in this test case, against its bound.
  void print_summary() const {
    if (!verbose_) return;
    std::printf("worst cases (max-abs in units of max(1, max |want|), bounds from the table):\n");
    for (const auto& [key, worst] : worst_)
      std::printf("  %-14s %-32s max-abs %8.2e (bound %8.2e)  nmse %8.2e (bound %8.2e)\n",
                  key.second.c_str(), key.first.c_str(), worst.max_abs, worst.bound.max_abs,
                  worst.nmse, worst.bound.nmse);
    std::fflush(stdout);
  }

 private:
  struct Worst {
    double max_abs = 0, nmse = 0;
    Bound bound{0, 0};
  };

  static bool verbose() {
    const char* value = std::getenv("TINYBERT_OPS_VERBOSE");
    return value && std::string(value) == "1";
  }

  void check_output(const Entry& entry, const Output& output, const std::string& shape,
                    const Errors& e) {
    Bound bound = entry.bounds->*output.bound;
    if (output.tanh_gelu && entry.tanh_gelu) {
      bound.max_abs += kTanhGeluAllowance.max_abs;
      bound.nmse += kTanhGeluAllowance.nmse;
    }
    const double scale = std::max(1.0, e.max_want);
    char line[320];
    std::snprintf(line, sizeof line,
                  "%-18s %-32s %-56s max-abs %8.2e (<= %8.2e)  nmse %8.2e (<= %8.2e)%s",
                  output.op.c_str(), entry.name().c_str(), shape.c_str(), e.max_abs,
                  bound.max_abs * scale, e.nmse, bound.nmse,
                  e.not_finite    ? "  NOT FINITE"
                  : !e.same_shape ? "  WRONG SHAPE"
                                  : "");
    if (verbose_) {
      std::printf("%s\n", line);
      std::fflush(stdout);
    }
    INFO(line);
    CHECK(e.same_shape);
    CHECK(e.not_finite == 0);
    CHECK(e.max_abs <= bound.max_abs * scale);
    CHECK(e.nmse <= bound.nmse);
    Worst& worst = worst_[{entry.name(), column_name(output.bound)}];
    worst.max_abs = std::max(worst.max_abs, e.max_abs / scale);
    worst.nmse = std::max(worst.nmse, e.nmse);
    worst.bound = entry.bounds->*output.bound;  // as in the table (no GELU allowance)
  }

  std::vector<Entry> entries_;
  Float64Reference float64_;
  BackendRunner<CpuRefBackend> cpu_ref_;
  bool verbose_;
  std::map<std::pair<std::string, std::string>, Worst> worst_;  // (entry, op) -> worst
};

// ============================== 6. The cases ===================================================

// Packed batches: one sequence of 1 (the degenerate softmax), 7, 129 (one past oneDNN's
// 128-query blocks) and 512 (BERT's longest) tokens, and one mixed batch whose lengths straddle
// the CUDA tensor-core kernel's 64-row tiles.
const std::vector<std::vector<int64_t>> kLengthSets = {
    {1}, {7}, {129}, {512}, {1, 7, 33, 64, 65, 129, 300}};
const std::vector<int64_t> kMixed = kLengthSets.back();

// printf into a std::string (the shapes in the error table).
template <class... Args>
std::string text(const char* format, Args... args) {
  char buffer[160];
  std::snprintf(buffer, sizeof buffer, format, args...);
  return buffer;
}

std::string lengths_string(const std::vector<int64_t>& lengths) {
  std::string s = lengths.size() == 1 ? "seq " : "seqs ";
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(lengths[i]);
  }
  return s;
}

const char* activation_name(Activation act) {
  switch (act) {
    case Activation::none:
      return "none";
    case Activation::gelu:
      return "gelu";
    case Activation::tanh:
      return "tanh";
    case Activation::sigmoid:
      return "sigmoid";
  }
  return "?";
}

constexpr Activation kAllActivations[] = {Activation::none, Activation::gelu, Activation::tanh,
                                          Activation::sigmoid};

void check_embed(Harness& harness) {
  std::mt19937 rng(1);
  const int32_t vocab = 50, positions = 512, types = 2, tasks = 3;
  struct Tables {
    int64_t hidden;
    bool task_type;                    // a task-type table (ERNIE 3.0 / UIE), or none (BERT)
    DType word, position, token_type;  // as stored in the file
  };
  for (const Tables& t : {Tables{200, false, DType::f32, DType::f32, DType::f32},
                          Tables{200, true, DType::f32, DType::f32, DType::f32},
                          Tables{768, false, DType::f32, DType::f32, DType::f32},
                          Tables{768, true, DType::i8, DType::f16, DType::bf16}}) {
    const int64_t hidden = t.hidden;
    const StoredWeight word = store(random_normal(vocab * hidden, rng), {vocab, hidden}, t.word);
    const StoredWeight position =
        store(random_normal(positions * hidden, rng, 0.5f), {positions, hidden}, t.position);
    const StoredWeight token_type =
        store(random_normal(types * hidden, rng, 0.5f), {types, hidden}, t.token_type);
    const StoredWeight task_type =
        store(random_normal(tasks * hidden, rng, 0.5f), {tasks, hidden}, DType::f32);
    const StoredWeight gamma = store(random_normal(hidden, rng, 0.1f, 1.0f), {hidden}, DType::f32);
    const StoredWeight beta = store(random_normal(hidden, rng, 0.1f), {hidden}, DType::f32);
    const EmbeddingWeights weights{word.weight,
                                   position.weight,
                                   token_type.weight,
                                   t.task_type ? std::optional(task_type.weight) : std::nullopt,
                                   {gamma.weight, beta.weight}};
    for (const bool offsets : {false, true}) {
      for (const auto& lengths :
           offsets ? std::vector<std::vector<int64_t>>{kMixed} : kLengthSets) {
        // Positions continued from elsewhere (SiameseUIE's hints follow their text), up to the
        // table's last row: 511 + 1, 383 + 129 and 212 + 300 tokens end at position 511.
        const Batch batch = random_batch(
            lengths, vocab, types, tasks, rng,
            offsets ? std::vector<int32_t>{511, 3, 100, 0, 200, 383, 212} : std::vector<int32_t>{});
        const std::string shape = text("hidden %lld%s %s/%s/%s, ", static_cast<long long>(hidden),
                                       t.task_type ? " +task" : "", dtype_name(t.word),
                                       dtype_name(t.position), dtype_name(t.token_type)) +
                                  lengths_string(lengths) + (offsets ? " +offsets" : "");
        harness.check(shape, {{"embed", &Bounds::embed}}, [&](OpRunner& runner, Held) {
          return Outputs{runner.embed(weights, 1e-12f, batch)};
        });
      }
    }
  }
}

void check_linear(Harness& harness) {
  struct Shape {
    int64_t in, out;
    std::vector<int64_t> rows;
    std::vector<Activation> activations;
    std::vector<DType> stored;  // the weight's dtypes in the file (f32 with every activation)
  };
  const std::vector<Activation> all(std::begin(kAllActivations), std::end(kAllActivations));
  const std::vector<Shape> shapes = {
      // rows on both sides of oneDNN's gemm_rows() buckets (exact up to 64, then padded: 65 ->
      // 68, 129 -> 136, 1000 -> 1024), every activation, every stored dtype
      {96, 200, {1, 63, 65, 129, 1000}, all, {DType::f32, DType::f16, DType::bf16, DType::i8}},
      {768, 3072, {1, 65, 129}, {Activation::none, Activation::gelu}, {DType::f32}},  // FFN up
      {3072, 768, {63, 129}, {Activation::none}, {DType::f32}},  // FFN down: the longest sums
      {64, 64, {4100}, {Activation::none}, {DType::f32}},  // CUDA int8 runs 4096 rows at a time
      {90, 130, {7, 129}, all, {DType::f32}},  // sides not multiples of 4 (CUDA int8: 16-bit GEMM)
      // fewer than 16 outputs: fp32 in every backend (UIE start/end, classifiers)
      {200, 1, {1, 129}, {Activation::none, Activation::sigmoid}, {DType::f32}},
      {200, 3, {1, 129}, all, {DType::f32, DType::bf16, DType::i8}},
      {200, 15, {129}, all, {DType::f32}},
  };
  std::mt19937 rng(2);
  for (const Shape& s : shapes) {
    const std::vector<float> weight =
        random_normal(s.in * s.out, rng, 1.0f / std::sqrt(static_cast<float>(s.in)));
    const StoredWeight bias = store(random_normal(s.out, rng, 0.5f), {s.out}, DType::f32);
    for (const DType dtype : s.stored) {
      const StoredWeight stored = store(weight, {s.out, s.in}, dtype);
      const LinearWeights weights{stored.weight, bias.weight};
      // each runner prepares the layer once and runs it on every input below
      std::map<const OpRunner*, LinearOp> prepared;
      const auto linear = [&](OpRunner& runner) -> const LinearOp& {
        auto it = prepared.find(&runner);
        if (it == prepared.end())
          it = prepared.emplace(&runner, runner.prepare_linear(weights)).first;
        return it->second;
      };
      for (const int64_t rows : s.rows) {
        const HostMatrix x = random_matrix(rows, s.in, rng);
        for (const Activation act : s.activations) {
          // the epilogue does not depend on how the weight was stored: other dtypes run one
          if (dtype != DType::f32 && act != s.activations.front()) continue;
          const std::string shape =
              text("[%lldx%lld] x [%lldx%lld]^T %s", static_cast<long long>(rows),
                   static_cast<long long>(s.in), static_cast<long long>(s.out),
                   static_cast<long long>(s.in), dtype_name(dtype));
          const Output output{std::string("linear ") + activation_name(act),
                              s.out < kSmallLinearOutputs ? &Bounds::small_linear : &Bounds::linear,
                              act == Activation::gelu};
          harness.check(shape, {output}, [&](OpRunner& runner, Held held) {
            return Outputs{linear(runner)(as_held(x, held), act)};
          });
        }
      }
    }
  }
}

void check_layernorm(Harness& harness) {
  std::mt19937 rng(3);
  for (const int64_t cols : {200, 768, 1024}) {
    const float eps = cols == 768 ? 1e-12f : 1e-5f;  // BERT's, and the common other one
    const StoredWeight gamma = store(random_normal(cols, rng, 0.1f, 1.0f), {cols}, DType::f32);
    const StoredWeight beta = store(random_normal(cols, rng, 0.1f), {cols}, DType::f32);
    const NormWeights weights{gamma.weight, beta.weight};
    for (const int64_t rows : {1, 7, 129, 649}) {
      const HostMatrix x = random_matrix(rows, cols, rng, 1.0f, 0.5f);
      const HostMatrix residual = random_matrix(rows, cols, rng, 2.0f);
      const std::string shape =
          text("[%lldx%lld]", static_cast<long long>(rows), static_cast<long long>(cols));
      harness.check(
          shape, {{"add_layernorm", &Bounds::layernorm}}, [&](OpRunner& runner, Held held) {
            return Outputs{
                runner.add_layernorm(weights, eps, as_held(residual, held), as_held(x, held))};
          });
      harness.check(shape, {{"layernorm", &Bounds::layernorm}}, [&](OpRunner& runner, Held held) {
        return Outputs{runner.layernorm(weights, eps, as_held(x, held))};
      });
    }
  }
}

void check_attention(Harness& harness) {
  struct Heads {
    int64_t num_heads, head_dim;
    std::vector<std::vector<int64_t>> lengths;        // batches run without probabilities
    std::vector<std::vector<int64_t>> probs_lengths;  // and with them (the context checked too)
  };
  // 512 tokens only with few heads: the float64 reference's cost grows with heads x len^2.
  const std::vector<Heads> configs = {
      {2, 32, {{1}, {129}, {512}}, {{7}, kMixed}},
      {12, 64, {{1}, {7}, kMixed}, {{129}}},  // BERT-base
      {2, 64, {}, {{512}}},                   // the tensor-core kernel at full length
      {3, 13, {{7}}, {kMixed}},               // an odd head_dim
      {3, 8, {kMixed}, {}},
      {2, 96, {kMixed}, {}},
      {2, 128, {{129}, kMixed}, {}},  // the tensor-core kernel's other size
      {1, 256, {kMixed}, {}},         // the simple CUDA kernel's largest
  };
  std::mt19937 rng(4);
  for (const Heads& config : configs) {
    const int64_t hidden = config.num_heads * config.head_dim;
    for (const bool with_probs : {false, true}) {
      for (const auto& lengths : with_probs ? config.probs_lengths : config.lengths) {
        const Batch batch = random_batch(lengths, 10, 1, 1, rng);
        const HostMatrix qkv = random_matrix(batch.num_tokens(), 3 * hidden, rng);
        const std::string shape =
            text("%lld heads x %lld, ", static_cast<long long>(config.num_heads),
                 static_cast<long long>(config.head_dim)) +
            lengths_string(lengths);
        std::vector<Output> outputs = {{"attention", &Bounds::attention}};
        if (with_probs)
          outputs = {{"attention +probs", &Bounds::attention}, {"attention probs", &Bounds::probs}};
        harness.check(
            shape, outputs,
            [&](OpRunner& runner, Held held) {
              Result probs;
              Result context = runner.attention(as_held(qkv, held), batch, config.num_heads,
                                                with_probs ? &probs : nullptr);
              if (!with_probs) return Outputs{std::move(context)};
              return Outputs{std::move(context), std::move(probs)};
            },
            config.head_dim);
      }
    }
  }
}

void check_pool(Harness& harness) {
  std::mt19937 rng(5);
  for (const auto& lengths : {kMixed, std::vector<int64_t>{512}}) {
    for (const int64_t cols : {200, 768}) {
      const Batch batch = random_batch(lengths, 10, 1, 1, rng);
      const HostMatrix hidden = random_matrix(batch.num_tokens(), cols, rng);
      for (const Pooling pooling : {Pooling::cls, Pooling::mean}) {
        const std::string shape =
            text("width %lld, ", static_cast<long long>(cols)) + lengths_string(lengths);
        harness.check(shape, {{pooling == Pooling::cls ? "pool cls" : "pool mean", &Bounds::pool}},
                      [&](OpRunner& runner, Held held) {
                        return Outputs{runner.pool(as_held(hidden, held), batch, pooling)};
                      });
      }
    }
  }
}

void check_gather_rows(Harness& harness) {
  std::mt19937 rng(6);
  const Batch batch = random_batch(kMixed, 10, 1, 1, rng);
  const HostMatrix hidden = random_matrix(batch.num_tokens(), 200, rng);
  // first, last, a repeat, the [MASK] rows fill-mask would pick
  const std::vector<int64_t> rows = {0, batch.num_tokens() - 1, 5, 5, 300};
  harness.check(text("5 of %lld rows, width 200", static_cast<long long>(batch.num_tokens())),
                {{"gather_rows", &Bounds::gather}}, [&](OpRunner& runner, Held held) {
                  return Outputs{runner.gather_rows(as_held(hidden, held), rows)};
                });
}

// ============================== 7. Test cases ==================================================

void on_cpu(void (*check)(Harness&)) {
  Harness harness(cpu_backends());
  check(harness);
  harness.print_summary();
}

// The CUDA cases need a GPU. Without one they pass with a loud warning, so that a run of the
// whole file still runs and reports every CPU case (CTest runs each case as its own process).
void on_cuda([[maybe_unused]] void (*check)(Harness&)) {
  std::optional<std::string> skipped;
#ifdef TINYBERT_HAVE_CUDA
  skipped = cuda_unavailable_reason();
  if (!skipped) {
    Harness harness(cuda_backends());
    check(harness);
    harness.print_summary();
    return;
  }
#else
  skipped = "this build has no CUDA backend (tinybert::cuda needs nvcc at configure time)";
#endif
  WARN("CUDA op-parity cases SKIPPED: " << *skipped);
}

}  // namespace

TEST_CASE("backend_ops: embed", "[ops]") { on_cpu(check_embed); }
TEST_CASE("backend_ops: linear", "[ops]") { on_cpu(check_linear); }
TEST_CASE("backend_ops: add_layernorm and layernorm", "[ops]") { on_cpu(check_layernorm); }
TEST_CASE("backend_ops: attention", "[ops]") { on_cpu(check_attention); }
TEST_CASE("backend_ops: pool", "[ops]") { on_cpu(check_pool); }
TEST_CASE("backend_ops: gather_rows", "[ops]") { on_cpu(check_gather_rows); }

TEST_CASE("backend_ops on CUDA: embed", "[ops][cuda]") { on_cuda(check_embed); }
TEST_CASE("backend_ops on CUDA: linear", "[ops][cuda]") { on_cuda(check_linear); }
TEST_CASE("backend_ops on CUDA: add_layernorm and layernorm", "[ops][cuda]") {
  on_cuda(check_layernorm);
}
TEST_CASE("backend_ops on CUDA: attention", "[ops][cuda]") { on_cuda(check_attention); }
TEST_CASE("backend_ops on CUDA: pool", "[ops][cuda]") { on_cuda(check_pool); }
TEST_CASE("backend_ops on CUDA: gather_rows", "[ops][cuda]") { on_cuda(check_gather_rows); }

#ifdef TINYBERT_HAVE_CUDA
// What the parity cases above take for granted about the CUDA backend, and its input checks.
TEST_CASE("backend_ops on CUDA: linear kinds and input checks", "[ops][cuda]") {
  if (const auto reason = cuda_unavailable_reason()) {
    WARN("CUDA op-parity cases SKIPPED: " << *reason);
    return;
  }
  std::mt19937 rng(7);
  const auto linear_weights = [&](int64_t in, int64_t out) {
    return std::pair(store(random_normal(in * out, rng, 0.1f), {out, in}, DType::f32),
                     store(random_normal(out, rng), {out}, DType::f32));
  };
  using Kind = CudaBackend::Linear::Kind;
  for (const Precision precision : {Precision::f16, Precision::bf16, Precision::int8}) {
    CudaOptions options;
    options.precision = precision;
    options.poison_allocations = true;
    CudaBackend gpu(options);
    INFO(precision_name(precision));
    const auto [big_weight, big_bias] = linear_weights(96, 200);
    const auto [odd_weight, odd_bias] = linear_weights(90, 130);
    const auto [small_weight, small_bias] = linear_weights(200, 3);
    const bool int8 = precision == Precision::int8;
    CHECK(gpu.prepare(LinearWeights{big_weight.weight, big_bias.weight}).kind ==
          (int8 ? Kind::gemm_int8 : Kind::gemm16));
    CHECK(gpu.prepare(LinearWeights{odd_weight.weight, odd_bias.weight}).kind == Kind::gemm16);
    const CudaBackend::Linear small =
        gpu.prepare(LinearWeights{small_weight.weight, small_bias.weight});
    REQUIRE(small.kind == Kind::small_f32);
    CudaBackend::Matrix in, out;
    gpu.from_host(random_normal(7 * 200, rng), 7, 200, in);
    gpu.linear(small, in, out, Activation::none);
    CHECK(out.element() == DType::f32);  // heads read fp32 logits

    const std::vector<int64_t> bad_row = {7};  // `in` has rows 0..6
    CHECK_THROWS_AS(gpu.gather_rows(in, bad_row, out), Error);

    // The tensor-core kernel takes head_dim 64 and 128 only (its entries skip the others).
    CudaOptions tensor_core = options;
    tensor_core.attention = CudaAttentionKernel::tensor_core;
    CudaBackend tensor_core_gpu(tensor_core);
    Batch batch;
    const std::vector<int32_t> ids(7, 1);
    batch.add(ids);
    CudaBackend::Matrix qkv, context;
    tensor_core_gpu.from_host(random_normal(7 * 3 * 96, rng), 7, 3 * 96, qkv);
    CHECK_THROWS_AS(tensor_core_gpu.attention(qkv, batch, 3, context), Error);  // head_dim 32
  }
}
#endif
