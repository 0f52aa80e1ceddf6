// The fast CPU backend: GEMMs through oneDNN (fp32, bf16 or int8, AMX/AVX-512 picked by oneDNN at
// run time) with weights packed once at load; our own multi-threaded LayerNorm, embedding gather
// and blocked attention over packed variable-length batches. Threads: OpenMP, the pool oneDNN
// itself uses, so nothing is oversubscribed. Link tinybert::onednn.
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <unsupported/Eigen/SpecialFunctions>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "tinybert/backend/host_matrix.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/model.hpp"
#include "tinybert/quantize.hpp"
#include "tinybert/weights_f32.hpp"

namespace tinybert {

enum class Precision { f32, bf16, int8 };

inline const char* precision_name(Precision p) {
  switch (p) {
    case Precision::f32: return "f32";
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
  }
  return "?";
}

inline Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::f32, Precision::bf16, Precision::int8})
    if (name == precision_name(p)) return p;
  throw Error("unknown precision '" + name + "' (expected f32, bf16 or int8)");
}

namespace onednn_detail {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

// The int8 epilogue's activations on one row, vectorised by Eigen (erf, tanh and exp have
// AVX-512 packet versions; scalar libm calls here cost as much as the GEMM).
inline void apply_activation(Activation act, float* x, int64_t n) {
  ArrayMap v(x, n);
  switch (act) {
    case Activation::none: return;
    case Activation::gelu: v = 0.5f * v * (1.0f + (v * 0.70710678118654752f).erf()); return;
    case Activation::tanh: v = v.tanh(); return;
    case Activation::sigmoid: v = 1.0f / (1.0f + (-v).exp()); return;
  }
}

inline dnnl::algorithm eltwise_of(Activation act) {
  switch (act) {
    case Activation::gelu: return dnnl::algorithm::eltwise_gelu_erf;
    case Activation::tanh: return dnnl::algorithm::eltwise_tanh;
    case Activation::sigmoid: return dnnl::algorithm::eltwise_logistic;
    case Activation::none: break;
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
      for (int64_t c = 0; c < width; ++c) out[c] += f16_to_f32(load_le<uint16_t>(raw + 2 * (index * width + c)));
      return;
    case DType::bf16:
      for (int64_t c = 0; c < width; ++c) out[c] += bf16_to_f32(load_le<uint16_t>(raw + 2 * (index * width + c)));
      return;
    case DType::i8: {
      const auto* row = reinterpret_cast<const int8_t*>(raw) + index * width;
      const float scale = table.row_scales[index];
      for (int64_t c = 0; c < width; ++c) out[c] += static_cast<float>(row[c]) * scale;
      return;
    }
    case DType::u8: throw Error("u8 embedding table");
  }
}

// Row-wise LayerNorm in place, over all rows in parallel (Eigen reductions vectorise; plain
// float loops would not without -ffast-math).
inline void layernorm_rows(float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta, float eps) {
  const Eigen::Map<const Eigen::ArrayXf> g(gamma, cols), b(beta, cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    ArrayMap v(x + r * cols, cols);
    const float mean = v.mean();
    v -= mean;
    const float inv_std = 1.0f / std::sqrt(v.square().mean() + eps);
    v = v * inv_std * g + b;
  }
}

// Symmetric per-token int8, vectorised: q = rint(x * 127 / max|x|).
inline void quantize_row(const float* x, int64_t cols, int8_t* q, float* scale) {
  const Eigen::Map<const Eigen::ArrayXf> v(x, cols);
  const float max_abs = v.abs().maxCoeff();
  *scale = max_abs > 0 ? max_abs / 127.0f : 1.0f;
  Eigen::Map<Eigen::Array<int8_t, Eigen::Dynamic, 1>>(q, cols) =
      (v * (1.0f / *scale)).rint().max(-127.0f).min(127.0f).cast<int32_t>().cast<int8_t>();
}

}  // namespace onednn_detail

class OneDnnBackend {
 public:
  using Matrix = HostMatrix;

  // query_block: attention processes this many query rows at a time (memory ~ block x length).
  // A precision the CPU (or ONEDNN_MAX_CPU_ISA) cannot run falls back to f32; fallback_reason()
  // says why.
  explicit OneDnnBackend(Precision precision = Precision::f32, int64_t query_block = 128)
      : precision_(precision),
        query_block_(std::max<int64_t>(query_block, 1)),
        engine_(std::make_shared<dnnl::engine>(dnnl::engine::kind::cpu, 0)) {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto has = [&](dnnl_cpu_isa_t bits) { return (isa & static_cast<unsigned>(bits)) == static_cast<unsigned>(bits); };
    has_vnni_ = has(dnnl_cpu_isa_avx512_core_vnni) || has(dnnl_cpu_isa_avx2_vnni);
    if (precision_ != Precision::f32 && !precision_supported(precision_)) {
      fallback_reason_ = std::string(precision_name(precision_)) + " matmul is not available on this CPU / ISA limit; using f32";
      precision_ = Precision::f32;
    }
  }

