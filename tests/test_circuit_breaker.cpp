// The circuit breaker (serving/circuit_breaker.hpp) with a fault-injecting primary: failures,
// late passes, trips, probes and recoveries, alone and inside a Service under concurrent load;
// and how /metrics shows it (apps/server/metrics.hpp). No GPU needed.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "metrics.hpp"
#include "test_support.hpp"
#include "tinybert/serving/circuit_breaker.hpp"
#include "tinybert/serving/service.hpp"

using namespace tinybert;
using namespace std::chrono_literals;

namespace {

// A real runner whose passes can be made to fail or to take longer, from another thread.
struct Faults {
  std::atomic<int> fail_next{0};  // the next N passes throw
  std::atomic<bool> failing{false};
  std::atomic<int> delay_ms{0};
  std::atomic<int> passes{0};  // passes that reached this runner
};

class FaultyRunner final : public Runner {
 public:
  FaultyRunner(std::unique_ptr<Runner> inner, Faults& faults)
      : inner_(std::move(inner)), faults_(faults) {}
  ForwardResult run(ForwardRequest request) override {
    ++faults_.passes;
    if (faults_.delay_ms > 0) std::this_thread::sleep_for(faults_.delay_ms.load() * 1ms);
    int left = faults_.fail_next;
    while (left > 0 && !faults_.fail_next.compare_exchange_weak(left, left - 1)) {
    }
    if (faults_.failing || left > 0) throw std::runtime_error("injected device fault");
    return inner_->run(std::move(request));
  }
  const Model& model() const override { return inner_->model(); }
  std::string backend_name() const override { return "faulty-" + inner_->backend_name(); }

 private:
  std::unique_ptr<Runner> inner_;
  Faults& faults_;
};

// Embeddings responses' vectors, equal within float rounding (merged batches pack differently).
bool same_embeddings(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto &x = a[i]["embedding"], &y = b[i]["embedding"];
    if (x.size() != y.size()) return false;
    for (size_t j = 0; j < x.size(); ++j)
      if (std::abs(x[j].get<double>() - y[j].get<double>()) > 1e-5) return false;
  }
  return true;
}

ForwardRequest pooled_request(const Model& model, const std::string& text) {
  ForwardRequest request;
  const Encoding e = model.tokenizer().encode(text);
  request.batch.add(e.ids, e.type_ids);
  request.head = pooled_head(model);
  return request;
}

struct Setup {
  std::string path = test::tiny_tbw("tiny-bert");
  Model model{path};
  Faults faults;
  std::atomic<int> fallbacks_made{0};
  std::vector<std::string> reports;

  CircuitBreakerRunner breaker(BreakerOptions options) {
    options.cool_down = 100ms;
    return CircuitBreakerRunner(
        std::make_unique<FaultyRunner>(make_runner(model, "ref"), faults),
        [this] {
          ++fallbacks_made;
          return make_runner(model, "ref");
        },
        "ref", options, [this](const std::string& line) { reports.push_back(line); });
  }
};

}  // namespace

