// Helpers of the CUDA model tests: a visible skip without a GPU and error metrics. (The op tests,
// in tests/test_backend_ops.cpp, have their own inputs and bounds.)
#pragma once

#include <cmath>
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

}  // namespace tinybert::test
