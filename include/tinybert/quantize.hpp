// Symmetric per-row int8 quantisation: weights per output channel at conversion or load time,
// activations per token at run time. q = round(x / scale), scale = max|row| / max_level.
// max_level 63 (7 bits) is for CPUs without VNNI, whose u8 x s8 pair sums saturate at 16 bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tinybert {

inline void quantize_rows_symmetric(const float* values, int64_t rows, int64_t cols, int8_t* out,
                                    float* scales, int max_level = 127) {
  const float levels = static_cast<float>(max_level);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = values + r * cols;
    float max_abs = 0;
    for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(x[c]));
    const float scale = max_abs > 0 ? max_abs / levels : 1.0f;
    const float inverse = 1.0f / scale;
    int8_t* q = out + r * cols;
    for (int64_t c = 0; c < cols; ++c)
      q[c] = static_cast<int8_t>(std::clamp(std::nearbyint(x[c] * inverse), -levels, levels));
    scales[r] = scale;
  }
}

}  // namespace tinybert
