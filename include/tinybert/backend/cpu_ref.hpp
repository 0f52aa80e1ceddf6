// The fp32 reference backend: plain Eigen, obviously right. It is the spec the fast backends
// are tested against, so it favours clarity (and double accumulation in LayerNorm) over speed.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <span>
#include <vector>

#include "tinybert/backend/backend.hpp"
#include "tinybert/backend/host_matrix.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/model.hpp"
#include "tinybert/weights_f32.hpp"

namespace tinybert {

class CpuRefBackend {
 public:
  using Matrix = HostMatrix;
  using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MatrixMap = Eigen::Map<RowMajorMatrix>;
  using ConstMatrixMap = Eigen::Map<const RowMajorMatrix>;

  struct Linear {
    RowMajorMatrix weight;  // [out, in]
    Eigen::VectorXf bias;   // [out]
  };
  struct Norm {
    std::vector<float> gamma, beta;
    float eps = 1e-12f;
  };
  struct Table {
    RowMajorMatrix rows;  // [num_rows, hidden]
  };
  struct Embeddings {
    Table word, position, token_type;
    std::optional<Table> task_type;
    Norm norm;
  };

  std::string name() const { return "ref"; }

  // ---- weight preparation (once, at load) ----
  Linear prepare(const LinearWeights& w) const {
    Linear linear;
    linear.weight = ConstMatrixMap(dequantize(w.weight).data(), w.weight.rows(), w.weight.cols());
    const std::vector<float> bias = dequantize(w.bias);
    linear.bias =
        Eigen::Map<const Eigen::VectorXf>(bias.data(), static_cast<Eigen::Index>(bias.size()));
    return linear;
  }
  Norm prepare(const NormWeights& w, float eps) const {
    return {dequantize(w.gamma), dequantize(w.beta), eps};
  }
  Table prepare_table(const Weight& w) const {
    return {ConstMatrixMap(dequantize(w).data(), w.rows(), w.cols())};
  }
  Embeddings prepare(const EmbeddingWeights& w, float eps) const {
    Embeddings e{prepare_table(w.word), prepare_table(w.position), prepare_table(w.token_type),
                 std::nullopt, prepare(w.norm, eps)};
    if (w.task_type) e.task_type = prepare_table(*w.task_type);
    return e;
  }

  // ---- ops ----
  // out[t] = LayerNorm(word[id] + position[pos] + token_type[type] (+ task_type[task]))
  void embed(const Embeddings& e, const Batch& batch, Matrix& out) const {
    const int64_t hidden = e.word.rows.cols();
    out.resize(batch.num_tokens(), hidden);
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      for (int64_t pos = 0; pos < batch.seq_len(s); ++pos) {
        const int64_t t = batch.seq_begin(s) + pos;
        MatrixMap row(out.row(t), 1, hidden);
        row = e.word.rows.row(batch.input_ids[t]) + e.position.rows.row(batch.position(s, pos)) +
              e.token_type.rows.row(batch.token_type_ids[t]);
        if (e.task_type) row += e.task_type->rows.row(batch.task_type_ids[t]);
      }
    }
    layernorm(e.norm, out);
  }

  // out = activation(in @ W^T + b)
  void linear(const Linear& l, const Matrix& in, Matrix& out,
              Activation act = Activation::none) const {
    out.resize(in.rows(), l.weight.rows());
    MatrixMap result(out.data(), out.rows(), out.cols());
    result.noalias() = ConstMatrixMap(in.data(), in.rows(), in.cols()) * l.weight.transpose();
    result.rowwise() += l.bias.transpose();
    apply(act, out.data(), out.rows() * out.cols());
  }

  // x = LayerNorm(x + residual)
  void add_layernorm(const Norm& n, const Matrix& residual, Matrix& x) const {
    MatrixMap(x.data(), x.rows(), x.cols()) +=
        ConstMatrixMap(residual.data(), residual.rows(), residual.cols());
    layernorm(n, x);
  }

  void layernorm(const Norm& n, Matrix& x) const {
    for (int64_t r = 0; r < x.rows(); ++r) {
      float* v = x.row(r);
      double mean = 0, var = 0;
      for (int64_t c = 0; c < x.cols(); ++c) mean += v[c];
      mean /= static_cast<double>(x.cols());
      for (int64_t c = 0; c < x.cols(); ++c) var += (v[c] - mean) * (v[c] - mean);
      var /= static_cast<double>(x.cols());
      const double inv_std = 1.0 / std::sqrt(var + n.eps);
      for (int64_t c = 0; c < x.cols(); ++c)
        v[c] = static_cast<float>((v[c] - mean) * inv_std) * n.gamma[c] + n.beta[c];
    }
  }

  // Multi-head self-attention over a packed batch. qkv rows are [q | k | v], each num_heads x
  // head_dim. Each sequence attends only to itself, so no mask and no padding are needed.
  // If probs is given, the attention probabilities are written there: for sequence s, head h,
  // query i, key j at probs[prob_offset(s) + (h * len + i) * len + j].
  void attention(const Matrix& qkv, const Batch& batch, int64_t num_heads, Matrix& context,
                 std::vector<float>* probs = nullptr) const {
    const int64_t hidden = qkv.cols() / 3, head_dim = hidden / num_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    context.resize(qkv.rows(), hidden);
    if (probs) probs->clear();
    RowMajorMatrix scores;
    for (int64_t s = 0; s < batch.num_sequences(); ++s) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      for (int64_t h = 0; h < num_heads; ++h) {
        using Strided = Eigen::Map<const RowMajorMatrix, 0, Eigen::OuterStride<>>;
        const Eigen::OuterStride<> stride(qkv.cols());
        Strided q(qkv.row(begin) + h * head_dim, len, head_dim, stride);
        Strided k(qkv.row(begin) + hidden + h * head_dim, len, head_dim, stride);
        Strided v(qkv.row(begin) + 2 * hidden + h * head_dim, len, head_dim, stride);
        scores.noalias() = (q * k.transpose()) * scale;
        for (int64_t i = 0; i < len; ++i) {
          auto row = scores.row(i);
          row = (row.array() - row.maxCoeff()).exp();
          row /= row.sum();
        }
        Eigen::Map<RowMajorMatrix, 0, Eigen::OuterStride<>> out(
            context.row(begin) + h * head_dim, len, head_dim, Eigen::OuterStride<>(hidden));
        out.noalias() = scores * v;
        if (probs) probs->insert(probs->end(), scores.data(), scores.data() + len * len);
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
  static void apply(Activation act, float* x, int64_t n) {
    switch (act) {
      case Activation::none:
        return;
      case Activation::gelu:  // exact erf GELU, as BERT uses
        for (int64_t i = 0; i < n; ++i)
          x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
        return;
      case Activation::tanh:
        for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
        return;
      case Activation::sigmoid:
        for (int64_t i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + std::exp(-x[i]));
        return;
    }
  }
};
static_assert(Backend<CpuRefBackend>);

}  // namespace tinybert
