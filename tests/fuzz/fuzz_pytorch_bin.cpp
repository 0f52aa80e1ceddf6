// Fuzz target: torch.save archives (zip directory + pickle program + strided storages) ->
// SourceModel.
#include "pytorch_reader.hpp"
#include "source_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tinybert;
  fuzz::ok_or_error([&] {
    const convert::SourceModel model = convert::parse_pytorch_bin({data, size}, "fuzz");
    fuzz::check_source_model(model, size);
  });
  // The zip directory and the pickle machine alone as well: the archive check above stops most
  // mutated inputs before the pickle, and a pickle is a program in its own right.
  fuzz::ok_or_error([&] {
    convert::ZipArchive zip({data, size}, "fuzz");
    for (const auto& e : zip.entries()) {
      FUZZ_CHECK(e.data_offset <= size && e.size <= size - e.data_offset, e.name + ": outside");
      zip.data(e);
    }
  });
  fuzz::ok_or_error([&] {
    const convert::pickle::Program program = convert::pickle::run({data, size}, "fuzz");
    FUZZ_CHECK(program.root < program.objects.size(), "root");
    for (const auto& o : program.objects)
      for (uint32_t item : o.items) FUZZ_CHECK(item < program.objects.size(), "dangling item");
  });
  return 0;
}
