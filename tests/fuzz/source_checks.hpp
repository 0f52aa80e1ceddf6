// Invariants of a SourceModel that a weight-file reader returned (the reader fuzz targets).
#pragma once

#include <set>
#include <string>

#include "fuzz_support.hpp"
#include "source_model.hpp"

namespace tinybert::fuzz {

// Every tensor holds exactly the bytes its shape and dtype say, and no more than the input had
// (a reader must never make up data: a declared 1e12-element tensor is refused, not allocated).
inline void check_source_model(const convert::SourceModel& model, size_t input_bytes) {
  for (const convert::SourceTensor& t : model.tensors) {
    const uint64_t expected = convert::detail::tensor_bytes(t.shape, t.dtype, t.name);
    FUZZ_CHECK(t.data.size() == expected, t.name + ": " + std::to_string(t.data.size()) +
                                              " bytes for " + shape_string(t.shape));
    FUZZ_CHECK(t.data.size() <= input_bytes, t.name + ": more bytes than the input has");
    if (t.dtype == DType::i8 && !t.row_scales.empty())
      FUZZ_CHECK(!t.shape.empty() && t.row_scales.size() == static_cast<size_t>(t.shape[0]),
                 t.name + ": one scale per row");
  }
}

}  // namespace tinybert::fuzz
