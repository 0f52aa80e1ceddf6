// Helpers shared by the tinybert subcommands: option parsing, input texts, integer options.
#pragma once

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tinybert/backend/select.hpp"
#include "tinybert/error.hpp"

namespace tinybert::cli {

using nlohmann::json;

// Parsed "--name value" options and "--flag" switches, the rest positional.
struct Args {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
  std::vector<std::string> positional;

  std::string value(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  bool has(const std::string& name) const { return values.count(name) || flags.count(name); }
};

inline Args parse_args(const std::vector<std::string>& raw,
                       const std::vector<std::string>& with_value,
                       const std::vector<std::string>& switches) {
  Args args;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& a = raw[i];
    if (a.size() > 1 && a[0] == '-' && a != "-") {
      if (std::find(with_value.begin(), with_value.end(), a) != with_value.end()) {
        if (i + 1 >= raw.size()) throw Error(a + " needs a value");
        args.values[a] = raw[++i];
      } else if (std::find(switches.begin(), switches.end(), a) != switches.end()) {
        args.flags[a] = true;
      } else {
        throw Error("unknown option " + a);
      }
    } else {
      args.positional.push_back(a);
    }
  }
  return args;
}

inline std::vector<std::string> input_texts(const Args& args) {
  if (!args.positional.empty()) return args.positional;
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  if (lines.empty()) throw Error("no input text (give TEXT arguments or lines on stdin)");
  return lines;
}

inline float parse_float(const std::string& s, const std::string& what) {
  size_t used = 0;
  float v = 0;
  try {
    v = std::stof(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size() || !std::isfinite(v))
    throw Error(what + " must be a number, got '" + s + "'");
  return v;
}

inline int64_t parse_int(const std::string& s, const std::string& what, int64_t min, int64_t max) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < min || v > max)
    throw Error(what + " must be an integer in " + std::to_string(min) + ".." +
                std::to_string(max) + ", got '" + s + "'");
  return v;
}

// The runner --backend names, saying on stderr what a user should know about it: a precision the
// CPU lacks that runs as f32 instead, or the int8 path (stdout stays the JSON answer).
inline std::unique_ptr<Runner> make_cli_runner(const Model& model, const Args& args) {
  auto runner = make_runner(model, args.value("--backend", default_backend()));
  if (const std::string note = runner->backend_note(); !note.empty())
    std::cerr << "tinybert: " << note << "\n";
  return runner;
}

}  // namespace tinybert::cli
