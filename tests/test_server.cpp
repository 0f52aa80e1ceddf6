// tinybert-server as a client sees it: every endpoint, every error class, the batching
// scheduler's queue, deadline and shutdown, on a server started on a free port.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "test_support.hpp"
#include "tinybert/tasks/classify.hpp"
#ifdef TINYBERT_HAVE_CUDA
#include "tinybert/backend/cuda.hpp"
#endif
// After Eigen (test_support.hpp): <resolv.h>'s `_res` macro breaks Eigen's headers.
#include <httplib.h>

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// A tiny model converted once per test process.
std::string tiny_model(const std::string& name) {
  const auto out = tinybert::test::scratch_dir("server") / (name + ".tbw");
  if (!fs::exists(out)) {
    tinybert::convert::ConvertOptions options;
    tinybert::convert::convert_folder(tinybert::test::test_data_dir() / "tiny" / name, out.string(),
                                      options);
  }
  return out.string();
}

std::string real_model(const std::string& name) {
  const auto folder = tinybert::test::shared_path_or_skip("models/" + name);
  const auto out = tinybert::test::scratch_dir("server") / (name + ".tbw");
  if (!fs::exists(out)) {
    tinybert::convert::ConvertOptions options;
    tinybert::convert::convert_folder(folder, out.string(), options);
  }
  return out.string();
}

std::vector<std::string> tiny_models() {
  return {"--model", "bert=" + tiny_model("tiny-bert"), "--model", "mlm=" + tiny_model("tiny-mlm"),
          "--model", "uie=" + tiny_model("tiny-uie"),   "--model", "nli=" + tiny_model("tiny-nli")};
}

// tinybert-server in a child process on a free port; stopped with SIGTERM (and checked to exit
// 0) when the test ends.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args) {
    const auto port_file =
        tinybert::test::scratch_dir("server") / ("port-" + std::to_string(++count_));
    fs::remove(port_file);
    args.insert(args.end(), {"--port", "0", "--port-file", port_file.string()});
    if (std::find(args.begin(), args.end(), "--backend") == args.end())
      args.insert(args.end(), {"--backend", "f32"});
    std::vector<char*> argv{const_cast<char*>(TINYBERT_SERVER)};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::execv(TINYBERT_SERVER, argv.data());
      std::_Exit(127);
    }
    for (int i = 0; i < 600 && port_ == 0; ++i) {  // up to 60 s (sanitizer builds load slowly)
      std::ifstream in(port_file);
      if (!(in >> port_)) port_ = 0;
      int status = 0;
      if (port_ == 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("tinybert-server exited during start-up");
      }
      if (port_ == 0) std::this_thread::sleep_for(100ms);
    }
    REQUIRE(port_ > 0);
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // SIGTERM and the exit status.
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }

  httplib::Result post(const std::string& path, const std::string& body) const {
    return client().Post(path.c_str(), body, "application/json");
  }
  httplib::Result post(const std::string& path, const json& body) const {
    return post(path, body.dump());
  }
  httplib::Result get(const std::string& path) const { return client().Get(path.c_str()); }

 private:
  static inline int count_ = 0;
  pid_t pid_ = -1;
  int port_ = 0;
};

json body_of(const httplib::Result& r) {
  REQUIRE(r);
  INFO(r->body);
  return json::parse(r->body);
}

// The error object of a response with the given status.
json error_of(const httplib::Result& r, int status) {
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == status);
  const json body = json::parse(r->body);
  REQUIRE(body.contains("error"));
  CHECK(body["error"]["status"] == status);
  CHECK(!body["error"]["message"].get<std::string>().empty());
  return body["error"];
}

}  // namespace

