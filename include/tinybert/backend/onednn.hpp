// The fast CPU backend: GEMMs through oneDNN (fp32, bf16 or int8, AMX/AVX-512 picked by oneDNN at
// run time) with weights packed once at load; our own multi-threaded LayerNorm, embedding gather
// and attention over packed variable-length batches (fused, flash_attention.hpp, or blocked on
// oneDNN matmuls). Threads: OpenMP, the pool oneDNN itself uses, so nothing is oversubscribed.
// Link tinybert::onednn.
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tinybert/backend/backend.hpp"
#include "tinybert/backend/cpu_features.hpp"
#include "tinybert/backend/flash_attention.hpp"
#include "tinybert/backend/host_matrix.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/model.hpp"
#include "tinybert/precision.hpp"
#include "tinybert/quantize.hpp"
#include "tinybert/weights_f32.hpp"

namespace tinybert {

namespace onednn_detail {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

// The int8 epilogue's activations on one row, vectorised by Eigen (erf, tanh and exp have
// AVX-512 packet versions; scalar libm calls here cost as much as the GEMM).
inline void apply_activation(Activation act, float* x, int64_t n) {
  ArrayMap v(x, n);
  switch (act) {
    case Activation::none:
      return;
    case Activation::gelu:
      v = 0.5f * v * (1.0f + (v * 0.70710678118654752f).erf());
      return;
    case Activation::tanh:
      v = v.tanh();
      return;
    case Activation::sigmoid:
      v = 1.0f / (1.0f + (-v).exp());
      return;
  }
}

inline dnnl::algorithm eltwise_of(Activation act) {
  switch (act) {
    case Activation::gelu:
      return dnnl::algorithm::eltwise_gelu_erf;
    case Activation::tanh:
      return dnnl::algorithm::eltwise_tanh;
    case Activation::sigmoid:
      return dnnl::algorithm::eltwise_logistic;
    case Activation::none:
      break;
  }
  return dnnl::algorithm::undef;
}

// Adds row `index` of an embedding table in its stored dtype to out (no f32 copy of the table).
inline void add_table_row(const Weight& table, int64_t index, float* out) {
  const int64_t width = table.cols();
  const auto* raw = static_cast<const uint8_t*>(table.values.data);
  switch (table.values.dtype) {
    case DType::f32: {
      const float* row = reinterpret_cast<const float*>(raw) + index * width;
      for (int64_t c = 0; c < width; ++c) out[c] += row[c];
      return;
    }
    case DType::f16:
      for (int64_t c = 0; c < width; ++c)
        out[c] += f16_to_f32(load_le<uint16_t>(raw + 2 * (index * width + c)));
      return;
    case DType::bf16:
      for (int64_t c = 0; c < width; ++c)
        out[c] += bf16_to_f32(load_le<uint16_t>(raw + 2 * (index * width + c)));
      return;
    case DType::i8: {
      const auto* row = reinterpret_cast<const int8_t*>(raw) + index * width;
      const float scale = table.row_scales[index];
      for (int64_t c = 0; c < width; ++c) out[c] += static_cast<float>(row[c]) * scale;
      return;
    }
    case DType::u8:
      throw Error("u8 embedding table");
  }
}

// Row-wise LayerNorm in place, over all rows in parallel (Eigen reductions vectorise; plain
// float loops would not without -ffast-math), after adding the residual rows if given: one
// parallel region and one pass over memory (each row stays in L1 between add and norm).
inline void layernorm_rows(float* x, int64_t rows, int64_t cols, const float* gamma,
                           const float* beta, float eps, const float* residual = nullptr) {
  const Eigen::Map<const Eigen::ArrayXf> g(gamma, cols), b(beta, cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    ArrayMap v(x + r * cols, cols);
    if (residual) v += Eigen::Map<const Eigen::ArrayXf>(residual + r * cols, cols);
    const float mean = v.mean();
    v -= mean;
    const float inv_std = 1.0f / std::sqrt(v.square().mean() + eps);
    v = v * inv_std * g + b;
  }
}

// Symmetric per-token int8: q = rint(x * 127 / max|x|), in plain Eigen: quantize_row's twin and
// test reference (tests/test_onednn.cpp), and the version of builds without AVX-512.
inline void quantize_row_portable(const float* x, int64_t cols, int8_t* q, float* scale) {
  const Eigen::Map<const Eigen::ArrayXf> v(x, cols);
  const float max_abs = v.abs().maxCoeff();
  *scale = max_abs > 0 ? max_abs / 127.0f : 1.0f;
  Eigen::Map<Eigen::Array<int8_t, Eigen::Dynamic, 1>>(q, cols) =
      (v * (1.0f / *scale)).rint().max(-127.0f).min(127.0f).cast<int32_t>().cast<int8_t>();
}

// The same, 16 values an instruction: Eigen leaves the float -> int8 casts scalar, and this ran
// at 8 % of a bge-small int8 pass at 256 tokens. vcvtps2dq rounds to nearest even as rint does
// (the default rounding mode), vpmovsdb narrows with saturation after the clamp to +-127.
inline void quantize_row(const float* x, int64_t cols, int8_t* q, float* scale) {
#if defined(__AVX512F__)
  const auto keep = [&](int64_t c) {
    return static_cast<__mmask16>((1u << std::min<int64_t>(cols - c, 16)) - 1);
  };
  __m512 max_abs = _mm512_setzero_ps();
  for (int64_t c = 0; c < cols; c += 16)
    max_abs = _mm512_max_ps(max_abs, _mm512_abs_ps(_mm512_maskz_loadu_ps(keep(c), x + c)));
  const float largest = _mm512_reduce_max_ps(max_abs);
  *scale = largest > 0 ? largest / 127.0f : 1.0f;
  const __m512 inverse = _mm512_set1_ps(1.0f / *scale);
  const __m512i low = _mm512_set1_epi32(-127), high = _mm512_set1_epi32(127);
  for (int64_t c = 0; c < cols; c += 16) {
    const __m512i rounded =
        _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(keep(c), x + c), inverse));
    _mm512_mask_cvtsepi32_storeu_epi8(q + c, keep(c),
                                      _mm512_min_epi32(_mm512_max_epi32(rounded, low), high));
  }
#else
  quantize_row_portable(x, cols, q, scale);
#endif
}

