// Helpers of the CUDA tests: a visible skip without a GPU, random inputs rounded the way the
// device stores them, error metrics, and weights built from host vectors.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "tinybert/backend/cuda.hpp"
#include "tinybert/model.hpp"

namespace tinybert::test {

// [cuda] cases need a GPU; without one the whole run reports a skip (CTest exit code 4).
inline void require_gpu() {
  if (auto reason = cuda_unavailable_reason()) skip(*reason);
}

inline std::vector<float> random_normal(size_t n, std::mt19937& rng, float stddev = 1.0f,
                                        float mean = 0.0f) {
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// The values as the device holds them in `element` (f16 or bf16; f32 unchanged).
inline std::vector<float> rounded(std::vector<float> v, DType element) {
  for (auto& x : v) {
    if (element == DType::f16) x = f16_to_f32(f32_to_f16(x));
    if (element == DType::bf16) x = bf16_to_f32(f32_to_bf16(x));
  }
  return v;
}

struct Errors {
  double max_abs = 0, nmse = 0, max_ref = 0;
  bool finite = true;  // every value was written (poisoned buffers read back as NaN)
};

inline Errors compare(const std::vector<float>& got, const std::vector<float>& want) {
  Errors e;
  if (got.size() != want.size()) {
    e.finite = false;
    return e;
  }
  double err = 0, ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) e.finite = false;
    const double d = double(got[i]) - double(want[i]);
    e.max_abs = std::max(e.max_abs, std::fabs(d));
    e.max_ref = std::max(e.max_ref, std::fabs(double(want[i])));
    err += d * d;
    ref += double(want[i]) * want[i];
  }
  e.nmse = ref > 0 ? err / ref : err;
  return e;
}

// Smallest cosine between corresponding rows of width `width`.
inline double worst_row_cosine(const std::vector<float>& a, const std::vector<float>& b,
                               int64_t width) {
  double worst = 1;
  for (size_t r = 0; r + width <= a.size() && r + width <= b.size(); r += width) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t c = 0; c < width; ++c) {
      dot += double(a[r + c]) * b[r + c];
      na += double(a[r + c]) * a[r + c];
      nb += double(b[r + c]) * b[r + c];
    }
    const double cosine = na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : (na == nb ? 1.0 : 0.0);
    worst = std::min(worst, std::isfinite(cosine) ? cosine : -1.0);
  }
  return worst;
}

// A Weight viewing host floats (which must outlive it).
inline Weight f32_weight(const std::vector<float>& values, Shape shape) {
  return Weight{TensorView{DType::f32, std::move(shape), values.data()}, nullptr};
}

// A batch of random token ids with these sequence lengths.
inline Batch random_batch(const std::vector<int64_t>& lengths, int32_t vocab, int32_t types,
                          int32_t tasks, std::mt19937& rng) {
  Batch batch;
  for (int64_t length : lengths) {
    std::vector<int32_t> ids(static_cast<size_t>(length)), type_ids(ids.size()),
        task_ids(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
      type_ids[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(types));
      task_ids[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(tasks));
    }
    batch.add(ids, type_ids, task_ids);
  }
  return batch;
}

}  // namespace tinybert::test