  // The precision in use (after any fallback), and why it differs from the one asked for.
  Precision precision() const { return precision_; }
  const std::string& fallback_reason() const { return fallback_reason_; }
  // Without VNNI, int8 weights use 7 bits so that oneDNN's 16-bit pair sums cannot saturate.
  int int8_weight_levels() const { return has_vnni_ ? 127 : 63; }

  // A Linear layer packed for oneDNN. Primitives are created per number of rows M on first use
  // and kept (a server sees a handful of distinct batch shapes).
  struct Linear {
    Precision precision = Precision::f32;
    int64_t in = 0, out = 0;
    dnnl::memory weights;            // packed [in, out] in oneDNN's preferred layout
    dnnl::memory::desc weights_desc;
    std::vector<float> bias;         // [out]
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
    // Tiny projections (UIE start/end, classifiers) stay fp32: no speed to gain, only accuracy to lose.
    l.precision = l.out < 16 ? Precision::f32 : precision_;
    const dt weight_type = l.precision == Precision::f32 ? dt::f32 : l.precision == Precision::bf16 ? dt::bf16 : dt::s8;
    const dnnl::memory::dims weight_dims = {l.in, l.out};
    l.weights_desc = make_primitive_desc(l, 128, Activation::none, dnnl::memory::desc(weight_dims, weight_type, dnnl::memory::format_tag::any))
                         .weights_desc();

