// The micro-batching scheduler: merged passes give every caller what a pass of its own would
// give, for every head; the queue bound, deadlines and stop() behave as documented.
#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "test_support.hpp"
#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/serving/batching_runner.hpp"

using namespace tinybert;
using namespace std::chrono_literals;

namespace {

// Requests of different lengths for the model's head; MLM requests score two rows each, and
// ask for attention.
std::vector<ForwardRequest> requests_for(const Model& model, HeadKind kind) {
  std::vector<ForwardRequest> requests;
  const std::vector<std::string> texts = {"天气", "水水水天", "天",  //
                                          "气水天气水天气", "水"};
  for (size_t i = 0; i < texts.size(); ++i) {
    ForwardRequest r;
    r.head.kind = kind;
    if (kind == HeadKind::pooled) r.head = pooled_head(model);
    for (size_t copy = 0; copy <= i % 2; ++copy) {  // one or two sequences each
      const Encoding e = model.tokenizer().encode(texts[(i + copy) % texts.size()], 64);
      r.batch.add(e.ids, e.type_ids);
    }
    if (kind == HeadKind::mlm_logits) {
      r.rows = {1, r.batch.num_tokens() - 1};
      r.record_attention = i % 2 == 0;
    }
    requests.push_back(std::move(r));
  }
  return requests;
}

void check_close(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(1e-5));
}

}  // namespace

TEST_CASE("merged passes give each caller its own pass's result, for every head", "[batching]") {
  const std::pair<const char*, HeadKind> cases[] = {{"tiny-bert", HeadKind::pooled},
                                                    {"tiny-nli", HeadKind::classifier_logits},
                                                    {"tiny-mlm", HeadKind::mlm_logits},
                                                    {"tiny-uie", HeadKind::uie_spans}};
  for (const auto& [name, kind] : cases) {
    INFO(name);
    const auto model = test::convert_model(test::test_data_dir() / "tiny" / name, name);
    CpuRefBackend backend;
    DirectRunner<CpuRefBackend> direct(*model, backend);
    const std::vector<ForwardRequest> requests = requests_for(*model, kind);

    BatchingOptions options;
    options.max_wait = 200ms;  // long enough for all callers to join one batch
    std::vector<BatchRecord> batches;
    BatchingRunner batching(std::make_unique<OwningRunner<CpuRefBackend>>(*model), options,
                            [&](const BatchRecord& r) { batches.push_back(r); });
    std::vector<std::future<ForwardResult>> merged;
    for (const ForwardRequest& r : requests)
      merged.push_back(std::async(std::launch::async, [&batching, r] { return batching.run(r); }));
    for (size_t i = 0; i < requests.size(); ++i) {
      const ForwardResult alone = direct.run(requests[i]);
      const ForwardResult together = merged[i].get();
      check_close(together.values, alone.values);
      check_close(together.start, alone.start);
      check_close(together.end, alone.end);
      check_close(together.attention, alone.attention);
    }
    batching.stop();
    int64_t passes = 0;
    for (const BatchRecord& b : batches) passes += b.passes;
    CHECK(passes == static_cast<int64_t>(requests.size()));
    CHECK(batches.size() < requests.size());  // something was merged
  }
}

TEST_CASE("the scheduler bounds its queue, drops passes past their deadline and drains on stop",
          "[batching]") {
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-bert", "tiny-bert");
  const Encoding e = model->tokenizer().encode("天气水", 64);
  ForwardRequest request;
  request.head = pooled_head(*model);
  request.batch.add(e.ids, e.type_ids);

  SECTION("queue bound") {
    BatchingOptions options;
    options.queue_capacity = 1;
    options.max_batch_tokens = 6;  // the first pass cannot take company, and waits for it
    options.max_wait = 500ms;
    BatchingRunner runner(std::make_unique<OwningRunner<CpuRefBackend>>(*model), options);
    auto first = std::async(std::launch::async, [&] { return runner.run(request); });
    std::this_thread::sleep_for(100ms);  // first is now the scheduler's, waiting
    auto second = std::async(std::launch::async, [&] { return runner.run(request); });
    std::this_thread::sleep_for(100ms);  // second fills the queue
    CHECK_THROWS_AS(runner.run(request), Overloaded);
    CHECK(first.get().values.size() == 32);
    CHECK(second.get().values.size() == 32);
  }
  SECTION("deadline") {
    BatchingOptions options;
    options.max_wait = 300ms;
    BatchingRunner runner(std::make_unique<OwningRunner<CpuRefBackend>>(*model), options);
    const DeadlineScope deadline(SteadyClock::now() + 50ms);
    CHECK_THROWS_AS(runner.run(request), DeadlineExceeded);
  }
  SECTION("invalid requests fail alone, before they are queued") {
    BatchingRunner runner(std::make_unique<OwningRunner<CpuRefBackend>>(*model), BatchingOptions{});
    ForwardRequest bad = request;
    bad.batch.input_ids[1] = 100000;
    CHECK_THROWS_WITH(runner.run(bad), Catch::Contains("outside"));
    CHECK(runner.run(request).values.size() == 32);
  }
  SECTION("stop") {
    BatchingOptions options;
    options.max_wait = 300ms;
    BatchingRunner runner(std::make_unique<OwningRunner<CpuRefBackend>>(*model), options);
    auto waiting = std::async(std::launch::async, [&] { return runner.run(request); });
    std::this_thread::sleep_for(50ms);
    runner.stop();  // finishes the waiting pass
    CHECK(waiting.get().values.size() == 32);
    CHECK_THROWS_AS(runner.run(request), Overloaded);
  }
}
