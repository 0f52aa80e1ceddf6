// Symmetric per-row int8 quantisation: weights per output channel at conversion or load time,
// activations per token at run time. q = round(x / scale), scale = max|row| / 127.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tinybert {

inline void quantize_rows_symmetric(const float* values, int64_t rows, int64_t cols, int8_t* out, float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = values + r * cols;
    float max_abs = 0;
    for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(x[c]));
    const float scale = max_abs > 0 ? max_abs / 127.0f : 1.0f;
    const float inverse = 1.0f / scale;
    int8_t* q = out + r * cols;
    for (int64_t c = 0; c < cols; ++c)
      q[c] = static_cast<int8_t>(std::clamp(std::nearbyint(x[c] * inverse), -127.0f, 127.0f));
    scales[r] = scale;
  }
}

}  // namespace tinybert
