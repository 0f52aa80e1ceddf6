// SourceModel: the one in-memory form that every weight-file reader produces, read from a
// MappedFile.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tinybert/error.hpp"
#include "tinybert/mapped_file.hpp"
#include "tinybert/tensor.hpp"

namespace tinybert::convert {

struct SourceTensor {
  std::string name;           // the name the source uses (HF names)
  DType dtype = DType::f32;   // f32, f16, bf16; i8 = symmetric int8 with row_scales; u8 raw bytes
  Shape shape;                // C order
  std::vector<uint8_t> data;  // little-endian element bytes, contiguous
  std::vector<float> row_scales;  // i8 only: value[r][c] = q[r][c] * row_scales[r]
                                  // (empty for a raw int8 tensor that had no scale in the source)
};

struct SourceModel {
  std::vector<SourceTensor> tensors;
  std::map<std::string, std::string> metadata;  // e.g. safetensors __metadata__, onnx producer
  const SourceTensor* find(std::string_view name) const {
    for (const SourceTensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
};

namespace detail {

// Checked size arithmetic for parsers: throws instead of wrapping.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a)
    throw Error(what + ": size overflows");
  return a * b;
}
inline uint64_t checked_add(uint64_t a, uint64_t b, const std::string& what) {
  if (b > std::numeric_limits<uint64_t>::max() - a) throw Error(what + ": size overflows");
  return a + b;
}

// Bytes of a tensor of `shape` and `dtype`, checked.
inline uint64_t tensor_bytes(const Shape& shape, DType dtype, const std::string& what) {
  int64_t numel = 0;
  try {
    numel = checked_numel(shape);
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
  return checked_mul(static_cast<uint64_t>(numel), dtype_size(dtype), what);
}

// Swap the two axes of a row-major [rows, cols] matrix of `elem`-byte elements.
inline std::vector<uint8_t> transpose_bytes(std::span<const uint8_t> src, uint64_t rows,
                                            uint64_t cols, size_t elem) {
  std::vector<uint8_t> dst(src.size());
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < cols; ++c)
      std::memcpy(&dst[(c * rows + r) * elem], &src[(r * cols + c) * elem], elem);
  return dst;
}

inline std::string hex_offset(uint64_t offset) { return "byte " + std::to_string(offset); }

}  // namespace detail
}  // namespace tinybert::convert
