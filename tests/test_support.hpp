// Helpers shared by the tests: where ../shared and tests/data are, and a visible skip.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "convert.hpp"
#include "tinybert/model.hpp"

namespace tinybert::test {

// This test process's scratch directory (converted models, corrupted copies), removed with all
// it holds when the process exits, also through skip(): CTest runs a process per test case, and
// each used to leave ~100 MB in /tmp.
struct ScratchRoot {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("tinybert-test-" + std::to_string(::getpid()));
  void remove() const {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  ~ScratchRoot() { remove(); }
};
inline const ScratchRoot& scratch_root() {
  static const ScratchRoot root;
  return root;
}

// Catch2 2.13 has no SKIP. CTest runs each TEST_CASE as its own process and treats exit code
// 4 as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt), so a skip is reported as such.
[[noreturn]] inline void skip(const std::string& reason) {
  std::fprintf(stderr, "SKIP: %s\n", reason.c_str());
  std::fflush(stderr);
  scratch_root().remove();  // _Exit runs no destructors
  std::_Exit(4);
}

inline std::filesystem::path shared_dir() { return TINYBERT_SHARED_DIR; }

// The words that start one of our programs: in a cross build its emulator first
// (TINYBERT_PROGRAM_RUNNER, "qemu-aarch64 -L SYSROOT": no binfmt_misc needed), then the program.
inline std::vector<std::string> program_argv(const std::string& program) {
  std::vector<std::string> words;
#ifdef TINYBERT_PROGRAM_RUNNER
  std::istringstream runner(TINYBERT_PROGRAM_RUNNER);
  for (std::string word; runner >> word;) words.push_back(word);
#endif
  words.push_back(program);
  return words;
}
// The same as the start of a shell command line.
inline std::string program_command(const std::string& program) {
  std::string line;
  for (const std::string& word : program_argv(program)) line += (line.empty() ? "" : " ") + word;
  return line;
}
inline std::filesystem::path test_data_dir() { return TINYBERT_TEST_DATA_DIR; }

// A path under ../shared, or a visible skip when it is absent (e.g. a clone without shared/).
inline std::filesystem::path shared_path_or_skip(const std::string& relative) {
  const auto path = shared_dir() / relative;
  if (!std::filesystem::exists(path))
    skip(path.string() + " not found (../shared is not beside the repo)");
  return path;
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

// A scratch directory for files a test writes, under scratch_root().
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = scratch_root().path / name;
  std::filesystem::create_directories(dir);
  return dir;
}

// Converts a model folder to a .tbw in this test's scratch directory and opens it.
// What a shell command line printed on stdout and on stderr, and its exit code (-1: killed).
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
inline CommandResult run_command(const std::string& command) {
  // one stderr file per process: CTest runs the cases of one test program in parallel
  const auto err_file = scratch_dir("commands") / ("stderr-" + std::to_string(::getpid()));
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>" + err_file.string()).c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buffer[4096];
  while (const size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) r.out.append(buffer, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

inline std::unique_ptr<Model> convert_model(const std::filesystem::path& folder,
                                            const std::string& name,
                                            const std::string& dtype = "auto") {
  const auto out = scratch_dir("models") / (name + "-" + dtype + ".tbw");
  convert::ConvertOptions options;
  options.dtype = dtype;
  convert::convert_folder(folder, out.string(), options);
  return std::make_unique<Model>(out.string());
}

// tests/data/tiny/NAME converted once per test process, into the scratch directory: its path.
inline std::string tiny_tbw(const std::string& name) {
  const auto out = scratch_dir("tiny") / (name + ".tbw");
  if (!std::filesystem::exists(out))
    convert::convert_folder(test_data_dir() / "tiny" / name, out.string());
  return out.string();
}

// Calls call(i) for every request i from 4 threads at once, each thread starting at another
// request and going round twice; returns what each thread got per request. Catch's macros are
// not thread-safe, so the caller checks afterwards.
template <class Call>
auto results_from_threads(size_t requests, Call call) {
  constexpr size_t kThreads = 4;
  std::vector<std::vector<decltype(call(size_t{0}))>> got(
      kThreads, std::vector<decltype(call(size_t{0}))>(requests));
  std::vector<std::exception_ptr> errors(kThreads);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      try {
        for (size_t k = 0; k < 2 * requests; ++k)
          got[t][(t + k) % requests] = call((t + k) % requests);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
  return got;
}

}  // namespace tinybert::test