TEST_CASE("the breaker moves passes to the fallback after N failures and probes back",
          "[breaker]") {
  Setup s;
  CircuitBreakerRunner breaker = s.breaker({});
  const ForwardRequest request = pooled_request(s.model, "北京的天气");
  const std::vector<float> expected = make_runner(s.model, "ref")->run(request).values;

  CHECK(breaker.run(request).values == expected);  // healthy: the primary answers
  CHECK(s.faults.passes == 1);
  CHECK(s.fallbacks_made == 0);  // made only when first needed

  // Two failures: each pass is answered by the fallback, the breaker stays closed.
  s.faults.fail_next = 2;
  for (int i = 0; i < 2; ++i) CHECK(breaker.run(request).values == expected);
  CHECK(breaker.status().state == BreakerState::closed);
  CHECK(breaker.status().consecutive_failures == 2);
  CHECK(s.fallbacks_made == 1);
  // A success in between resets the count.
  CHECK(breaker.run(request).values == expected);
  CHECK(breaker.status().consecutive_failures == 0);

  // Three in a row: open. Later passes skip the primary until the cool-down is over.
  s.faults.failing = true;
  for (int i = 0; i < 3; ++i) CHECK(breaker.run(request).values == expected);
  BreakerStatus status = breaker.status();
  CHECK(status.state == BreakerState::open);
  CHECK(status.trips == 1);
  CHECK(status.reason == "injected device fault");
  CHECK(breaker.backend_name() == "ref");
  REQUIRE(s.reports.size() == 1);
  CHECK_THAT(s.reports[0], Catch::Contains("failed 3 passes in a row (injected device fault)"));
  const int primary_passes = s.faults.passes;
  for (int i = 0; i < 5; ++i) CHECK(breaker.run(request).values == expected);
  CHECK(s.faults.passes == primary_passes);

  // After the cool-down one probe: still failing -> open again (no new trip), answered anyway.
  std::this_thread::sleep_for(120ms);
  CHECK(breaker.run(request).values == expected);
  CHECK(s.faults.passes == primary_passes + 1);
  CHECK(breaker.status().state == BreakerState::open);
  CHECK(breaker.status().trips == 1);
  CHECK(breaker.run(request).values == expected);
  CHECK(s.faults.passes == primary_passes + 1);  // a new cool-down began

  // Recovered: the next probe closes the breaker.
  s.faults.failing = false;
  std::this_thread::sleep_for(120ms);
  CHECK(breaker.run(request).values == expected);
  status = breaker.status();
  CHECK(status.state == BreakerState::closed);
  CHECK(status.reason.empty());
  CHECK(breaker.backend_name() == "faulty-ref");
  CHECK_THAT(s.reports.back(), Catch::Contains("passed its probe"));
  CHECK(s.fallbacks_made == 1);
}

TEST_CASE("late primary passes count as failures, their results are still used", "[breaker]") {
  Setup s;
  BreakerOptions options;
  options.pass_deadline = 5ms;
  CircuitBreakerRunner breaker = s.breaker(options);
  const ForwardRequest request = pooled_request(s.model, "我是中国人");
  const std::vector<float> expected = make_runner(s.model, "ref")->run(request).values;
  s.faults.delay_ms = 20;
  for (int i = 0; i < 3; ++i) CHECK(breaker.run(request).values == expected);
  CHECK(s.fallbacks_made == 0);  // late, not failed: the primary's results were returned
  const BreakerStatus status = breaker.status();
  CHECK(status.state == BreakerState::open);
  CHECK_THAT(status.reason, Catch::Contains("over the deadline of 5 ms"));
  CHECK(breaker.run(request).values == expected);  // now on the fallback
  CHECK(s.fallbacks_made == 1);
}

TEST_CASE("invalid requests are the caller's error, not a backend failure", "[breaker]") {
  Setup s;
  CircuitBreakerRunner breaker = s.breaker({});
  ForwardRequest bad = pooled_request(s.model, "x");
  bad.batch.input_ids[1] = 1 << 20;
  for (int i = 0; i < 5; ++i) CHECK_THROWS_WITH(breaker.run(bad), Catch::Contains("token id"));
  CHECK(s.faults.passes == 0);
  CHECK(breaker.status().consecutive_failures == 0);
  CHECK(breaker.status().state == BreakerState::closed);
}

// Found by tests/fuzz/fuzz_request_bodies: the parse error of a body that is not UTF-8 quotes its
// bytes, and the error body's dump() threw on them instead of giving a 400 body to send.
TEST_CASE("a body that is not UTF-8 gets an error body that serialises", "[service]") {
  const std::string body = "{\"input\": \"hello wor\xe4\xe4ld\"}";
  try {
    const RequestBody request(body, {"input"}, RequestLimits{});
    FAIL("accepted a body that is not UTF-8");
  } catch (const ApiError& e) {
    CHECK(e.type == "invalid_json");
    const json parsed = json::parse(e.body().dump());
    CHECK(parsed["error"]["type"] == "invalid_json");
    CHECK_THAT(parsed["error"]["message"].get<std::string>(), Catch::Contains("\xef\xbf\xbd"));
  }
}

// Found by tests/fuzz/fuzz_request_bodies: a number beyond double made the parser throw
// out_of_range, not parse_error, and the request became a 500 instead of a 400.
TEST_CASE("a body with a number beyond double is invalid JSON, not an internal error",
          "[service]") {
  try {
    const RequestBody request(R"({"input": 1e400})", {"input"}, RequestLimits{});
    FAIL("accepted 1e400");
  } catch (const ApiError& e) {
    CHECK(e.status == 400);
    CHECK(e.type == "invalid_json");
    CHECK_THAT(e.what(), Catch::Contains("1e400"));
  }
}

