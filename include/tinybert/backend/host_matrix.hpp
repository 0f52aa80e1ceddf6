// HostMatrix (row-major float activations in CPU memory) and the GEMM epilogue activations,
// shared by the CPU backends.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tinybert/backend/aligned_vector.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/config.hpp"
#include "tinybert/error.hpp"

namespace tinybert {

enum class Activation { none, gelu, tanh, sigmoid };

// A row-major float matrix whose storage only grows, so a Workspace sized once does no
// allocation on the hot path.
class HostMatrix {
 public:
  void resize(int64_t rows, int64_t cols) {
    rows_ = rows;
    cols_ = cols;
    if (static_cast<size_t>(rows * cols) > storage_.size())
      storage_.resize(static_cast<size_t>(rows * cols));
  }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  float* data() { return storage_.data(); }
  const float* data() const { return storage_.data(); }
  float* row(int64_t r) { return data() + r * cols_; }
  const float* row(int64_t r) const { return data() + r * cols_; }
  std::vector<float> to_vector() const { return {data(), data() + rows_ * cols_}; }

 private:
  AlignedVector<float> storage_;  // cache-line aligned: GEMMs read and write it
  int64_t rows_ = 0, cols_ = 0;
};

// out[s] = the [CLS] row of sequence s, or the mean of its rows.
inline void pool_rows(const HostMatrix& hidden, const Batch& batch, Pooling pooling,
                      HostMatrix& out) {
  const int64_t width = hidden.cols();
  out.resize(batch.num_sequences(), width);
  for (int64_t s = 0; s < batch.num_sequences(); ++s) {
    float* dst = out.row(s);
    const float* first = hidden.row(batch.seq_begin(s));
    std::copy(first, first + width, dst);
    if (pooling == Pooling::mean) {
      for (int64_t t = 1; t < batch.seq_len(s); ++t) {
        const float* src = hidden.row(batch.seq_begin(s) + t);
        for (int64_t c = 0; c < width; ++c) dst[c] += src[c];
      }
      const float inverse = 1.0f / static_cast<float>(batch.seq_len(s));
      for (int64_t c = 0; c < width; ++c) dst[c] *= inverse;
    }
  }
}

inline void matrix_from_host(std::span<const float> values, int64_t rows, int64_t cols,
                             HostMatrix& out) {
  if (static_cast<int64_t>(values.size()) != rows * cols)
    throw Error("from_host: " + std::to_string(values.size()) + " values for [" +
                std::to_string(rows) + ", " + std::to_string(cols) + "]");
  out.resize(rows, cols);
  std::copy(values.begin(), values.end(), out.data());
}

inline void gather_rows(const HostMatrix& in, std::span<const int64_t> rows, HostMatrix& out) {
  out.resize(static_cast<int64_t>(rows.size()), in.cols());
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy(in.row(rows[i]), in.row(rows[i]) + in.cols(), out.row(static_cast<int64_t>(i)));
}

}  // namespace tinybert