// out = x rounded to bf16 (Eigen's vectorised round-to-nearest-even), rows in parallel.
inline void to_bf16_rows(const float* x, int64_t rows, int64_t cols, Eigen::bfloat16* out) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    Eigen::Map<Eigen::Array<Eigen::bfloat16, Eigen::Dynamic, 1>>(out + r * cols, cols) =
        Eigen::Map<const Eigen::ArrayXf>(x + r * cols, cols).cast<Eigen::bfloat16>();
}

// One CPU engine for the process, so that memory objects and streams made once serve the
// primitives of every backend. Never destroyed: thread-local objects made for it may outlive
// any static.
inline const dnnl::engine& cpu_engine() {
  static const auto* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// The calling thread's stream (a oneDNN stream is not shared between threads).
inline dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// What fixes a memory descriptor: its role (which also names its dtype and strides) and sizes.
struct MemoryKey {
  int role;
  int64_t a, b, c, d;
  auto operator<=>(const MemoryKey&) const = default;
};

// A memory object over `data` with the descriptor make_desc() returns. The calling thread keeps
// one per key, made on first use, so that a warm forward pass creates none: it only sets the
// data pointer (oneDNN memory objects are small heap objects; descriptors hold dims vectors).
template <class MakeDesc>
dnnl_memory_t bind_memory(const MemoryKey& key, MakeDesc&& make_desc, const void* data) {
  thread_local std::map<MemoryKey, dnnl::memory> cache;
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, dnnl::memory(make_desc(), cpu_engine(), DNNL_MEMORY_NONE)).first;
  it->second.set_data_handle(const_cast<void*>(data));
  return it->second.get();
}

// Runs a primitive on the calling thread's stream and waits. Through the C API with the
// arguments on the stack: the C++ execute() builds an unordered_map and a vector per call.
// (oneDNN itself still makes ~5 small allocations per execution for its argument map.)
inline void execute(const dnnl::primitive& primitive, std::initializer_list<dnnl_exec_arg_t> args) {
  dnnl::stream& stream = thread_stream();
  dnnl::error::wrap_c_api(dnnl_primitive_execute(primitive.get(), stream.get(),
                                                 static_cast<int>(args.size()), args.begin()),
                          "could not execute a oneDNN primitive");
  dnnl::error::wrap_c_api(dnnl_stream_wait(stream.get()), "could not wait on a oneDNN stream");
}

inline dnnl::memory::desc plain_desc(int64_t rows, int64_t cols, dnnl::memory::data_type type) {
  return dnnl::memory::desc({rows, cols}, type, dnnl::memory::format_tag::ab);
}

}  // namespace onednn_detail

class OneDnnBackend {
 public:
  using Matrix = HostMatrix;

  // Which attention kernel runs (dev/cpu/attention_forward.cpp has them side by side): blocked
  // (two oneDNN matmuls per block of query rows, v2), fused (flash_attention.hpp, v3, in f32 or
  // with vdpbf16ps in bf16) or amx (the fused kernel's products on AMX tiles in bf16, v4).
  // automatic: amx in bf16 and int8 where the CPU has AMX (and ONEDNN_MAX_CPU_ISA allows it);
  // else fused in bf16, where it measured 2.1-2.3 x faster than blocked at every length, and
  // blocked in f32 and int8, where oneDNN's f32 matmuls measured as fast or faster on 2 threads
  // (bench/RESULTS.md, "Attention kernels"). f32 never takes amx by itself: its attention stays
  // f32. Attribution (probabilities asked for) always takes the blocked one: the fused kernels
  // never form them.
  enum class AttentionKernel { automatic, blocked, fused, amx };