    // The stored [out, in] row-major matrix is oneDNN's [in, out] in "ba" order.
    std::vector<float> f32;
    std::vector<int8_t> s8;
    dnnl::memory plain;
    if (l.precision == Precision::int8) {
      const int levels = int8_weight_levels();
      const auto* stored = w.weight.values.as<int8_t>();
      const bool fits = w.weight.values.dtype == DType::i8 &&
                        std::all_of(stored, stored + w.weight.values.numel(), [&](int8_t q) { return std::abs(q) <= levels; });
      if (fits) {  // already int8 (e.g. the bge ONNX) within this CPU's range: use as stored
        s8.assign(stored, stored + w.weight.values.numel());
        l.weight_scales.assign(w.weight.row_scales, w.weight.row_scales + l.out);
      } else {
        f32 = dequantize(w.weight);
        s8.resize(f32.size());
        l.weight_scales.resize(static_cast<size_t>(l.out));
        quantize_rows_symmetric(f32.data(), l.out, l.in, s8.data(), l.weight_scales.data(), levels);
      }
      plain = dnnl::memory({weight_dims, dt::s8, dnnl::memory::format_tag::ba}, *engine_, s8.data());
    } else {
      f32 = dequantize(w.weight);
      plain = dnnl::memory({weight_dims, dt::f32, dnnl::memory::format_tag::ba}, *engine_, f32.data());
    }
    l.weights = dnnl::memory(l.weights_desc, *engine_);
    dnnl::stream stream(*engine_);
    dnnl::reorder(plain, l.weights).execute(stream, plain, l.weights);
    stream.wait();
    return l;
  }
  Norm prepare(const NormWeights& w, float eps) const { return {dequantize(w.gamma), dequantize(w.beta), eps}; }
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
        onednn_detail::add_table_row(e.position, pos, row);
        onednn_detail::add_table_row(e.token_type, batch.token_type_ids[t], row);
        if (e.task_type) onednn_detail::add_table_row(*e.task_type, batch.task_type_ids[t], row);
      }
    }
    layernorm(e.norm, out);
  }

  // out = activation(in @ W^T + b)
  void linear(const Linear& l, const Matrix& in, Matrix& out, Activation act = Activation::none) const {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const int64_t rows = in.rows();
    out.resize(rows, l.out);
    if (rows == 0) return;
    const bool int8 = l.precision == Precision::int8;
    // int8 applies the per-token scale, bias and activation itself after the GEMM
    const dnnl::matmul& prim = primitive(l, rows, int8 ? Activation::none : act);
    // Scratch of the calling thread; the OpenMP loops below must use raw pointers into it, since
    // inside a parallel region a thread_local name would mean each worker's own copy.
    thread_local std::vector<uint16_t> bf16_src;
    thread_local std::vector<int8_t> s8_src;
    thread_local std::vector<float> token_scales;
    dnnl::memory src;
    if (l.precision == Precision::f32) {
      src = dnnl::memory({{rows, l.in}, dt::f32, tag::ab}, *engine_, const_cast<float*>(in.data()));
    } else if (l.precision == Precision::bf16) {
      bf16_src.resize(static_cast<size_t>(rows * l.in));
      auto* converted = reinterpret_cast<Eigen::bfloat16*>(bf16_src.data());
      const int64_t cols = l.in;
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r)  // Eigen's vectorised round-to-nearest-even conversion
        Eigen::Map<Eigen::Array<Eigen::bfloat16, Eigen::Dynamic, 1>>(converted + r * cols, cols) =
            Eigen::Map<const Eigen::ArrayXf>(in.row(r), cols).cast<Eigen::bfloat16>();
      src = dnnl::memory({{rows, l.in}, dt::bf16, tag::ab}, *engine_, bf16_src.data());
    } else {
      s8_src.resize(static_cast<size_t>(rows * l.in));
      token_scales.resize(static_cast<size_t>(rows));
      quantize_tokens(in.data(), rows, l.in, s8_src.data(), token_scales.data());
      src = dnnl::memory({{rows, l.in}, dt::s8, tag::ab}, *engine_, s8_src.data());
    }
    dnnl::memory dst({{rows, l.out}, dt::f32, tag::ab}, *engine_, out.data());
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, l.weights}, {DNNL_ARG_DST, dst}};
    if (!int8)
      args[DNNL_ARG_BIAS] = dnnl::memory({{1, l.out}, dt::f32, tag::ab}, *engine_, const_cast<float*>(l.bias.data()));
    dnnl::stream stream(*engine_);
    prim.execute(stream, args);
    stream.wait();
    if (int8) {
      float* y = out.data();
      const float* bias = l.bias.data();
      const int64_t cols = l.out;
      const float* row_scales = token_scales.data();
      const Eigen::Map<const Eigen::ArrayXf> bias_row(bias, cols);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        onednn_detail::ArrayMap row(y + r * cols, cols);
        row = row * row_scales[r] + bias_row;
        onednn_detail::apply_activation(act, row.data(), cols);
      }
    }
  }

  // x = LayerNorm(x + residual)
  void add_layernorm(const Norm& n, const Matrix& residual, Matrix& x) const {
    const int64_t cols = x.cols();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < x.rows(); ++r) {
      onednn_detail::ArrayMap row(x.row(r), cols);
      row += Eigen::Map<const Eigen::ArrayXf>(residual.row(r), cols);
    }
    layernorm(n, x);
  }

  void layernorm(const Norm& n, Matrix& x) const {
    onednn_detail::layernorm_rows(x.data(), x.rows(), x.cols(), n.gamma.data(), n.beta.data(), n.eps);
  }

  // Multi-head attention, one sequence at a time, in blocks of query rows so that memory grows
  // with block x length, not length^2. Per block two batched oneDNN matmuls over the heads read
  // Q, K and V in place from the packed qkv rows (strided views, K transposed by its strides):
  // scores = Q K^T / sqrt(d), a row softmax, then context = P V written straight into place.
  // probs (attribution) as in CpuRefBackend.
  void attention(const Matrix& qkv, const Batch& batch, int64_t num_heads, Matrix& context,
                 std::vector<float>* probs = nullptr) const {
    const int64_t hidden = qkv.cols() / 3, head_dim = hidden / num_heads;
    context.resize(qkv.rows(), hidden);
    if (probs) probs->clear();
    thread_local std::vector<float> scores;
    dnnl::stream stream(*engine_);
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      const size_t prob_offset = probs ? probs->size() : 0;
      if (probs) probs->resize(prob_offset + static_cast<size_t>(num_heads * len * len));
      for (int64_t q0 = 0; q0 < len; q0 += query_block_) {
        const int64_t rows = std::min(query_block_, len - q0);
        const AttentionPrimitives& prim = attention_primitives(len, rows, num_heads, head_dim);
        scores.resize(static_cast<size_t>(num_heads * rows * len));
        float* base = const_cast<float*>(qkv.data());
        const auto view = [&](const dnnl::memory::desc& md, float* p) { return dnnl::memory(md, *engine_, p); };
        prim.scores.execute(stream, {{DNNL_ARG_SRC, view(prim.q_md, base + (begin + q0) * qkv.cols())},
                                     {DNNL_ARG_WEIGHTS, view(prim.kt_md, base + begin * qkv.cols() + hidden)},
                                     {DNNL_ARG_DST, view(prim.scores_md, scores.data())}});
        stream.wait();
        float* score_rows = scores.data();
        const int64_t total_rows = num_heads * rows;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < total_rows; ++r) {
          onednn_detail::ArrayMap row(score_rows + r * len, len);
          row = (row - row.maxCoeff()).exp();
          row /= row.sum();
        }
        prim.context.execute(stream, {{DNNL_ARG_SRC, view(prim.scores_md, scores.data())},
                                      {DNNL_ARG_WEIGHTS, view(prim.v_md, base + begin * qkv.cols() + 2 * hidden)},
                                      {DNNL_ARG_DST, view(prim.context_md, context.row(begin + q0))}});
        stream.wait();
        if (probs)
          for (int64_t h = 0; h < num_heads; ++h)
            for (int64_t i = 0; i < rows; ++i)
              std::copy(score_rows + (h * rows + i) * len, score_rows + (h * rows + i + 1) * len,
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

 private:
  dnnl::matmul::primitive_desc make_primitive_desc(const Linear& l, int64_t rows, Activation act,
                                                   const dnnl::memory::desc& weights_desc) const {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt src_type = l.precision == Precision::f32 ? dt::f32 : l.precision == Precision::bf16 ? dt::bf16 : dt::s8;
    dnnl::primitive_attr attr;
    if (act != Activation::none) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, onednn_detail::eltwise_of(act), 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    if (l.precision == Precision::int8) {
      attr.set_output_scales(1 << 1, l.weight_scales.empty() ? std::vector<float>(static_cast<size_t>(l.out), 1.0f)
                                                             : l.weight_scales);
      const dnnl::matmul::desc d({{rows, l.in}, src_type, tag::ab}, weights_desc, {{rows, l.out}, dt::f32, tag::ab});
      return dnnl::matmul::primitive_desc(d, attr, *engine_);
    }
    const dnnl::matmul::desc d({{rows, l.in}, src_type, tag::ab}, weights_desc, {{1, l.out}, dt::f32, tag::ab},
                               {{rows, l.out}, dt::f32, tag::ab});
    return dnnl::matmul::primitive_desc(d, attr, *engine_);
  }

  const dnnl::matmul& primitive(const Linear& l, int64_t rows, Activation act) const {
    std::lock_guard<std::mutex> lock(*l.mutex);
    auto it = l.primitives.find({rows, act});
    if (it == l.primitives.end())
      it = l.primitives.emplace(Linear::Key{rows, act}, dnnl::matmul(make_primitive_desc(l, rows, act, l.weights_desc))).first;
    return it->second;
  }

  // Symmetric per-token int8 (one scale per row).
  static void quantize_tokens(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scales) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) onednn_detail::quantize_row(x + r * cols, cols, q + r * cols, scales + r);
  }

  struct AttentionPrimitives {
    dnnl::memory::desc q_md, kt_md, v_md, scores_md, context_md;
    dnnl::matmul scores, context;
  };

  // The two matmuls of one (sequence length, query block) shape; all strides follow from the
  // packed [tokens, 3 * hidden] qkv layout.
  const AttentionPrimitives& attention_primitives(int64_t len, int64_t rows, int64_t heads, int64_t head_dim) const {
    std::lock_guard<std::mutex> lock(*attention_mutex_);
    auto it = attention_cache_.find({len, rows});
    if (it != attention_cache_.end()) return it->second;
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const int64_t hidden = heads * head_dim, row_stride = 3 * hidden;
    AttentionPrimitives p;
    p.q_md = dnnl::memory::desc(dims{heads, rows, head_dim}, dt::f32, dims{head_dim, row_stride, 1});
    p.kt_md = dnnl::memory::desc(dims{heads, head_dim, len}, dt::f32, dims{head_dim, 1, row_stride});
    p.v_md = dnnl::memory::desc(dims{heads, len, head_dim}, dt::f32, dims{head_dim, row_stride, 1});
    p.scores_md = dnnl::memory::desc(dims{heads, rows, len}, dt::f32, dims{rows * len, len, 1});
    p.context_md = dnnl::memory::desc(dims{heads, rows, head_dim}, dt::f32, dims{head_dim, hidden, 1});
    dnnl::primitive_attr scale;
    scale.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(head_dim))});
    p.scores = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p.q_md, p.kt_md, p.scores_md), scale, *engine_));
    p.context = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p.scores_md, p.v_md, p.context_md), *engine_));
    return attention_cache_.emplace(std::make_pair(len, rows), std::move(p)).first->second;
  }

  // Whether oneDNN can create a matmul of this precision here (a tiny probe, once).
  bool precision_supported(Precision p) const {
    try {
      Linear probe;
      probe.precision = p;
      probe.in = probe.out = 16;
      using dt = dnnl::memory::data_type;
      const dt weight_type = p == Precision::bf16 ? dt::bf16 : dt::s8;
      make_primitive_desc(probe, 16, Activation::none, dnnl::memory::desc({16, 16}, weight_type, dnnl::memory::format_tag::any));
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }

  Precision precision_;
  bool has_vnni_ = false;
  std::string fallback_reason_;
  int64_t query_block_;
  std::shared_ptr<dnnl::engine> engine_;
  mutable std::map<std::pair<int64_t, int64_t>, AttentionPrimitives> attention_cache_;
  mutable std::unique_ptr<std::mutex> attention_mutex_ = std::make_unique<std::mutex>();
};

}  // namespace tinybert
