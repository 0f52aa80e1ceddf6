// Fuzz target: ONNX protobuf bytes -> OnnxModel -> graph tracing -> SourceModel.
#include "onnx_reader.hpp"
#include "source_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tinybert;
  fuzz::ok_or_error([&] {
    const convert::OnnxModel model = convert::parse_onnx({data, size}, "fuzz");
    const convert::SourceModel source = convert::onnx_to_source(model);
    fuzz::check_source_model(source, size * 8);  // dequantised int8 (or varint-packed) values grow
  });
  return 0;
}
