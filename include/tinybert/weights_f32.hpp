// dequantize(): any stored weight (f32, f16, bf16, i8 + row scales) as fp32 values.
#pragma once

#include <vector>

#include "tinybert/model.hpp"

namespace tinybert {

inline std::vector<float> dequantize(const Weight& w) {
  const int64_t n = w.values.numel();
  std::vector<float> out(static_cast<size_t>(n));
  const auto* raw = static_cast<const uint8_t*>(w.values.data);
  switch (w.values.dtype) {
    case DType::f32:
      for (int64_t i = 0; i < n; ++i) out[i] = load_le<float>(raw + 4 * i);
      break;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_le<uint16_t>(raw + 2 * i));
      break;
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_le<uint16_t>(raw + 2 * i));
      break;
    case DType::i8: {
      if (!w.row_scales) throw Error("int8 weight without row scales");
      const int64_t cols = w.cols();
      for (int64_t i = 0; i < n; ++i)
        out[i] = static_cast<float>(static_cast<int8_t>(raw[i])) * w.row_scales[i / cols];
      break;
    }
    case DType::u8: throw Error("u8 tensors hold bytes, not weights");
  }
  return out;
}

}  // namespace tinybert