  // query_block: attention processes this many query rows at a time (memory ~ block x length).
  // A precision the CPU (or ONEDNN_MAX_CPU_ISA) cannot run falls back to f32; fallback_reason()
  // says why.
  explicit OneDnnBackend(Precision precision = Precision::f32, int64_t query_block = 128,
                         AttentionKernel attention_kernel = AttentionKernel::automatic)
      : precision_(precision),
        query_block_(std::max<int64_t>(query_block, 1)),
        attention_kernel_(attention_kernel) {
    if (precision_ == Precision::f16)
      throw Error(
          "the oneDNN backend computes in f32, bf16 or int8, not f16 (f16 is a CUDA precision)");
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto has = [&](dnnl_cpu_isa_t bits) {
      return (isa & static_cast<unsigned>(bits)) == static_cast<unsigned>(bits);
    };
    // int8 products that accumulate in 32 bits: x86 VNNI (oneDNN's query, so that
    // ONEDNN_MAX_CPU_ISA limits it), AArch64 SDOT / I8MM (the kernel's hwcaps).
    int8_dot_product_ = has(dnnl_cpu_isa_avx512_core_vnni) || has(dnnl_cpu_isa_avx2_vnni)
                            ? "VNNI"
                            : cpu::arm_int8_dot_product();
    amx_allowed_ = has(dnnl_cpu_isa_avx512_core_amx);
    if (precision_ != Precision::f32 && !precision_supported(precision_)) {
      fallback_reason_ = std::string(precision_name(precision_)) +
                         " matmul is not available on this CPU / ISA limit; using f32";
      precision_ = Precision::f32;
    }
  }

  // The precision in use (after any fallback), and why it differs from the one asked for.
  Precision precision() const { return precision_; }
  std::string name() const { return precision_name(precision_); }
  const std::string& fallback_reason() const { return fallback_reason_; }
  // Without VNNI, int8 weights use 7 bits so that oneDNN's 16-bit pair sums cannot saturate (x86
  // without VNNI). AArch64 without SDOT keeps them too: oneDNN's kernels there are not ours to
  // check for 16-bit intermediates, and 7 bits cost little accuracy (cosine 0.995 on bge).
  int int8_weight_levels() const { return int8_dot_product_.empty() ? 63 : 127; }
  // The arithmetic of the fused kernel that attention (without probabilities) runs for this head
  // size, or none for the blocked one. An amx asked for where there is none is automatic.
  std::optional<flash::Arithmetic> fused_attention(int64_t head_dim) const {
    using flash::Arithmetic;
    const bool bf16 = precision_ == Precision::bf16;
    const auto usable = [&](Arithmetic a) -> std::optional<Arithmetic> {
      if (flash::available(head_dim, a)) return a;
      return std::nullopt;
    };
    switch (attention_kernel_) {
      case AttentionKernel::blocked:
        return std::nullopt;
      case AttentionKernel::fused:
        return usable(bf16 ? Arithmetic::bf16 : Arithmetic::f32);
      default:
        break;
    }
    const bool amx_asked =
        attention_kernel_ == AttentionKernel::amx || precision_ != Precision::f32;
    if (amx_asked && amx_allowed_)
      if (auto amx = usable(Arithmetic::amx_bf16)) return amx;
    return bf16 ? usable(Arithmetic::bf16) : std::nullopt;
  }
  // "blocked", or "fused f32" / "fused bf16" / "fused AMX bf16", for benchmarks and logs.
  std::string attention_name(int64_t head_dim) const {
    const auto fused = fused_attention(head_dim);
    return fused ? std::string("fused ") + flash::arithmetic_name(*fused) : "blocked";
  }
  // Which int8 path this CPU takes, for the CLI, the server and the logs.
  std::string int8_path() const {
    std::string path = int8_dot_product_.empty()
                           ? "int8: 7-bit weights (no dot-product instructions)"
                           : "int8: 8-bit weights (" + int8_dot_product_ + ")";
#if defined(__aarch64__)
    // Measured under qemu (bench/RESULTS.md, "Edge: aarch64"): Debian's oneDNN 2.6 for arm64,
    // built without the Arm Compute Library, runs int8 matmuls with the same instructions with
    // SDOT as without, 1.75 x the instructions of its f32 on bge-small. int8 still saves memory.
    path += "; slower than f32 on AArch64 with oneDNN built without the Arm Compute Library";
#endif
    return path;
  }
  // What a user should know about how this backend computes: why the precision asked for runs
  // as f32, or the int8 path; empty for f32 as asked.
  std::string note() const {
    if (!fallback_reason_.empty()) return fallback_reason_;
    return precision_ == Precision::int8 ? int8_path() : "";
  }

