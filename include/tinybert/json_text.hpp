// JSON text from a file or an argument, parsed strictly: the whole text or a clear Error.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tinybert/error.hpp"

namespace tinybert {

// nlohmann's parser takes a NUL byte for the end of its input and ignores what follows, so a
// file cut short by NULs ("{...}\0garbage", or a schema truncated mid-write) would be accepted.
// JSON text has no raw NUL, so one is refused first. `what` names the text in the error
// ("schema file s.json"). nlohmann::ordered_json keeps objects' keys in the order written.
template <class Json = nlohmann::json>
Json parse_json_text(std::string_view text, const std::string& what) {
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    throw Error(what + " is not valid JSON: a NUL byte at byte " + std::to_string(nul));
  try {
    return Json::parse(text);
  } catch (const typename Json::exception& e) {  // parse_error, or out_of_range (1e400)
    throw Error(what + " is not valid JSON: " + e.what());
  }
}

}  // namespace tinybert
