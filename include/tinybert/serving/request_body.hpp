// ApiError: a request the service refuses, with its HTTP status and where the problem is; the
// limits of one request; and the strict readers of request fields that throw it. The server, the
// C API and the Python package read request bodies with these.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace tinybert {

using nlohmann::json;

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, const std::string& message)
      : std::runtime_error(message), status(status), type(std::move(type)) {}
  int status;
  std::string type;
  std::optional<size_t> input_index;  // which input string
  std::optional<size_t> position;     // code point in that string, or byte in the body

  // The error as a JSON body that always serialises: a message may quote the bytes of a body that
  // is not UTF-8 (json::parse_error's "last read: ..."), and dump() throws on those, so they
  // become U+FFFD here (found by tests/fuzz/fuzz_request_bodies).
  json body() const {
    const std::string message =
        json::parse(json(what()).dump(-1, ' ', false, json::error_handler_t::replace))
            .get<std::string>();
    json e = {{"status", status}, {"type", type}, {"message", message}};
    if (input_index) e["input_index"] = *input_index;
    if (position) e["position"] = *position;
    return {{"error", e}};
  }
};

// What one request may ask for; over a limit is a 413.
struct RequestLimits {
  size_t max_body_bytes = 1 << 20;
  size_t max_inputs = 64;    // texts per request
  size_t max_chars = 10000;  // code points per text
  size_t max_labels = 64;
  size_t max_schema_names = 64;
};

inline ApiError bad_request(const std::string& message) {
  return {400, "invalid_request", message};
}
inline ApiError too_large(const std::string& message) { return {413, "too_large", message}; }

inline size_t count_code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xC0) != 0x80;  // the body parsed as JSON, so it is valid UTF-8
  return n;
}

// The JSON object of a request body, read strictly: unknown fields and wrong types are errors
// that name the field, so a typo ("top-k") is not silently ignored.
class RequestBody {
 public:
  RequestBody(const std::string& body, std::set<std::string> known, const RequestLimits& limits)
      : body_(body), limits_(limits) {
    if (body.size() > limits.max_body_bytes)
      throw too_large("the body has " + std::to_string(body.size()) + " bytes, the limit is " +
                      std::to_string(limits.max_body_bytes));
    // nlohmann's parser takes a NUL byte for the end of the input and ignores what follows, so
    // "{...}\0anything" would be accepted; JSON text has no raw NUL (found by
    // tests/fuzz/fuzz_request_bodies).
    if (const size_t nul = body.find('\0'); nul != std::string::npos) {
      ApiError error(400, "invalid_json",
                     "the body is not valid JSON: a NUL byte at byte " + std::to_string(nul));
      error.position = nul;
      throw error;
    }
    try {
      json_ = json::parse(body);
    } catch (const json::parse_error& e) {
      ApiError error(400, "invalid_json", std::string("the body is not valid JSON: ") + e.what());
      error.position = e.byte > 0 ? e.byte - 1 : 0;
      throw error;
    } catch (const json::out_of_range& e) {
      // a number beyond double, e.g. 1e400: the parser throws this, not a parse_error (found by
      // tests/fuzz/fuzz_request_bodies; it was a 500)
      throw ApiError(400, "invalid_json", std::string("the body is not valid JSON: ") + e.what());
    }
    if (!json_.is_object())
      throw bad_request(std::string("the body must be a JSON object, found ") + json_.type_name());
    known.insert("model");
    for (const auto& [key, value] : json_.items())
      if (!known.count(key)) throw bad_request("unknown field '" + key + "'");
  }

