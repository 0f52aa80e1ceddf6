// Fuzz target: a .tbw file opened (WeightFile), bound (Model: config, tokenizer, weights) and, when
// it opens, one short text through the reference backend.
#include <cstring>

#include "fuzz_support.hpp"
#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/model.hpp"
#include "tinybert/runner.hpp"
#include "tinybert/tasks/embed.hpp"

using namespace tinybert;

namespace {

// Every view of an opened file lies inside its data area (the file's bytes after the header),
// aligned, with the bytes its shape needs.
void check_views(const WeightFile& file, const uint8_t* input, size_t size) {
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, input + 16, 8);
  const uint64_t data_bytes = size - format::kPreambleBytes - header_bytes;
  for (const TensorEntry& t : file.tensors()) {
    const size_t nbytes =
        static_cast<size_t>(checked_numel(t.view.shape)) * dtype_size(t.view.dtype);
    FUZZ_CHECK(t.view.bytes() == nbytes, t.name + ": bytes do not match the shape");
    FUZZ_CHECK(t.offset <= data_bytes && nbytes <= data_bytes - t.offset,
               t.name + ": view outside the data area");
    FUZZ_CHECK(t.offset % 16 == 0, t.name + ": unaligned");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path =
      fuzz::write_file("input.tbw", std::string_view(reinterpret_cast<const char*>(data), size))
          .string();
  fuzz::ok_or_error([&] {
    const WeightFile file(path);
    FUZZ_CHECK(file.file_bytes() == size, "file size");
    FUZZ_CHECK(file.config().is_object() && file.tokenizer().is_object(), "header sections");
    check_views(file, data, size);
  });
  fuzz::ok_or_error([&] {
    const Model model(path);
    const ModelConfig& c = model.config();
    c.validate();  // what opened is runnable
    FUZZ_CHECK(model.max_length() >= 1 && model.max_length() <= c.max_position_embeddings,
               "max_length " + std::to_string(model.max_length()));
    // A text through the model: tokenizer ids beyond the embedding rows must be refused by the
    // request check, never read.
    const Batch batch = encode_texts(model, {"Hello 你好 world [MASK]"});
    OwningRunner<CpuRefBackend> runner(model);
    ForwardRequest request;
    request.batch = batch;
    request.head = pooled_head(model);
    const ForwardResult result = runner.run(std::move(request));
    FUZZ_CHECK(result.values.size() == static_cast<size_t>(c.hidden_size), "pooled size");
  });
  return 0;
}
