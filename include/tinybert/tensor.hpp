// Element types, non-owning tensor views and the fp16/bf16 <-> fp32 conversions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tinybert/error.hpp"

namespace tinybert {

// Element types a .tbw file may hold. i8 weights come with a companion f32 tensor of per-row
// scales ("<name>_scale"); u8 holds raw bytes (the tokenizer vocabulary).
enum class DType : uint8_t { f32, f16, bf16, i8, u8 };

inline size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::f16:
    case DType::bf16:
      return 2;
    case DType::i8:
    case DType::u8:
      return 1;
  }
  return 0;
}

inline const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
    case DType::i8:
      return "i8";
    case DType::u8:
      return "u8";
  }
  return "?";
}

inline DType parse_dtype(std::string_view name) {
  for (DType d : {DType::f32, DType::f16, DType::bf16, DType::i8, DType::u8})
    if (name == dtype_name(d)) return d;
  throw Error("unknown dtype '" + std::string(name) + "' (expected f32, f16, bf16, i8 or u8)");
}

using Shape = std::vector<int64_t>;

inline std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

// Number of elements; throws on negative dims or overflow so that file parsers can trust it.
inline int64_t checked_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("negative dimension in shape " + shape_string(shape));
    if (d != 0 && n > INT64_MAX / d) throw Error("shape " + shape_string(shape) + " overflows");
    n *= d;
  }
  return n;
}

// A view over memory owned elsewhere (the mmapped file, a Model or a Workspace).
struct TensorView {
  DType dtype = DType::f32;
  Shape shape;
  const void* data = nullptr;

  int64_t numel() const { return checked_numel(shape); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(size_t i) const { return shape.at(i); }
  template <class T>
  const T* as() const {
    return static_cast<const T*>(data);
  }
};

// IEEE half -> float, exact for every input (subnormals, inf, NaN included).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// float -> IEEE half, round to nearest even; overflow gives inf.
inline uint16_t f32_to_f16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u)  // inf or NaN
    return sign | 0x7c00u | (abs_bits > 0x7f800000u ? 0x200u : 0u);
  if (abs_bits >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504
  if (abs_bits < 0x38800000u) {                        // result is subnormal or zero
    const float scaled = std::bit_cast<float>(abs_bits) * 16777216.0f;  // * 2^24
    const float rounded = __builtin_nearbyintf(scaled);                 // ties to even
    return sign | static_cast<uint16_t>(rounded);
  }
  const uint32_t rounding = 0xfffu + ((abs_bits >> 13) & 1u);
  return sign | static_cast<uint16_t>((abs_bits - 0x38000000u + rounding) >> 13);
}

inline float bf16_to_f32(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

// float -> bfloat16, round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Little-endian reads from unaligned bytes (all our file formats are little-endian).
template <class T>
inline T load_le(const void* p) {
  static_assert(std::endian::native == std::endian::little, "tinybert needs a little-endian host");
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// numel elements of any weight dtype as fp32. i8 elements are multiplied by the scale of their
// row (cols elements per row); u8 holds bytes, not numbers, and is refused.
inline std::vector<float> dequantize_elements(DType dtype, const void* data, int64_t numel,
                                              const float* row_scales = nullptr, int64_t cols = 1) {
  std::vector<float> out(static_cast<size_t>(numel));
  const auto* raw = static_cast<const uint8_t*>(data);
  switch (dtype) {
    case DType::f32:
      for (int64_t i = 0; i < numel; ++i) out[i] = load_le<float>(raw + 4 * i);
      break;
    case DType::f16:
      for (int64_t i = 0; i < numel; ++i) out[i] = f16_to_f32(load_le<uint16_t>(raw + 2 * i));
      break;
    case DType::bf16:
      for (int64_t i = 0; i < numel; ++i) out[i] = bf16_to_f32(load_le<uint16_t>(raw + 2 * i));
      break;
    case DType::i8:
      if (!row_scales || cols <= 0) throw Error("int8 weight without row scales");
      for (int64_t i = 0; i < numel; ++i)
        out[i] = static_cast<float>(static_cast<int8_t>(raw[i])) * row_scales[i / cols];
      break;
    case DType::u8:
      throw Error("u8 tensors hold bytes, not weights");
  }
  return out;
}

}  // namespace tinybert