  const json& raw() const { return json_; }
  // A field with its objects' keys in the order the client wrote them (raw() sorts them). The
  // body is parsed again for it, which costs time quadratic in an object's key count (ordered
  // objects insert by linear search): a body with more than max_keys object keys is refused first.
  nlohmann::ordered_json ordered(const std::string& key, size_t max_keys) const {
    size_t keys = 0;
    const auto count = [&](const auto& self, const json& j) -> void {
      if (j.is_object()) keys += j.size();
      if (j.is_structured())
        for (const auto& child : j) self(self, child);
    };
    count(count, json_);
    if (keys > max_keys)
      throw too_large("the body has " + std::to_string(keys) + " object keys, the limit is " +
                      std::to_string(max_keys));
    return nlohmann::ordered_json::parse(body_)[key];
  }
  bool has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }

  // "input": one string or a non-empty list of strings, within the limits.
  std::vector<std::string> inputs() const {
    if (!has("input")) throw bad_request("missing field 'input' (a string or a list of strings)");
    const json& input = json_["input"];
    std::vector<std::string> texts;
    if (input.is_string()) {
      texts.push_back(input.get<std::string>());
    } else if (input.is_array()) {
      if (input.empty()) throw bad_request("'input' is an empty list");
      if (input.size() > limits_.max_inputs)
        throw too_large("'input' has " + std::to_string(input.size()) + " texts, the limit is " +
                        std::to_string(limits_.max_inputs));
      for (size_t i = 0; i < input.size(); ++i) {
        if (!input[i].is_string()) {
          ApiError e = bad_request("'input[" + std::to_string(i) + "]' must be a string, found " +
                                   input[i].type_name());
          e.input_index = i;
          throw e;
        }
        texts.push_back(input[i].get<std::string>());
      }
    } else {
      throw bad_request(std::string("'input' must be a string or a list of strings, found ") +
                        input.type_name());
    }
    for (size_t i = 0; i < texts.size(); ++i) {
      const size_t chars = count_code_points(texts[i]);
      if (chars > limits_.max_chars) {
        ApiError e = too_large("input " + std::to_string(i) + " has " + std::to_string(chars) +
                               " characters, the limit is " + std::to_string(limits_.max_chars));
        e.input_index = i;
        throw e;
      }
    }
    return texts;
  }

  std::optional<std::string> string(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    if (!json_[key].is_string()) throw wrong_type(key, "a string");
    return json_[key].get<std::string>();
  }
  std::optional<bool> boolean(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    if (!json_[key].is_boolean()) throw wrong_type(key, "true or false");
    return json_[key].get<bool>();
  }
  std::optional<double> number(const std::string& key, double min, double max) const {
    if (!has(key)) return std::nullopt;
    if (!json_[key].is_number()) throw wrong_type(key, "a number");
    const double v = json_[key].get<double>();
    if (!(v >= min && v <= max))
      throw bad_request("'" + key + "' must be in " + format(min) + ".." + format(max) + ", got " +
                        json_[key].dump());
    return v;
  }
  std::optional<int64_t> integer(const std::string& key, int64_t min, int64_t max) const {
    if (!has(key)) return std::nullopt;
    const json& v = json_[key];
    if (!v.is_number_integer()) throw wrong_type(key, "an integer");
    const bool fits = v.is_number_unsigned()
                          ? v.get<uint64_t>() <= static_cast<uint64_t>(max) &&
                                (min <= 0 || v.get<uint64_t>() >= static_cast<uint64_t>(min))
                          : v.get<int64_t>() >= min && v.get<int64_t>() <= max;
    if (!fits)
      throw bad_request("'" + key + "' must be in " + std::to_string(min) + ".." +
                        std::to_string(max) + ", got " + v.dump());
    return v.get<int64_t>();
  }
  // A list of non-empty strings.
  std::vector<std::string> string_list(const std::string& key, size_t max_items) const {
    if (!has(key)) throw bad_request("missing field '" + key + "' (a list of strings)");
    const json& list = json_[key];
    if (!list.is_array()) throw wrong_type(key, "a list of strings");
    if (list.empty()) throw bad_request("'" + key + "' is an empty list");
    if (list.size() > max_items)
      throw too_large("'" + key + "' has " + std::to_string(list.size()) + " items, the limit is " +
                      std::to_string(max_items));
    std::vector<std::string> out;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_string())
        throw wrong_type(key + "[" + std::to_string(i) + "]", "a string", list[i]);
      out.push_back(list[i].get<std::string>());
    }
    return out;
  }

 private:
  ApiError wrong_type(const std::string& key, const std::string& expected) const {
    return wrong_type(key, expected, json_[key]);
  }
  static ApiError wrong_type(const std::string& name, const std::string& expected,
                             const json& value) {
    return bad_request("'" + name + "' must be " + expected + ", found " + value.type_name());
  }
  static std::string format(double v) {
    std::string s = std::to_string(v);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }

  std::string body_;
  json json_;
  const RequestLimits& limits_;
};

}  // namespace tinybert
