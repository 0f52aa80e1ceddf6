// End to end on the GPU against the fp32 CPU reference: the tiny models (every head, packed
// batches), bge-small-zh from ../shared (CLS vectors of the 13 reference sentences), CUDA Graph
// replays against eager runs, and the memory budget. Cosine per token / per vector: >= 0.999 in
// f16, >= 0.995 in bf16, >= 0.99 in int8. Tagged [cuda]: needs a GPU.
#include <catch2/catch.hpp>
#include <numeric>

#include "cuda_test_support.hpp"
#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/backend/cuda_runner.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

double min_cosine(Precision precision) {
  return precision == Precision::f16 ? 0.999 : precision == Precision::bf16 ? 0.995 : 0.99;
}

struct TinyCase {
  std::unique_ptr<Model> model;
  Batch batch;
};

TinyCase tiny(const std::string& name) {
  const auto folder = test::test_data_dir() / "tiny" / name;
  TinyCase c{test::convert_model(folder, name), {}};
  for (const auto& seq : test::read_json(folder / "golden.json")["sequences"])
    c.batch.add(seq["input_ids"].get<std::vector<int32_t>>(),
                seq["token_type_ids"].get<std::vector<int32_t>>(),
                seq.value("task_type_ids", std::vector<int32_t>{}));
  return c;
}

CudaOptions options_for(Precision precision) {
  CudaOptions options;
  options.precision = precision;
  options.poison_allocations = true;
  options.max_batch_tokens = 2048;
  return options;
}

const std::vector<Precision> kPrecisions = {Precision::f16, Precision::bf16, Precision::int8};
const std::vector<std::string> kTinyModels = {"tiny-bert", "tiny-ernie", "tiny-mlm",
                                              "tiny-nli",  "tiny-uie",   "tiny-bert-onnx-int8"};

}  // namespace

TEST_CASE("CUDA encoder on the tiny models matches the fp32 reference", "[cuda][models]") {
  test::require_gpu();
  for (const std::string& name : kTinyModels) {
    TinyCase c = tiny(name);
    CpuRefBackend ref;
    Workspace<CpuRefBackend> ref_ws;
    Encoder<CpuRefBackend>(*c.model, ref).forward(c.batch, ref_ws);
    for (Precision precision : kPrecisions) {
      INFO(name << " " << precision_name(precision));
      CudaBackend gpu(options_for(precision));
      const Encoder<CudaBackend> encoder(*c.model, gpu);
      Workspace<CudaBackend> ws;
      encoder.forward(c.batch, ws);
      const auto got = gpu.to_host(ws.hidden);
      CHECK(test::compare(got, ref_ws.hidden.to_vector()).finite);
      CHECK(test::worst_row_cosine(got, ref_ws.hidden.to_vector(), c.model->config().hidden_size) >=
            min_cosine(precision));
      // the generic runner over the backend, as the CPU backends are used
      DirectRunner<CudaBackend> direct(*c.model, gpu);
      const auto pooled =
          direct.run({c.batch, {HeadKind::pooled, Pooling::cls, false}, {}, false, {}, {}}).values;
      CHECK(
          test::worst_row_cosine(
              pooled,
              Heads<CpuRefBackend>(*c.model, ref).pool(ref_ws.hidden, c.batch, Pooling::cls, false),
              c.model->config().hidden_size) >= min_cosine(precision));
    }
  }
}

TEST_CASE("CudaRunner heads match DirectRunner on the CPU reference", "[cuda][models]") {
  test::require_gpu();
  for (Precision precision : kPrecisions) {
    const double floor = min_cosine(precision);
    INFO(precision_name(precision));
    const auto check_same = [&](const std::string& name, ForwardRequest request, int64_t width) {
      INFO(name << " head " << head_kind_name(request.head.kind));
      TinyCase c = tiny(name);
      request.batch = c.batch;
      CpuRefBackend ref_backend;
      DirectRunner reference(*c.model, ref_backend);
      CudaRunner gpu(*c.model, options_for(precision));
      const ForwardResult want = reference.run(request), got = gpu.run(request);
      CHECK(test::compare(got.values, want.values).finite);
      CHECK(test::worst_row_cosine(got.values, want.values, width) >= floor);
      if (request.head.kind == HeadKind::uie_spans) {
        CHECK(test::compare(got.start, want.start).max_abs <= 1e-2);
        CHECK(test::compare(got.end, want.end).max_abs <= 1e-2);
      }
      if (request.record_attention)
        CHECK(test::compare(got.attention, want.attention).max_abs <= 1e-2);
    };
    for (const std::string name : {"tiny-bert", "tiny-ernie"}) {
      TinyCase c = tiny(name);
      const int64_t hidden = c.model->config().hidden_size;
      check_same(name,
                 ForwardRequest{{}, {HeadKind::pooled, Pooling::cls, false}, {}, false, {}, {}},
                 hidden);
      check_same(name,
                 ForwardRequest{{}, {HeadKind::pooled, Pooling::mean, true}, {}, false, {}, {}},
                 hidden);
    }
    check_same("tiny-nli", ForwardRequest{{}, {HeadKind::classifier_logits}, {}, false, {}, {}}, 3);
    {
      TinyCase c = tiny("tiny-mlm");
      std::vector<int64_t> rows(static_cast<size_t>(c.batch.num_tokens()));
      std::iota(rows.begin(), rows.end(), 0);
      check_same("tiny-mlm", ForwardRequest{{}, {HeadKind::mlm_logits}, rows, true, {}, {}},
                 c.model->config().vocab_size);
    }
    check_same("tiny-uie", ForwardRequest{{}, {HeadKind::uie_spans}, {}, false, {}, {}}, 1);
  }
}

