// dequantize(): any stored weight (f32, f16, bf16, i8 + row scales) as fp32 values.
#pragma once

#include <vector>

#include "tinybert/model.hpp"

namespace tinybert {

inline std::vector<float> dequantize(const Weight& w) {
  return dequantize_elements(w.values.dtype, w.values.data, w.values.numel(), w.row_scales,
                             w.cols());
}

}  // namespace tinybert
