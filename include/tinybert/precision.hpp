// Precision: the number format a backend computes in, one enum for every backend. The oneDNN
// backend runs f32, bf16 and int8 GEMMs; the CUDA backend f16, bf16 and int8 (its activations are
// f16 or bf16). What the file stores is DType (tensor.hpp); what a backend computes is this.
#pragma once

#include <string>

#include "tinybert/error.hpp"

namespace tinybert {

enum class Precision { f32, f16, bf16, int8 };

inline const char* precision_name(Precision p) {
  switch (p) {
    case Precision::f32:
      return "f32";
    case Precision::f16:
      return "f16";
    case Precision::bf16:
      return "bf16";
    case Precision::int8:
      return "int8";
  }
  return "?";
}

inline Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::f32, Precision::f16, Precision::bf16, Precision::int8})
    if (name == precision_name(p)) return p;
  throw Error("unknown precision '" + name + "' (expected f32, f16, bf16 or int8)");
}

}  // namespace tinybert
