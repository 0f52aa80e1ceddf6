// Helpers shared by the tests: where ../shared and tests/data are, and a visible skip.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>

#include "convert.hpp"
#include "tinybert/model.hpp"

namespace tinybert::test {

// Catch2 2.13 has no SKIP. CTest runs each TEST_CASE as its own process and treats exit code
// 4 as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt), so a skip is reported as such.
[[noreturn]] inline void skip(const std::string& reason) {
  std::fprintf(stderr, "SKIP: %s\n", reason.c_str());
  std::fflush(stderr);
  std::_Exit(4);
}

inline std::filesystem::path shared_dir() { return TINYBERT_SHARED_DIR; }
inline std::filesystem::path test_data_dir() { return TINYBERT_TEST_DATA_DIR; }

// A path under ../shared, or a visible skip when it is absent (e.g. a clone without shared/).
inline std::filesystem::path shared_path_or_skip(const std::string& relative) {
  const auto path = shared_dir() / relative;
  if (!std::filesystem::exists(path)) skip(path.string() + " not found (../shared is not beside the repo)");
  return path;
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

// A scratch directory for files a test writes (converted models, corrupted copies).
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("tinybert-test-" + std::to_string(::getpid())) / name;
  std::filesystem::create_directories(dir);
  return dir;
}

// Converts a model folder to a .tbw in this test's scratch directory and opens it.
inline std::unique_ptr<Model> convert_model(const std::filesystem::path& folder, const std::string& name,
                                            const std::string& dtype = "auto") {
  const auto out = scratch_dir("models") / (name + "-" + dtype + ".tbw");
  convert::ConvertOptions options;
  options.dtype = dtype;
  convert::convert_folder(folder, out.string(), options);
  return std::make_unique<Model>(out.string());
}

}  // namespace tinybert::test