  // A Linear layer packed for oneDNN. Primitives are created per number of GEMM rows on first
  // use and kept; gemm_rows() keeps the number of distinct row counts small.
  struct Linear {
    Precision precision = Precision::f32;
    int64_t in = 0, out = 0;
    dnnl::memory weights;  // packed [in, out] in oneDNN's preferred layout
    dnnl::memory::desc weights_desc;
    std::vector<float> bias;           // [out]
    std::vector<float> weight_scales;  // int8: per output channel
    struct Key {
      int64_t rows;
      Activation act;
      bool operator<(const Key& o) const { return rows != o.rows ? rows < o.rows : act < o.act; }
    };
    mutable std::map<Key, dnnl::matmul> primitives;
    mutable std::unique_ptr<std::mutex> mutex = std::make_unique<std::mutex>();
  };
  struct Norm {
    std::vector<float> gamma, beta;
    float eps = 1e-12f;
  };
  struct Embeddings {
    Weight word, position, token_type;
    std::optional<Weight> task_type;
    Norm norm;
  };

  // ---- weight preparation (once, at load) ----
  Linear prepare(const LinearWeights& w) const {
    using dt = dnnl::memory::data_type;
    Linear l;
    l.in = w.weight.cols();
    l.out = w.weight.rows();
    l.bias = dequantize(w.bias);
    // Tiny projections (UIE start/end, classifiers) stay fp32: no speed to gain, only accuracy to
    // lose.
    l.precision = l.out < 16 ? Precision::f32 : precision_;
    const dt weight_type = l.precision == Precision::f32    ? dt::f32
                           : l.precision == Precision::bf16 ? dt::bf16
                                                            : dt::s8;
    const dnnl::memory::dims weight_dims = {l.in, l.out};
    l.weights_desc = make_primitive_desc(l, 128, Activation::none,
                                         dnnl::memory::desc(weight_dims, weight_type,
                                                            dnnl::memory::format_tag::any))
                         .weights_desc();

    // The stored [out, in] row-major matrix is oneDNN's [in, out] in "ba" order. f32 and fitting
    // int8 weights are reordered straight from the mapped file; only conversions need a copy.
    const DType stored = w.weight.values.dtype;
    std::vector<float> converted;
    std::vector<int8_t> s8;
    const void* plain_data = w.weight.values.data;
    dt plain_type = dt::f32;
    if (l.precision == Precision::int8) {
      const int levels = int8_weight_levels();
      const auto* stored_s8 = w.weight.values.as<int8_t>();
      const bool fits =
          stored == DType::i8 && std::all_of(stored_s8, stored_s8 + w.weight.values.numel(),
                                             [&](int8_t q) { return std::abs(q) <= levels; });
      plain_type = dt::s8;
      if (fits) {  // already int8 (e.g. the bge ONNX) within this CPU's range: use as stored
        l.weight_scales.assign(w.weight.row_scales, w.weight.row_scales + l.out);
      } else {
        if (stored != DType::f32) converted = dequantize(w.weight);
        s8.resize(static_cast<size_t>(w.weight.values.numel()));
        l.weight_scales.resize(static_cast<size_t>(l.out));
        quantize_rows_symmetric(converted.empty() ? w.weight.values.as<float>() : converted.data(),
                                l.out, l.in, s8.data(), l.weight_scales.data(), levels);
        plain_data = s8.data();
      }
    } else if (stored != DType::f32) {
      converted = dequantize(w.weight);
      plain_data = converted.data();
    }
    dnnl::memory plain({weight_dims, plain_type, dnnl::memory::format_tag::ba}, engine(),
                       const_cast<void*>(plain_data));
    l.weights = dnnl::memory(l.weights_desc, engine());
    dnnl::stream stream(engine());
    dnnl::reorder(plain, l.weights).execute(stream, plain, l.weights);
    stream.wait();
    return l;
  }
  Norm prepare(const NormWeights& w, float eps) const {
    return {dequantize(w.gamma), dequantize(w.beta), eps};
  }
  Embeddings prepare(const EmbeddingWeights& w, float eps) const {
    return {w.word, w.position, w.token_type, w.task_type, prepare(w.norm, eps)};
  }