TEST_CASE("every endpoint answers on the tiny models", "[server]") {
  const ServerProcess server(tiny_models());

  const json classify = body_of(
      server.post("/v1/classify", json{{"input", {"天气", "水"}}, {"labels", {"a", "b", "c"}}}));
  CHECK(classify["model"] == "bert");
  CHECK(classify["mode"] == "embedding");
  REQUIRE(classify["results"].size() == 2);
  CHECK(classify["results"][1]["text"] == "水");
  CHECK(classify["results"][0]["labels"].size() == 3);
  CHECK(classify["latency_ms"].get<double>() >= 0);

  const json nli = body_of(server.post(
      "/v1/classify", json{{"model", "nli"}, {"input", "天气"}, {"labels", {"a", "b"}}}));
  CHECK(nli["mode"] == "nli");

  const json fill = body_of(server.post(
      "/v1/fill-mask", json{{"input", "天[MASK]水"}, {"top_k", 3}, {"attribution", 2}}));
  REQUIRE(fill["results"].size() == 1);
  const json& mask = fill["results"][0]["masks"][0];
  CHECK(mask["candidates"].size() == 3);
  CHECK(mask["start"] == 1);
  CHECK(mask["end"] == 7);
  CHECK(mask["attribution"].size() == 2);

  const json schema = {"天", {{"水", {"气"}}}};
  const json two_inputs = {"天气水", "水"};
  const json extract =
      body_of(server.post("/v1/extract", json{{"input", two_inputs}, {"schema", schema}}));
  CHECK(extract["model"] == "uie");
  CHECK(extract["results"].size() == 2);

  const json embeddings =
      body_of(server.post("/v1/embeddings", json{{"input", {"天气", "水水水"}}}));
  REQUIRE(embeddings["data"].size() == 2);
  CHECK(embeddings["data"][1]["index"] == 1);
  CHECK(embeddings["data"][0]["embedding"].size() == 32);
  CHECK(embeddings["usage"]["prompt_tokens"] == 4 + 5);

  const json models = body_of(server.get("/v1/models"));
  CHECK(models["models"].size() == 4);
  CHECK(models["tasks"]["classify"] == "bert");
  CHECK(models["tasks"]["fill-mask"] == "mlm");
  CHECK(models["tasks"]["extract"] == "uie");
  CHECK(models["tasks"]["embeddings"] == "bert");

  const auto health = server.get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["ready"] == true);

  const json openapi = body_of(server.get("/openapi.json"));
  CHECK(openapi["openapi"] == "3.0.3");
  for (const char* path : {"/v1/classify", "/v1/fill-mask", "/v1/extract", "/v1/embeddings",
                           "/v1/models", "/health", "/metrics", "/openapi.json"})
    CHECK(openapi["paths"].contains(path));

  const auto metrics = server.get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->get_header_value("Content-Type").find("text/plain") == 0);
  CHECK_THAT(
      metrics->body,
      Catch::Contains("tinybert_requests_total{endpoint=\"/v1/classify\",status=\"200\"} 2"));
  CHECK_THAT(metrics->body,
             Catch::Contains("tinybert_request_duration_seconds_bucket{endpoint=\"/v1/extract\""));
  CHECK_THAT(metrics->body, Catch::Contains("tinybert_batch_tokens_bucket{model=\"uie\""));
  CHECK_THAT(metrics->body, Catch::Contains("tinybert_batch_run_seconds_count{model=\"uie\"}"));
  CHECK_THAT(metrics->body, Catch::Contains("tinybert_queue_depth{model=\"bert\"} 0"));
  CHECK_THAT(metrics->body,
             Catch::Contains("tinybert_label_cache_misses_total 3"));  // a, b, c once
  CHECK_THAT(metrics->body, Catch::Contains("tinybert_label_cache_hit_ratio"));

  const auto page = server.get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type").find("text/html") == 0);
  CHECK(page->get_header_value("Access-Control-Allow-Origin").empty());  // CORS off by default
}