TEST_CASE("CUDA Graph replays give the eager results", "[cuda][models][graphs]") {
  test::require_gpu();
  for (Precision precision : kPrecisions) {
    INFO(precision_name(precision));
    TinyCase c = tiny("tiny-ernie");
    CudaRunner graphs(*c.model, options_for(precision));
    CudaOptions eager_options = options_for(precision);
    eager_options.cuda_graphs = false;
    CudaRunner eager(*c.model, eager_options);
    // batch-1 requests of each golden sequence, three rounds, with a packed batch in between
    for (int round = 0; round < 3; ++round) {
      for (int64_t s = 0; s < c.batch.num_sequences(); ++s) {
        ForwardRequest request;
        const auto b = c.batch.seq_begin(s), n = c.batch.seq_len(s);
        request.batch.add(std::span(c.batch.input_ids).subspan(b, n),
                          std::span(c.batch.token_type_ids).subspan(b, n),
                          std::span(c.batch.task_type_ids).subspan(b, n));
        request.head = {HeadKind::pooled, Pooling::mean, false};
        CHECK(graphs.run(request).values == eager.run(request).values);
      }
      ForwardRequest packed;
      packed.batch = c.batch;
      packed.head = {HeadKind::pooled, Pooling::cls, false};
      CHECK(graphs.run(packed).values == eager.run(packed).values);
    }
    const auto stats = graphs.graph_stats();
    INFO("disabled: " << stats.disabled_reason);
    CHECK(stats.disabled_reason.empty());
    CHECK(stats.captured == c.batch.num_sequences());
    CHECK(stats.replayed >= c.batch.num_sequences());
  }
}

TEST_CASE("bge-small-zh on the GPU: CLS vectors of the reference sentences",
          "[cuda][models][bge]") {
  test::require_gpu();
  const auto folder = test::shared_path_or_skip("models/bge-small-zh-v1.5");
  const auto model = test::convert_model(folder, "bge-small-zh-v1.5");
  const json ref = test::read_json(folder / "reference_outputs.json");
  Batch batch;
  for (const auto& entry : ref["entries"])
    batch.add(entry["input_ids"].get<std::vector<int32_t>>(),
              entry["token_type_ids"].get<std::vector<int32_t>>());
  ForwardRequest request;
  request.batch = batch;
  request.head = {HeadKind::pooled, Pooling::cls, false};
  CpuRefBackend ref_backend;
  DirectRunner reference(*model, ref_backend);
  const auto want = reference.run(request).values;
  const int64_t hidden = model->config().hidden_size;
  for (Precision precision : kPrecisions) {
    INFO(precision_name(precision));
    CudaRunner gpu(*model, options_for(precision));
    const auto got = gpu.run(request).values;
    const double cosine = test::worst_row_cosine(got, want, hidden);
    INFO("worst CLS cosine vs fp32 CPU " << cosine);
    CHECK(cosine >= min_cosine(precision));
    // one sentence at a time through the graph path too
    for (size_t i = 0; i < ref["entries"].size(); ++i) {
      ForwardRequest one;
      one.batch.add(ref["entries"][i]["input_ids"].get<std::vector<int32_t>>());
      one.head = request.head;
      for (int repeat = 0; repeat < 2; ++repeat) {
        const auto vector = gpu.run(one).values;
        const std::vector<float> expected(want.begin() + static_cast<int64_t>(i) * hidden,
                                          want.begin() + static_cast<int64_t>(i + 1) * hidden);
        CHECK(test::worst_row_cosine(vector, expected, hidden) >= min_cosine(precision));
      }
    }
  }
}

TEST_CASE("GPU memory: weights + one workspace within weight bytes + 300 MB",
          "[cuda][models][memory]") {
  test::require_gpu();
  const auto folder = test::shared_path_or_skip("models/bge-small-zh-v1.5");
  const auto model = test::convert_model(folder, "bge-small-zh-v1.5");
  for (Precision precision : kPrecisions) {
    CudaOptions options;
    options.precision = precision;  // default workspace: 16384 tokens (128 x 128)
    CudaRunner gpu(*model, options);
    ForwardRequest request;
    request.batch.add(std::vector<int32_t>(128, 1000));
    request.head = pooled_head(*model);
    gpu.run(request);
    const CudaMemoryReport m = gpu.memory_report();
    INFO(precision_name(precision)
         << ": weights " << m.weight_bytes << ", activations " << m.activation_bytes << ", scratch "
         << m.scratch_bytes << ", device used " << m.device_used_bytes << " (at start "
         << m.context_used_bytes << ")");
    CHECK(m.activation_bytes + m.scratch_bytes <= 300ll << 20);
    CHECK(m.device_used_bytes - m.context_used_bytes <=
          m.weight_bytes + (300ll << 20) + (128ll << 20));
  }
}
