// The CUDA backend as a plugin (issue 16, 2f): the CLI links no CUDA library and loads
// libtinybert-cuda.so only for a "cuda-*" backend. Whatever happens (no plugin, a library that is
// not one, a plugin of another build, a plugin but no GPU), the request is served on the CPU with
// one line on stderr saying why; a GPU machine serves it on the GPU.
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>

#include "test_support.hpp"

using nlohmann::json;

namespace {

using Run = tinybert::test::CommandResult;
Run run(const std::string& command) { return tinybert::test::run_command(command); }

// `tinybert embed` of one text on the tiny BERT, with TINYBERT_CUDA_PLUGIN set to `plugin`
// (unset when empty, so that the CLI searches its usual places).
Run embed(const std::string& backend, const std::string& plugin = "") {
  const std::string env = plugin.empty() ? "env -u TINYBERT_CUDA_PLUGIN "
                                         : "env TINYBERT_CUDA_PLUGIN='" + plugin + "' ";
  return run(env + TINYBERT_CLI + " embed --model " + tinybert::test::tiny_tbw("tiny-bert") +
             " --backend " + backend + " 天气");
}

// The same vector as on the default CPU backend (within `tolerance`).
void check_cpu_result(const Run& r, double tolerance = 1e-6) {
  REQUIRE(r.exit_code == 0);
  const Run cpu = embed("f32");
  REQUIRE(cpu.exit_code == 0);
  const auto got = json::parse(r.out)["embeddings"][0].get<std::vector<double>>();
  const auto want = json::parse(cpu.out)["embeddings"][0].get<std::vector<double>>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - want[i]) <= tolerance);
}

// One line on stderr: the fallback, with `why` in it.
void check_fallback_line(const Run& r, const std::string& why) {
  INFO(r.err);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, Catch::StartsWith("tinybert: CUDA unavailable, running on the CPU: "));
  CHECK_THAT(r.err, Catch::Contains(why));
}

}  // namespace

TEST_CASE("a CUDA backend without its plugin runs on the CPU and says where it looked",
          "[cuda-plugin]") {
  const std::string missing = "/nonexistent/libtinybert-cuda.so";
  const Run r = embed("cuda-int8", missing);
  check_fallback_line(r, "cannot load the CUDA plugin (" + missing + ": not found)");
  check_cpu_result(r);
}

TEST_CASE("a library that is not the CUDA plugin is refused, not called", "[cuda-plugin]") {
  const Run r = embed("cuda-f16", TINYBERT_NOT_A_PLUGIN);
  check_fallback_line(r, "not a tinybert CUDA plugin (no tinybert_cuda_plugin symbol)");
  check_cpu_result(r);
}

TEST_CASE("a CUDA plugin of another build is refused by its ABI string", "[cuda-plugin]") {
  const Run r = embed("cuda-bf16", TINYBERT_FAKE_PLUGIN);
  check_fallback_line(r, "built for another tinybert or compiler");
  CHECK_THAT(r.err, Catch::Contains("'tinybert 0.0.0 plugin-abi 0 another compiler'"));
  check_cpu_result(r);
}

TEST_CASE("cuda-f32 is refused before any plugin is looked for", "[cuda-plugin]") {
  const Run r = embed("cuda-f32", "/nonexistent/libtinybert-cuda.so");
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("computes in f16, bf16 or int8"));
  CHECK_THAT(r.err, !Catch::Contains("plugin"));
}

TEST_CASE("the CLI finds the plugin of its build tree and serves on the GPU or the CPU",
          "[cuda-plugin]") {
#ifndef TINYBERT_CUDA_PLUGIN_FILE
  tinybert::test::skip("this build has no CUDA plugin (TINYBERT_CUDA=OFF or no nvcc)");
#else
  for (const std::string& plugin : {std::string(), std::string(TINYBERT_CUDA_PLUGIN_FILE)}) {
    INFO("TINYBERT_CUDA_PLUGIN=" << plugin);
    const Run r = embed("cuda-int8", plugin);
    if (r.err.empty()) {  // a GPU: int8 GEMMs, fp16 activations
      check_cpu_result(r, 0.05);
    } else {  // the plugin loaded, and it is what says there is no GPU
      check_fallback_line(r, "running on the CPU: CUDA: ");
      CHECK_THAT(r.err, !Catch::Contains("plugin"));
      check_cpu_result(r);
    }
  }
#endif
}
