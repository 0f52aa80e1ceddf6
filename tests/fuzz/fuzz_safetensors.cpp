// Fuzz target: safetensors bytes (u64 header size, JSON header, data) -> SourceModel.
#include "safetensors_reader.hpp"
#include "source_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tinybert;
  fuzz::ok_or_error([&] {
    const convert::SourceModel model = convert::parse_safetensors({data, size}, "fuzz");
    fuzz::check_source_model(model, size);
    std::set<std::string> names;
    for (const auto& t : model.tensors)
      FUZZ_CHECK(names.insert(t.name).second, "tensor " + t.name + " returned twice");
  });
  return 0;
}