TEST_CASE("malformed requests are 400s that say what and where", "[server][errors]") {
  const ServerProcess server(tiny_models());
  json e =
      error_of(server.post("/v1/classify", std::string(R"({"input": "x", "labels": ["a",)")), 400);
  CHECK(e["type"] == "invalid_json");
  CHECK(e["position"] == 30);
  e = error_of(server.post("/v1/embeddings", std::string("{\"input\": \"\xff\xfe\"}")),
               400);  // invalid UTF-8
  CHECK(e["type"] == "invalid_json");
  e = error_of(server.post("/v1/embeddings", std::string("[1, 2]")), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("JSON object"));
  e = error_of(server.post("/v1/fill-mask", json{{"input", "[MASK]"}, {"top-k", 3}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("unknown field 'top-k'"));
  e = error_of(server.post("/v1/fill-mask", json{{"input", "[MASK]"}, {"top_k", "3"}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("'top_k' must be an integer"));
  e = error_of(server.post("/v1/fill-mask", json{{"input", "[MASK]"}, {"top_k", 0}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("1..50"));
  e = error_of(server.post("/v1/embeddings", json{{"input", 42}}), 400);
  CHECK_THAT(e["message"].get<std::string>(),
             Catch::Contains("'input' must be a string or a list of strings"));
  e = error_of(server.post("/v1/embeddings", json{{"input", {"a", 7}}}), 400);
  CHECK(e["input_index"] == 1);
  e = error_of(server.post("/v1/embeddings", json::object()), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("missing field 'input'"));
  e = error_of(server.post("/v1/classify", json{{"input", "x"}, {"labels", {"a", ""}}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("empty"));
  // one string is a list split on "," and "，" (ModelScope's form); other types are errors
  e = error_of(server.post("/v1/classify", json{{"input", "x"}, {"labels", 42}}), 400);
  CHECK_THAT(e["message"].get<std::string>(),
             Catch::Contains("'labels' must be a list of strings"));
  CHECK(body_of(server.post("/v1/classify",
                            json{{"input", "x"}, {"labels", "a，b"}}))["results"][0]["labels"]
            .size() == 2);
  // bad mask syntax: which input, which character
  e = error_of(server.post("/v1/fill-mask", json{{"input", {"天[MASK]", "天气水"}}}), 400);
  CHECK(e["input_index"] == 1);
  e = error_of(server.post("/v1/fill-mask", json{{"input", "天气[MASK"}}), 400);
  CHECK(e["input_index"] == 0);
  CHECK(e["position"] == 2);
  // invalid schemas
  const json bad_child = {{"水", 3}};
  e = error_of(server.post("/v1/extract", json{{"input", "天气"}, {"schema", bad_child}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("schema"));
  e = error_of(server.post("/v1/extract", json{{"input", "天气"}, {"schema", ""}}), 400);
  e = error_of(server.post("/v1/extract", json{{"input", "天气"}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("missing field 'schema'"));
  const json threshold_one = {{"input", "天气"}, {"schema", "天"}, {"threshold", 1}};
  e = error_of(server.post("/v1/extract", threshold_one), 400);
  // a model that does not serve the task
  e = error_of(server.post("/v1/fill-mask", json{{"model", "uie"}, {"input", "天[MASK]"}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("does not serve fill-mask"));
}

TEST_CASE("classify with calibrate and a list of templates; content-free inputs cached; 400s",
          "[server][calibrate]") {
  const ServerProcess server(tiny_models());
  const auto classify = [&](json body) {
    body["input"] = "北京天气好";
    return server.post("/v1/classify", body);
  };
  const json plain = body_of(classify({{"labels", {"好", "北京"}}, {"template", "是{}的"}}));
  CHECK(plain["template"] == "是{}的");
  CHECK(plain["calibrate"] == false);
  CHECK_FALSE(plain["results"][0]["labels"][0].contains("content_free"));
  const json two_templates = {"{}", "是{}的"};
  const json calibrated = body_of(
      classify({{"labels", {"好", "北京"}}, {"template", two_templates}, {"calibrate", true}}));
  CHECK(calibrated["template"] == json{"{}", "是{}的"});
  CHECK(calibrated["calibrate"] == true);
  const json& labels = calibrated["results"][0]["labels"];
  REQUIRE(labels.size() == 2);
  const auto calibrated_cosine = [](const json& l) {
    return l["cosine"].get<double>() - l["content_free"].get<double>();
  };
  CHECK(labels[0]["score"].get<double>() ==
        Approx(1 / (1 + std::exp(-(calibrated_cosine(labels[0]) - calibrated_cosine(labels[1])) /
                                 0.05)))
            .margin(1e-4));
  // both templates count: the ensemble's cosines are not those of 是{}的 alone
  const json& alone = plain["results"][0]["labels"];
  const json& same = alone[0]["label"] == labels[0]["label"] ? alone[0] : alone[1];
  CHECK(std::abs(labels[0]["cosine"].get<double>() - same["cosine"].get<double>()) > 1e-4);

  // Label cache misses: 2 (是{}的), then 2 ({}) + the content-free inputs; a new label set then
  // costs its label only.
  body_of(classify({{"labels", {"天气"}}, {"calibrate", true}}));
  const auto metrics = server.get("/metrics");
  REQUIRE(metrics);
  const size_t misses = 2 + 2 + std::size(tinybert::kContentFreeInputs) + 1;
  CHECK_THAT(metrics->body,
             Catch::Contains("tinybert_label_cache_misses_total " + std::to_string(misses) + "\n"));

  json e = error_of(classify({{"labels", {"a"}}, {"calibrate", "yes"}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("'calibrate' must be true or false"));
  e = error_of(classify({{"labels", {"a"}}, {"template", json::array()}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("'template' is an empty list"));
  e = error_of(classify({{"labels", {"a"}}, {"template", 3}}), 400);
  CHECK_THAT(e["message"].get<std::string>(),
             Catch::Contains("'template' must be a string or a list of strings"));
  e = error_of(classify({{"labels", {"a"}}, {"template", {"{}", 5}}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("template[1]"));
  e = error_of(classify({{"labels", {"a"}}, {"template", {"{}", "x"}}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("template 1 'x' has no {}"));
  e = error_of(classify({{"labels", {"a"}}, {"template", {"{}", "{}"}}}), 400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("duplicate template '{}'"));
  json many = json::array();
  for (size_t i = 0; i <= tinybert::kMaxLabelTemplates; ++i)
    many.push_back(std::to_string(i) + "{}");
  e = error_of(classify({{"labels", {"a"}}, {"template", many}}), 413);
  e = error_of(
      server.post(
          "/v1/classify",
          json{{"model", "nli"}, {"input", "x"}, {"labels", {"a", "b"}}, {"calibrate", true}}),
      400);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("calibration is for embedding mode"));

  const json openapi = body_of(server.get("/openapi.json"));
  const json& request = openapi["components"]["schemas"]["ClassifyRequest"]["properties"];
  CHECK(request["calibrate"]["type"] == "boolean");
  CHECK(request["template"]["oneOf"][1]["maxItems"] == tinybert::kMaxLabelTemplates);
  CHECK(openapi["components"]["schemas"]["ClassifyResponse"]["properties"].contains("calibrate"));
}

TEST_CASE("over-limit requests are 413s, unknown things 404s, wrong methods 405s",
          "[server][errors]") {
  auto args = tiny_models();
  args.insert(args.end(), {"--max-body-bytes", "4096", "--max-inputs", "3", "--max-chars", "20",
                           "--max-labels", "2", "--max-schema-names", "3"});
  const ServerProcess server(args);
  json e = error_of(server.post("/v1/embeddings", json{{"input", std::string(5000, 'a')}}), 413);
  e = error_of(server.post("/v1/embeddings", json{{"input", {"a", "b", "c", "d"}}}), 413);
  CHECK(e["type"] == "too_large");
  std::string twenty_one;
  for (int i = 0; i < 21; ++i) twenty_one += "天";
  e = error_of(server.post("/v1/embeddings", json{{"input", {"a", twenty_one}}}), 413);
  CHECK(e["input_index"] == 1);
  e = error_of(server.post("/v1/classify", json{{"input", "a"}, {"labels", {"a", "b", "c"}}}), 413);
  e = error_of(
      server.post("/v1/extract", json{{"input", "a"}, {"schema", {"a", "b", {{"c", {"d"}}}}}}),
      413);
  e = error_of(
      server.post("/v1/classify", json{{"model", "nope"}, {"input", "a"}, {"labels", {"a"}}}), 404);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("unknown model 'nope'"));
  e = error_of(server.get("/v2/classify"), 404);
  e = error_of(server.get("/v1/classify"), 405);
  e = error_of(server.post("/health", std::string("{}")), 405);
}

TEST_CASE("a task without a model is a 404 and the models list says so", "[server][errors]") {
  const ServerProcess server({"--model", "mlm=" + tiny_model("tiny-mlm")});
  const json e = error_of(server.post("/v1/extract", json{{"input", "a"}, {"schema", "a"}}), 404);
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("no model serves extract"));
  const json models = body_of(server.get("/v1/models"));
  CHECK(models["tasks"]["extract"].is_null());
  CHECK(models["tasks"]["fill-mask"] == "mlm");
}

TEST_CASE("concurrent requests are merged into batches and answered as if alone",
          "[server][batching]") {
  auto args = tiny_models();
  args.insert(args.end(), {"--max-wait-ms", "50"});
  const ServerProcess batched(args);
  args.push_back("--no-batching");
  const ServerProcess alone(args);
  const std::vector<std::string> texts = {"天", "天气", "水水",   "天气水",
                                          "气", "水天", "气气气", "天水气天"};
  const auto request = [&](const std::string& text) {
    return json{{"input", text}, {"labels", {"天", "水"}}, {"template", "{}"}};
  };
  // Catch2's assertions are not thread-safe: the threads only send, the checks run here.
  std::vector<std::future<httplib::Result>> merged;
  for (const auto& text : texts)
    merged.push_back(std::async(std::launch::async,
                                [&, text] { return batched.post("/v1/classify", request(text)); }));
  for (size_t i = 0; i < texts.size(); ++i) {
    const json one = body_of(merged[i].get());
    const json reference = body_of(alone.post("/v1/classify", request(texts[i])));
    REQUIRE(one["results"][0]["labels"].size() == 2);
    for (size_t l = 0; l < 2; ++l) {
      const json& a = one["results"][0]["labels"][l];
      const json& b = reference["results"][0]["labels"][l];
      CHECK(a["label"] == b["label"]);
      CHECK(a["cosine"].get<double>() == Approx(b["cosine"].get<double>()).margin(1e-5));
    }
  }
  // At least one batch held more than one request's pass (they all arrived within 50 ms).
  const auto metrics = batched.get("/metrics");
  REQUIRE(metrics);
  CHECK_THAT(metrics->body,
             !Catch::Contains("tinybert_batch_passes_bucket{model=\"bert\",le=\"1\"} 9"));
  const auto alone_metrics = alone.get("/metrics");
  CHECK_THAT(alone_metrics->body,
             Catch::Contains("tinybert_batch_passes_bucket{model=\"bert\",le=\"1\"} 9"));
}

TEST_CASE("a full queue answers 503 with Retry-After, a passed deadline 504",
          "[server][batching]") {
  SECTION("queue") {
    auto args = tiny_models();
    // The first pass waits 2 s for company it cannot take (token budget), so the others queue.
    args.insert(args.end(),
                {"--queue-size", "1", "--max-wait-ms", "2000", "--max-batch-tokens", "8"});
    const ServerProcess server(args);
    std::vector<std::future<httplib::Result>> replies;
    for (int i = 0; i < 4; ++i) {
      replies.push_back(std::async(std::launch::async, [&] {
        return server.post("/v1/embeddings", json{{"input", "天气水"}});
      }));
      std::this_thread::sleep_for(100ms);
    }
    int ok = 0, overloaded = 0;
    for (auto& f : replies) {
      const auto r = f.get();
      REQUIRE(r);
      if (r->status == 200) ++ok;
      if (r->status == 503) {
        ++overloaded;
        CHECK(r->get_header_value("Retry-After") == "1");
        CHECK(json::parse(r->body)["error"]["type"] == "overloaded");
      }
    }
    CHECK(ok == 2);
    CHECK(overloaded == 2);
  }
  SECTION("deadline") {
    auto args = tiny_models();
    args.insert(args.end(), {"--request-timeout-ms", "100", "--max-wait-ms", "1000"});
    const ServerProcess server(args);
    const json e = error_of(server.post("/v1/embeddings", json{{"input", "天气水"}}), 504);
    CHECK(e["type"] == "timeout");
  }
}

TEST_CASE("SIGTERM finishes the requests in flight, then the server exits 0", "[server]") {
  auto args = tiny_models();
  args.insert(args.end(),
              {"--max-wait-ms", "1500"});  // the request is still waiting when SIGTERM comes
  ServerProcess server(args);
  auto reply = std::async(std::launch::async, [&] {
    return server.post("/v1/embeddings", json{{"input", "天气水"}});
  });
  std::this_thread::sleep_for(300ms);
  CHECK(server.stop() == 0);
  const auto r = reply.get();
  REQUIRE(r);
  CHECK(r->status == 200);
}

#ifdef TINYBERT_HAVE_CUDA  // the server links tinybert::cuda too
TEST_CASE("a server asked for the GPU serves on the CPU when there is none",
          "[server][cuda-fallback]") {
  if (!tinybert::cuda_unavailable_reason())
    tinybert::test::skip("a GPU is present: the fallback path is not taken");
  auto args = tiny_models();
  args.insert(args.end(), {"--backend", "cuda-f16"});
  const ServerProcess server(args);
  const json embeddings = body_of(server.post("/v1/embeddings", json{{"input", "天气"}}));
  CHECK(embeddings["data"][0]["embedding"].size() == 32);
}
#endif

TEST_CASE("CORS headers only when asked for", "[server]") {
  auto args = tiny_models();
  args.insert(args.end(), {"--cors-origin", "http://example.test"});
  const ServerProcess server(args);
  const auto r = server.get("/v1/models");
  REQUIRE(r);
  CHECK(r->get_header_value("Access-Control-Allow-Origin") == "http://example.test");
}

TEST_CASE("the real models answer as their references say", "[server][real]") {
  const ServerProcess server({"--model", "bge=" + real_model("bge-small-zh-v1.5"), "--model",
                              "mlm=" + real_model("demo-mlm"), "--model",
                              "uie=" + real_model("demo-uie")});
  const json review = {{"input", "这家餐厅的菜非常好吃，服务也很周到"},
                       {"labels", {"正面", "负面"}},
                       {"template", "这是一条{}评论"}};
  const json sentiment = body_of(server.post("/v1/classify", review));
  CHECK(sentiment["results"][0]["labels"][0]["label"] == "正面");

  const json references = tinybert::test::read_json(tinybert::test::shared_dir() /
                                                    "models/demo-uie/reference_outputs.json");
  const json& first = references["cases"][0];
  const json extract = body_of(
      server.post("/v1/extract", json{{"input", first["text"]}, {"schema", first["prompt"]}}));
  INFO(extract.dump());
  const json& span = extract["results"][0][first["prompt"].get<std::string>()][0];
  const json& expected = first["spans"][0];
  CHECK(span["text"] == expected["text"]);
  CHECK(span["start"] == expected["start"]);
  CHECK(span["end"] == expected["end"]);
  CHECK(span["probability"].get<double>() ==
        Approx(expected["probability"].get<double>()).margin(1e-3));

  const std::string capital = "北京是中国的首[MASK]。";
  const json fill =
      body_of(server.post("/v1/fill-mask", json{{"input", capital}, {"attribution", 3}}));
  CHECK(fill["results"][0]["masks"][0]["candidates"].size() == 5);
  CHECK(fill["results"][0]["masks"][0]["attribution"].size() == 3);
}

// ModelScope's published layouts served as downloaded (tests/data/modelscope, goldens from
// tools/modelscope): SiameseUIE answers in UIE's nested shape by default and in ModelScope's own
// with "format": "modelscope".
TEST_CASE("ModelScope models: SiameseUIE extraction in both shapes", "[server][modelscope]") {
  const auto folder = tinybert::test::test_data_dir() / "modelscope";
  const auto convert = [&](const std::string& name) {
    const auto out = tinybert::test::scratch_dir("server") / ("ms-" + name + ".tbw");
    if (!fs::exists(out)) tinybert::convert::convert_folder(folder / name, out.string(), {});
    return out.string();
  };
  const ServerProcess server(
      {"--model", "siamese=" + convert("siamese-uie"), "--model", "uie=" + tiny_model("tiny-uie")});
  std::ifstream golden_file(folder / "siamese-uie/golden.json");
  const auto golden = nlohmann::ordered_json::parse(golden_file);
  // {"人物": {"比赛项目": null, "参赛地点": null}}
  const auto& nested_case = golden["cases"][1];
  // the schema as the client writes it, key order included
  const std::string body = "{\"model\": \"siamese\", \"input\": " + nested_case["text"].dump() +
                           ", \"schema\": " + nested_case["schema"].dump() +
                           ", \"format\": \"modelscope\"}";
  const auto response = server.post("/v1/extract", body);
  const json modelscope = body_of(response);
  CHECK(modelscope["format"] == "modelscope");
  CHECK(modelscope["results"][0] == json::parse(nested_case["output"].dump()));

  json request = json::parse(body);
  request.erase("format");
  const json nested = body_of(server.post("/v1/extract", request));
  CHECK(nested["format"] == "uie");
  const json& people = nested["results"][0]["人物"];
  // the two 人物 spans of the golden chains, each with its relations
  REQUIRE(people.size() == 2);
  CHECK(people[0]["text"] == "中，");
  CHECK(people[0]["start"] == 18);
  CHECK(people[0]["relations"]["比赛项目"].size() == 2);
  CHECK(people[0]["probability"].get<double>() > 0);

  const auto wrong_format = server.post(
      "/v1/extract",
      json{{"model", "uie"}, {"input", "张三"}, {"schema", "人名"}, {"format", "modelscope"}});
  REQUIRE(wrong_format);
  CHECK(wrong_format->status == 400);
  CHECK_THAT(wrong_format->body, Catch::Contains("is for SiameseUIE models"));
  const auto bad_format = server.post(
      "/v1/extract",
      json{{"model", "siamese"}, {"input", "张三"}, {"schema", "人物"}, {"format", "xml"}});
  REQUIRE(bad_format);
  CHECK(bad_format->status == 400);
  CHECK_THAT(bad_format->body, Catch::Contains("expected uie or modelscope"));
  const auto empty_text = server.post(
      "/v1/extract", json{{"model", "siamese"}, {"input", {"好", ""}}, {"schema", "人物"}});
  REQUIRE(empty_text);
  CHECK(empty_text->status == 400);
  CHECK(json::parse(empty_text->body)["error"]["input_index"] == 1);
  // the schema's key order costs a second parse of the body: a body with too many object keys
  // is refused before it
  json many_keys = json::object();
  for (int i = 0; i < 2000; ++i) many_keys[std::to_string(i)] = nullptr;
  const auto huge = server.post(
      "/v1/extract", json{{"model", "siamese"}, {"input", "张三"}, {"schema", many_keys}});
  REQUIRE(huge);
  CHECK(huge->status == 413);
  CHECK_THAT(huge->body, Catch::Contains("object keys"));
  const json openapi = body_of(server.get("/openapi.json"));
  CHECK(openapi["components"]["schemas"]["ExtractRequest"]["properties"]["format"]["enum"] ==
        json{"uie", "modelscope"});
}

TEST_CASE("ModelScope models: StructBERT zero-shot scored as ModelScope's pipeline",
          "[server][modelscope]") {
  const auto folder = tinybert::test::test_data_dir() / "modelscope";
  const auto out = tinybert::test::scratch_dir("server") / "ms-zero-shot.tbw";
  if (!fs::exists(out))
    tinybert::convert::convert_folder(folder / "structbert-zero-shot", out.string(), {});
  const ServerProcess server({"--model", "zs=" + out.string()});
  const json golden = tinybert::test::read_json(folder / "structbert-zero-shot/golden.json");
  for (const json& c : golden["cases"]) {
    if (c["max_length"] != 512) continue;  // the 32-token truncation case is the library test's
    INFO(c["name"]);
    json request = {
        {"input", c["text"]}, {"labels", c["candidate_labels"]}, {"multi_label", c["multi_label"]}};
    if (c.contains("hypothesis_template")) request["template"] = c["hypothesis_template"];
    const json answer = body_of(server.post("/v1/classify", request));
    CHECK(answer["mode"] == "modelscope-nli");
    CHECK(answer["template"] == c.value("hypothesis_template", "{}"));
    const json& labels = answer["results"][0]["labels"];
    REQUIRE(labels.size() == c["output"]["labels"].size());
    for (size_t l = 0; l < labels.size(); ++l) {
      CHECK(labels[l]["label"] == c["output"]["labels"][l]);
      CHECK(std::abs(labels[l]["score"].get<double>() - c["output"]["scores"][l].get<double>()) <
            1e-4);
    }
  }
  const auto calibrated =
      server.post("/v1/classify", json{{"input", "好"}, {"labels", "a,b"}, {"calibrate", true}});
  REQUIRE(calibrated);
  CHECK(calibrated->status == 400);
  const auto no_labels = server.post("/v1/classify", json{{"input", "好"}, {"labels", " ,，"}});
  REQUIRE(no_labels);
  CHECK(no_labels->status == 400);
}
