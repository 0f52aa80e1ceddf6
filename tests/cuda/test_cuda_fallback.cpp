// The CUDA backend where CUDA cannot run (CI has no GPU): the reason is reported as text,
// construction throws CudaError, and FallbackRunner serves every request from the CPU with the
// reference's results. Not tagged [cuda]: these run everywhere. On a GPU machine the same cases
// check that the GPU is picked, and that a device that does not exist or an allocation that
// fails still ends on the CPU.
#include <catch2/catch.hpp>

#include "cuda_test_support.hpp"
#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/backend/cuda_runner.hpp"

using namespace tinybert;

namespace {

constexpr int kNoSuchDevice = 1 << 20;

std::unique_ptr<Model> tiny_model(const std::string& name) {
  return test::convert_model(test::test_data_dir() / "tiny" / name, name);
}

Batch golden_batch(const std::string& name) {
  const auto golden = test::read_json(test::test_data_dir() / "tiny" / name / "golden.json");
  Batch batch;
  for (const auto& seq : golden["sequences"])
    batch.add(seq["input_ids"].get<std::vector<int32_t>>(),
              seq["token_type_ids"].get<std::vector<int32_t>>());
  return batch;
}

FallbackRunner::CpuFactory cpu_factory(const Model& model) {
  return [&model] { return std::make_unique<OwningRunner<CpuRefBackend>>(model); };
}

}  // namespace

TEST_CASE("CUDA availability is reported as text and never crashes", "[cuda-fallback]") {
  const auto reason = cuda_unavailable_reason();
  if (reason) {
    INFO(*reason);
    CHECK(reason->rfind("CUDA: ", 0) == 0);
    CHECK(reason->size() > 12);
    try {
      CudaBackend backend;
      FAIL("a CudaBackend was constructed although CUDA is unavailable");
    } catch (const CudaError& e) {
      CHECK(std::string(e.what()) == *reason);
    }
  } else {
    CudaBackend backend;
    CHECK_FALSE(backend.device_name().empty());
  }
  CHECK(cuda_unavailable_reason(-1).has_value());
  CHECK(cuda_unavailable_reason(kNoSuchDevice).has_value());
  // asking twice gives the same answer (a failed probe leaves no sticky error behind)
  CHECK(cuda_unavailable_reason() == reason);
}

TEST_CASE("FallbackRunner serves on the CPU when CUDA cannot start", "[cuda-fallback]") {
  const auto model = tiny_model("tiny-nli");
  std::vector<std::string> reports;
  CudaOptions options;
  options.device = kNoSuchDevice;  // unusable on every machine
  FallbackRunner runner(*model, options, cpu_factory(*model),
                        [&](const std::string& why) { reports.push_back(why); });
  CHECK_FALSE(runner.on_gpu());
  CHECK(runner.gpu() == nullptr);
  REQUIRE(reports.size() == 1);
  CHECK(runner.fallback_reason() == reports[0]);
  CHECK(reports[0].rfind("CUDA: ", 0) == 0);

  ForwardRequest request;
  request.batch = golden_batch("tiny-nli");
  request.head = {HeadKind::classifier_logits};
  CpuRefBackend reference_backend;
  DirectRunner reference(*model, reference_backend);
  CHECK(runner.run(request).values == reference.run(request).values);
  CHECK(reports.size() == 1);  // reported once

  // bad input is still the caller's error, not a reason to fall back
  ForwardRequest bad = request;
  bad.batch.input_ids[0] = 100000;
  CHECK_THROWS_AS(runner.run(bad), Error);
}

TEST_CASE("FallbackRunner runs on the CPU when a device allocation fails", "[cuda-fallback]") {
  const auto model = tiny_model("tiny-bert");
  std::vector<std::string> reports;
  CudaOptions options;
  options.memory_limit_bytes =
      4096;  // far below the cuBLASLt workspace: the first allocation fails
  FallbackRunner runner(*model, options, cpu_factory(*model),
                        [&](const std::string& why) { reports.push_back(why); });
  CHECK_FALSE(runner.on_gpu());
  REQUIRE(reports.size() == 1);
  if (!cuda_unavailable_reason()) CHECK_THAT(reports[0], Catch::Contains("memory limit"));

  ForwardRequest request;
  request.batch = golden_batch("tiny-bert");
  request.head = pooled_head(*model);
  CpuRefBackend reference_backend;
  DirectRunner reference(*model, reference_backend);
  CHECK(runner.run(request).values == reference.run(request).values);
}

TEST_CASE("FallbackRunner picks the GPU when there is one", "[cuda-fallback]") {
  const auto model = tiny_model("tiny-bert");
  FallbackRunner runner(*model, CudaOptions{}, cpu_factory(*model), [](const std::string&) {});
  CHECK(runner.on_gpu() == !cuda_unavailable_reason().has_value());
  ForwardRequest request;
  request.batch = golden_batch("tiny-bert");
  request.head = pooled_head(*model);
  CHECK(runner.run(request).values.size() == static_cast<size_t>(3 * model->config().hidden_size));
}

TEST_CASE("CUDA precision names", "[cuda-fallback]") {
  for (Precision p : {Precision::f16, Precision::bf16, Precision::int8})
    CHECK(parse_precision(precision_name(p)) == p);
  CHECK_THROWS_AS(parse_precision("fp8"), Error);
}

TEST_CASE("one Precision enum: each backend refuses the precisions it does not compute in",
          "[cuda-fallback]") {
  CudaOptions f32;
  f32.precision = Precision::f32;
  CHECK_THROWS_WITH(CudaBackend(f32), Catch::Contains("not f32"));
}
