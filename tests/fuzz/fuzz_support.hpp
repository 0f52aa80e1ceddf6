// Helpers shared by the libFuzzer targets: invariant checks that abort (libFuzzer then saves
// the input), the one exception type a parser may throw, scratch files and input splitting.
#pragma once

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "tinybert/error.hpp"

namespace tinybert::fuzz {

// An invariant that failed: print it and abort, so that libFuzzer reports a crash and keeps the
// input. (assert() would vanish under NDEBUG, and these are the point of the targets.)
[[noreturn]] inline void invariant_failed(const char* condition, const std::string& detail,
                                          const char* file, int line) {
  std::fprintf(stderr, "INVARIANT FAILED at %s:%d: %s\n  %s\n", file, line, condition,
               detail.c_str());
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(condition, detail)                                               \
  do {                                                                              \
    if (!(condition))                                                               \
      ::tinybert::fuzz::invariant_failed(#condition, (detail), __FILE__, __LINE__); \
  } while (0)

// Runs a parser on hostile input. It may succeed or throw tinybert::Error with a message; any
// other exception (std::out_of_range, nlohmann::json::type_error, ...) escapes, terminates the
// process and so counts as a finding: bad input must never surface as something else.
template <class Fn>
bool ok_or_error(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const Error& e) {
    FUZZ_CHECK(e.what()[0] != '\0', "an Error without a message");
    return false;
  }
}

// A per-process scratch directory (parsers that take a path read their input from here). In
// /dev/shm when there is one: the targets write a file per execution.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm")
                                           ? "/dev/shm"
                                           : std::filesystem::temp_directory_path();
    auto d = base / ("tinybert-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  // Removed when libFuzzer exits normally (-max_total_time, -runs); a crash leaves it. Registered
  // after `dir` is constructed, so it runs before `dir` is destroyed.
  static const bool cleanup = std::atexit([] {
                                std::error_code ignored;
                                std::filesystem::remove_all(scratch_dir(), ignored);
                              }) == 0;
  (void)cleanup;
  return dir;
}

inline std::filesystem::path write_file(const std::string& name, std::string_view bytes) {
  const auto path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  return path;
}

// Splits the input at "\n----\n" into at most `parts` pieces (the seeds use the same marker), so
// one input can carry several files or several texts.
inline std::vector<std::string_view> split_parts(std::string_view data, size_t parts) {
  static constexpr std::string_view kMarker = "\n----\n";
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const size_t at = data.find(kMarker);
    if (at == std::string_view::npos) break;
    out.push_back(data.substr(0, at));
    data.remove_prefix(at + kMarker.size());
  }
  out.push_back(data);
  return out;
}

// Takes one byte from the front (0 when empty): options the targets draw before the payload.
inline uint8_t take_byte(std::string_view& data) {
  if (data.empty()) return 0;
  const auto b = static_cast<uint8_t>(data.front());
  data.remove_prefix(1);
  return b;
}

inline bool finite_in_unit(double x) { return std::isfinite(x) && x >= 0.0 && x <= 1.0; }

}  // namespace tinybert::fuzz