// Found by tests/fuzz/fuzz_request_bodies: the JSON parser stopped at a NUL byte, so a valid
// object followed by NUL and anything else was accepted as that object.
TEST_CASE("a body with a NUL byte is invalid JSON, whatever precedes it", "[service]") {
  const std::string body = std::string(R"({"input": "ok"})") + '\0' + R"( {"input": 1})";
  try {
    const RequestBody request(body, {"input"}, RequestLimits{});
    FAIL("accepted a body with a NUL byte");
  } catch (const ApiError& e) {
    CHECK(e.status == 400);
    CHECK(e.type == "invalid_json");
    CHECK(e.position == 15);
    CHECK_THAT(e.what(), Catch::Contains("NUL byte at byte 15"));
  }
}

TEST_CASE("a Service loses no request while its model's backend fails and recovers",
          "[breaker][service]") {
  const std::string path = test::tiny_tbw("tiny-bert");
  Faults faults;
  ServiceOptions options;
  options.models = {{"bert", path}};
  options.backend = "ref";
  options.fallback_backend = "f32";
  options.breaker.cool_down = 100ms;
  options.runner_factory = [&faults](const Model& model, const std::string& backend) {
    std::unique_ptr<Runner> runner = make_runner(model, backend == "f32" ? "ref" : backend);
    if (backend == "ref")
      return std::unique_ptr<Runner>(new FaultyRunner(std::move(runner), faults));
    return runner;
  };
  Service service(options);
  CHECK(service.health()["status"] == "ready");
  const std::string body = R"({"input": ["北京的天气", "我是中国人"]})";
  const nlohmann::json expected = service.embeddings(body)["data"];

  faults.failing = true;
  std::atomic<int> errors{0}, answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c)
    clients.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        try {
          if (same_embeddings(service.embeddings(body)["data"], expected))
            ++answered;
          else
            ++errors;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "client error: %s\n", e.what());
          ++errors;
        }
      }
    });
  for (auto& t : clients) t.join();
  CHECK(errors == 0);
  CHECK(answered == 80);
  nlohmann::json health = service.health();
  CHECK(health["status"] == "degraded");
  REQUIRE(health["degraded"].size() == 1);
  CHECK(health["degraded"][0]["model"] == "bert");
  CHECK(health["degraded"][0]["serving_on"] == "f32");
  CHECK(health["degraded"][0]["reason"] == "injected device fault");
  const auto model_health = service.model_health();
  REQUIRE(model_health.size() == 1);
  REQUIRE(model_health[0].breaker);
  CHECK(model_health[0].breaker->trips == 1);
  CHECK_FALSE(model_health[0].device_memory);  // a CPU backend has none

  const std::string metrics =
      server::Metrics().render({}, service.label_cache_stats(), service.model_health());
  CHECK_THAT(metrics, Catch::Contains("tinybert_breaker_state{model=\"bert\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("tinybert_breaker_trips_total{model=\"bert\"} 1"));

  faults.failing = false;
  std::this_thread::sleep_for(120ms);
  CHECK(same_embeddings(service.embeddings(body)["data"], expected));  // the probe
  CHECK(service.health()["status"] == "ready");
  CHECK_THAT(server::Metrics().render({}, service.label_cache_stats(), service.model_health()),
             Catch::Contains("tinybert_breaker_state{model=\"bert\"} 0"));
}

TEST_CASE("no breaker without a fallback, and the fallback defaults to int8 behind CUDA",
          "[breaker][service]") {
  ServiceOptions o;
  o.backend = "f32";
  CHECK(fallback_backend_of(o).empty());
  o.backend = "cuda-f16";
  CHECK(fallback_backend_of(o) == "int8");
  o.fallback_backend = "";
  CHECK(fallback_backend_of(o).empty());
  o.backend = "int8";
  o.fallback_backend = "int8";
  CHECK(fallback_backend_of(o).empty());  // falling back to itself is no fallback

  ServiceOptions plain;
  plain.models = {{"bert", test::tiny_tbw("tiny-bert")}};
  plain.backend = "ref";
  Service service(plain);
  CHECK_FALSE(service.model_health()[0].breaker);
  CHECK(service.health() == nlohmann::json{{"status", "ready"}});
}