  // ---- ops ----
  void embed(const Embeddings& e, const Batch& batch, Matrix& out) const {
    const int64_t hidden = e.word.cols();
    out.resize(batch.num_tokens(), hidden);
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      for (int64_t pos = 0; pos < batch.seq_len(s); ++pos) {
        const int64_t t = batch.seq_begin(s) + pos;
        float* row = out.row(t);
        std::fill(row, row + hidden, 0.0f);
        onednn_detail::add_table_row(e.word, batch.input_ids[t], row);
        onednn_detail::add_table_row(e.position, batch.position(s, pos), row);
        onednn_detail::add_table_row(e.token_type, batch.token_type_ids[t], row);
        if (e.task_type) onednn_detail::add_table_row(*e.task_type, batch.task_type_ids[t], row);
      }
    }
    layernorm(e.norm, out);
  }

  // The number of rows a GEMM over `rows` rows runs with: exact up to 64, then rounded up to one
  // of 16 steps per power of two (at most 6.25 % padding rows). Each distinct count costs a oneDNN
  // primitive (JIT code, kept); a server's merged batches take every token count up to their
  // budget, so without buckets its memory would grow with every new count.
  static int64_t gemm_rows(int64_t rows) {
    if (rows <= 64) return rows;
    const int64_t step = int64_t{1} << (std::bit_width(static_cast<uint64_t>(rows)) - 5);
    return (rows + step - 1) / step * step;
  }

  // out = activation(in @ W^T + b)
  void linear(const Linear& l, const Matrix& in, Matrix& out,
              Activation act = Activation::none) const {
    using dt = dnnl::memory::data_type;
    using onednn_detail::bind_memory;
    using onednn_detail::plain_desc;
    const int64_t rows = in.rows(), cols = l.in, padded = gemm_rows(rows);
    // The GEMM writes `padded` rows; the padding rows' outputs are computed and dropped.
    out.resize(padded, l.out);
    out.resize(rows, l.out);
    if (rows == 0) return;
    // Scratch of the calling thread (grows only); the OpenMP loops below must use raw pointers
    // into it, since inside a parallel region a thread_local name would mean each worker's own
    // copy.
    thread_local AlignedVector<Eigen::bfloat16> bf16_src;
    thread_local AlignedVector<int8_t> s8_src;
    thread_local AlignedVector<float> token_scales;
    thread_local AlignedVector<float> f32_src;  // f32 input with room for the padding rows
    if (l.precision == Precision::int8) {       // the scales, bias and activation in our epilogue
      grow(s8_src, padded * cols);
      grow(token_scales, rows);
      quantize_tokens(in.data(), rows, cols, s8_src.data(), token_scales.data());
      int8_gemm(l, rows, s8_src.data(), out);
      int8_epilogue(l, token_scales.data(), act, out);
      return;
    }
    const dnnl::matmul& prim = primitive(l, padded, act);
    const void* src_data = in.data();
    dt src_type = dt::f32;
    if (l.precision == Precision::f32 && padded > rows) {
      grow(f32_src,
           padded * cols);  // the padding rows may hold anything: their outputs are dropped
      std::copy(in.data(), in.data() + rows * cols, f32_src.data());
      src_data = f32_src.data();
    } else if (l.precision == Precision::bf16) {
      grow(bf16_src, padded * cols);
      onednn_detail::to_bf16_rows(in.data(), rows, cols, bf16_src.data());
      src_data = bf16_src.data();
      src_type = dt::bf16;
    }
    const int64_t out_cols = l.out;
    dnnl_memory_t src = bind_memory(
        {kLinearSrc + static_cast<int>(src_type), padded, cols, 0, 0},
        [&] { return plain_desc(padded, cols, src_type); }, src_data);
    dnnl_memory_t dst = bind_memory(
        {kLinearDst, padded, out_cols, 0, 0}, [&] { return plain_desc(padded, out_cols, dt::f32); },
        out.data());
    dnnl_memory_t bias = bind_memory(
        {kLinearBias, out_cols, 0, 0, 0}, [&] { return plain_desc(1, out_cols, dt::f32); },
        l.bias.data());
    onednn_detail::execute(prim, {{DNNL_ARG_SRC, src},
                                  {DNNL_ARG_WEIGHTS, l.weights.get()},
                                  {DNNL_ARG_BIAS, bias},
                                  {DNNL_ARG_DST, dst}});
  }

  // The feed-forward block: out = down(gelu(up(in))). In int8 the first linear's epilogue (its
  // scales, bias and GELU) quantises each row for the second while the row is in L1, into a
  // per-thread row buffer: its f32 result is never written to memory and read back (2048 floats
  // a token for bge-small, 3072 for BERT-base; oneDNN 2.6's int8 kernels cannot take per-token
  // scales in their own epilogue). `intermediate` then holds the first GEMM's int32 sums (as
  // f32), not its GELU output. Other precisions: the two linears. linear() twice is the twin it
  // must equal bit for bit (tests/test_onednn.cpp).
  void feed_forward(const Linear& up, const Linear& down, const Matrix& in, Matrix& intermediate,
                    Matrix& out) const {
    if (up.precision != Precision::int8 || down.precision != Precision::int8 || in.rows() == 0) {
      linear(up, in, intermediate, Activation::gelu);
      linear(down, intermediate, out, Activation::none);
      return;
    }
    const int64_t rows = in.rows(), padded = gemm_rows(rows), width = up.out;
    thread_local AlignedVector<int8_t> s8_in, s8_mid;
    thread_local AlignedVector<float> in_scales, mid_scales, row_buffers;
    grow(s8_in, padded * up.in);
    grow(in_scales, rows);
    quantize_tokens(in.data(), rows, up.in, s8_in.data(), in_scales.data());
    intermediate.resize(padded, width);
    intermediate.resize(rows, width);
    int8_gemm(up, rows, s8_in.data(), intermediate);
    grow(s8_mid, padded * width);
    grow(mid_scales, rows);
    grow(row_buffers, omp_get_max_threads() * width);
    const float* acc = intermediate.data();
    const float* token_scales = in_scales.data();
    int8_t* quantized = s8_mid.data();
    float* quantized_scales = mid_scales.data();
    float* buffers = row_buffers.data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      float* y = buffers + omp_get_thread_num() * width;
      int8_epilogue_row(up, acc + r * width, token_scales[r], Activation::gelu, y);
      onednn_detail::quantize_row(y, width, quantized + r * width, quantized_scales + r);
    }
    out.resize(padded, down.out);
    out.resize(rows, down.out);
    int8_gemm(down, rows, s8_mid.data(), out);
    int8_epilogue(down, mid_scales.data(), Activation::none, out);
  }

  // x = LayerNorm(x + residual)
  void add_layernorm(const Norm& n, const Matrix& residual, Matrix& x) const {
    onednn_detail::layernorm_rows(x.data(), x.rows(), x.cols(), n.gamma.data(), n.beta.data(),
                                  n.eps, residual.data());
  }

  void layernorm(const Norm& n, Matrix& x) const {
    onednn_detail::layernorm_rows(x.data(), x.rows(), x.cols(), n.gamma.data(), n.beta.data(),
                                  n.eps);
  }

  // Multi-head attention: the fused kernel (flash_attention.hpp) where fused_attention()
  // says so and no probabilities are asked for; else the blocked version below.
  // Blocked: one sequence at a time, in blocks of query rows so that memory grows
  // with block x length, not length^2. Per block two batched oneDNN matmuls over the heads read
  // Q, K and V in place from the packed qkv rows (strided views, K transposed by its strides):
  // scores = Q K^T / sqrt(d), a row softmax in f32, then context = P V written straight into
  // place. In bf16 mode Q, K, V and P are bf16 (one conversion of qkv; P written by the
  // softmax): the strided matmuls run about twice as fast as in f32. probs (attribution) as in
  // CpuRefBackend, from the f32 softmax.
  void attention(const Matrix& qkv, const Batch& batch, int64_t num_heads, Matrix& context,
                 std::vector<float>* probs = nullptr) const {
    const int64_t hidden = qkv.cols() / 3, head_dim = hidden / num_heads, row_stride = qkv.cols();
    context.resize(qkv.rows(), hidden);
    if (probs) probs->clear();
    const bool bf16 = precision_ == Precision::bf16;
    if (const auto fused = probs ? std::nullopt : fused_attention(head_dim)) {
      flash::attention(qkv.data(), batch, num_heads, hidden, context.data(), *fused);
      return;
    }
    thread_local AlignedVector<float> scores;
    thread_local AlignedVector<Eigen::bfloat16> qkv_bf16, probs_bf16;
    const char* base = reinterpret_cast<const char*>(qkv.data());
    const int64_t element = bf16 ? 2 : 4;
    if (bf16) {
      grow(qkv_bf16, qkv.rows() * row_stride);
      onednn_detail::to_bf16_rows(qkv.data(), qkv.rows(), row_stride, qkv_bf16.data());
      base = reinterpret_cast<const char*>(qkv_bf16.data());
    }
    using onednn_detail::bind_memory;
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      const size_t prob_offset = probs ? probs->size() : 0;
      if (probs) probs->resize(prob_offset + static_cast<size_t>(num_heads * len * len));
      for (int64_t q0 = 0; q0 < len; q0 += query_block_) {
        const int64_t rows = std::min(query_block_, len - q0);
        const AttentionPrimitives& prim = attention_primitives(len, rows, num_heads, head_dim);
        grow(scores, num_heads * rows * len);
        if (bf16) grow(probs_bf16, num_heads * rows * len);
        const auto key = [&](int role) {
          return onednn_detail::MemoryKey{role + (bf16 ? 100 : 0), num_heads, head_dim, rows, len};
        };
        const auto at = [&](int64_t token, int64_t column) {
          return base + (token * row_stride + column) * element;
        };
        onednn_detail::execute(
            prim.scores,
            {{DNNL_ARG_SRC, bind_memory(
                                key(kQuery), [&] { return prim.q_md; }, at(begin + q0, 0))},
             {DNNL_ARG_WEIGHTS, bind_memory(
                                    key(kKeyT), [&] { return prim.kt_md; }, at(begin, hidden))},
             {DNNL_ARG_DST, bind_memory(
                                key(kScores), [&] { return prim.scores_md; }, scores.data())}});
        float* score_rows = scores.data();
        Eigen::bfloat16* prob_rows = probs_bf16.data();
        const int64_t total_rows = num_heads * rows;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < total_rows; ++r) {
          onednn_detail::ArrayMap row(score_rows + r * len, len);
          row = (row - row.maxCoeff()).exp();
          row /= row.sum();
          if (bf16)
            Eigen::Map<Eigen::Array<Eigen::bfloat16, Eigen::Dynamic, 1>>(prob_rows + r * len, len) =
                row.cast<Eigen::bfloat16>();
        }
        onednn_detail::execute(
            prim.context,
            {{DNNL_ARG_SRC, bind_memory(
                                key(kProbs), [&] { return prim.probs_md; },
                                bf16 ? static_cast<const void*>(prob_rows)
                                     : static_cast<const void*>(score_rows))},
             {DNNL_ARG_WEIGHTS, bind_memory(
                                    key(kValue), [&] { return prim.v_md; }, at(begin, 2 * hidden))},
             {DNNL_ARG_DST,
              bind_memory(
                  key(kContext), [&] { return prim.context_md; }, context.row(begin + q0))}});
        if (probs)
          for (int64_t h = 0; h < num_heads; ++h)
            for (int64_t i = 0; i < rows; ++i)
              std::copy(
                  score_rows + (h * rows + i) * len, score_rows + (h * rows + i + 1) * len,
                  probs->data() + prob_offset + static_cast<size_t>((h * len + q0 + i) * len));
      }
    }
  }

  void pool(const Matrix& hidden, const Batch& batch, Pooling pooling, Matrix& out) const {
    pool_rows(hidden, batch, pooling, out);
  }
  void gather_rows(const Matrix& in, std::span<const int64_t> rows, Matrix& out) const {
    tinybert::gather_rows(in, rows, out);
  }
  std::vector<float> to_host(const Matrix& m) const { return m.to_vector(); }
  void from_host(std::span<const float> values, int64_t rows, int64_t cols, Matrix& out) const {
    matrix_from_host(values, rows, cols, out);
  }

 private:
  // Roles of the per-thread memory objects (onednn_detail::bind_memory); a linear's source adds
  // its dtype to kLinearSrc, bf16 attention 100 to the attention roles.
  enum : int {
    kLinearDst = 1,
    kLinearBias,
    kQuery,
    kKeyT,
    kValue,
    kScores,
    kProbs,
    kContext,
    kLinearSrc = 1000
  };

  static const dnnl::engine& engine() { return onednn_detail::cpu_engine(); }

  dnnl::matmul::primitive_desc make_primitive_desc(const Linear& l, int64_t rows, Activation act,
                                                   const dnnl::memory::desc& weights_desc) const {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt src_type = l.precision == Precision::f32    ? dt::f32
                        : l.precision == Precision::bf16 ? dt::bf16
                                                         : dt::s8;
    dnnl::primitive_attr attr;
    if (act != Activation::none) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, onednn_detail::eltwise_of(act), 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    if (l.precision == Precision::int8) {
      // No output scales: our epilogue applies the per-channel weight scales with the per-token
      // ones. So the int8 primitives of equal shapes are equal, and oneDNN's primitive cache
      // shares one JIT-compiled kernel among all layers (less code memory, faster first call).
      const dnnl::matmul::desc d({{rows, l.in}, src_type, tag::ab}, weights_desc,
                                 {{rows, l.out}, dt::f32, tag::ab});
      return dnnl::matmul::primitive_desc(d, attr, engine());
    }
    const dnnl::matmul::desc d({{rows, l.in}, src_type, tag::ab}, weights_desc,
                               {{1, l.out}, dt::f32, tag::ab}, {{rows, l.out}, dt::f32, tag::ab});
    return dnnl::matmul::primitive_desc(d, attr, engine());
  }

  const dnnl::matmul& primitive(const Linear& l, int64_t rows, Activation act) const {
    std::lock_guard<std::mutex> lock(*l.mutex);
    auto it = l.primitives.find({rows, act});
    if (it == l.primitives.end())
      it = l.primitives
               .emplace(Linear::Key{rows, act},
                        dnnl::matmul(make_primitive_desc(l, rows, act, l.weights_desc)))
               .first;
    return it->second;
  }

  // out[rows, l.out] = the int32 sums of the int8 GEMM of src (padded to gemm_rows(rows), the
  // padding rows' contents anything) and l's weights, as f32; out has room for the padding rows.
  void int8_gemm(const Linear& l, int64_t rows, const int8_t* src, Matrix& out) const {
    using dt = dnnl::memory::data_type;
    using onednn_detail::bind_memory;
    using onednn_detail::plain_desc;
    const int64_t padded = gemm_rows(rows);
    const dnnl::matmul& prim = primitive(l, padded, Activation::none);
    dnnl_memory_t src_memory = bind_memory(
        {kLinearSrc + static_cast<int>(dt::s8), padded, l.in, 0, 0},
        [&] { return plain_desc(padded, l.in, dt::s8); }, src);
    dnnl_memory_t dst = bind_memory(
        {kLinearDst, padded, l.out, 0, 0}, [&] { return plain_desc(padded, l.out, dt::f32); },
        out.data());
    onednn_detail::execute(
        prim,
        {{DNNL_ARG_SRC, src_memory}, {DNNL_ARG_WEIGHTS, l.weights.get()}, {DNNL_ARG_DST, dst}});
  }

  // The int8 epilogue, in place: out = act(sums x weight scale per column x token scale per row
  // + bias).
  static void int8_epilogue(const Linear& l, const float* token_scales, Activation act,
                            Matrix& out) {
    float* y = out.data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out.rows(); ++r)
      int8_epilogue_row(l, y + r * l.out, token_scales[r], act, y + r * l.out);
  }

  // One row of it: y = act(sums x weight scales x token_scale + bias); y may be sums.
  static void int8_epilogue_row(const Linear& l, const float* sums, float token_scale,
                                Activation act, float* y) {
    const int64_t width = l.out;
    onednn_detail::ArrayMap(y, width) =
        Eigen::Map<const Eigen::ArrayXf>(sums, width) *
            Eigen::Map<const Eigen::ArrayXf>(l.weight_scales.data(), width) * token_scale +
        Eigen::Map<const Eigen::ArrayXf>(l.bias.data(), width);
    onednn_detail::apply_activation(act, y, width);
  }

  // Symmetric per-token int8 (one scale per row).
  static void quantize_tokens(const float* x, int64_t rows, int64_t cols, int8_t* q,
                              float* scales) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      onednn_detail::quantize_row(x + r * cols, cols, q + r * cols, scales + r);
  }

  struct AttentionPrimitives {
    dnnl::memory::desc q_md, kt_md, v_md, scores_md, probs_md, context_md;
    dnnl::matmul scores, context;
  };

  // The two matmuls of one (sequence length, query block) shape; all strides follow from the
  // packed [tokens, 3 * hidden] qkv layout.
  const AttentionPrimitives& attention_primitives(int64_t len, int64_t rows, int64_t heads,
                                                  int64_t head_dim) const {
    std::lock_guard<std::mutex> lock(*attention_mutex_);
    // the head count and size are baked into the descriptors: one backend may serve models of
    // different shapes
    const AttentionShape shape{len, rows, heads, head_dim};
    auto it = attention_cache_.find(shape);
    if (it != attention_cache_.end()) return it->second;
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const int64_t hidden = heads * head_dim, row_stride = 3 * hidden;
    const dt type = precision_ == Precision::bf16 ? dt::bf16 : dt::f32;  // of Q, K, V and P
    AttentionPrimitives p;
    p.q_md = dnnl::memory::desc(dims{heads, rows, head_dim}, type, dims{head_dim, row_stride, 1});
    p.kt_md = dnnl::memory::desc(dims{heads, head_dim, len}, type, dims{head_dim, 1, row_stride});
    p.v_md = dnnl::memory::desc(dims{heads, len, head_dim}, type, dims{head_dim, row_stride, 1});
    p.scores_md = dnnl::memory::desc(dims{heads, rows, len}, dt::f32, dims{rows * len, len, 1});
    p.probs_md = dnnl::memory::desc(dims{heads, rows, len}, type, dims{rows * len, len, 1});
    p.context_md =
        dnnl::memory::desc(dims{heads, rows, head_dim}, dt::f32, dims{head_dim, hidden, 1});
    dnnl::primitive_attr scale;
    scale.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(head_dim))});
    p.scores = dnnl::matmul(dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(p.q_md, p.kt_md, p.scores_md), scale, engine()));
    p.context = dnnl::matmul(dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(p.probs_md, p.v_md, p.context_md), engine()));
    return attention_cache_.emplace(shape, std::move(p)).first->second;
  }

  // Whether oneDNN can create a matmul of this precision here (a tiny probe, once).
  bool precision_supported(Precision p) const {
    try {
      Linear probe;
      probe.precision = p;
      probe.in = probe.out = 16;
      using dt = dnnl::memory::data_type;
      const dt weight_type = p == Precision::bf16 ? dt::bf16 : dt::s8;
      make_primitive_desc(probe, 16, Activation::none,
                          dnnl::memory::desc({16, 16}, weight_type, dnnl::memory::format_tag::any));
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }

  Precision precision_;
  std::string int8_dot_product_;  // "VNNI", "SDOT", "SDOT, I8MM" or "" (none)
  bool amx_allowed_ = false;      // oneDNN's ISA (and ONEDNN_MAX_CPU_ISA) includes AMX
  std::string fallback_reason_;
  int64_t query_block_;
  AttentionKernel attention_kernel_;
  struct AttentionShape {
    int64_t len, rows, heads, head_dim;
    auto operator<=>(const AttentionShape&) const = default;
  };
  mutable std::map<AttentionShape, AttentionPrimitives> attention_cache_;
  mutable std::unique_ptr<std::mutex> attention_mutex_ = std::make_unique<std::mutex>();
};

static_assert(Backend<OneDnnBackend>);
static_assert(FusedFeedForward<OneDnnBackend>);  // else Encoder would quietly call linear() twice

}  // namespace tinybert
