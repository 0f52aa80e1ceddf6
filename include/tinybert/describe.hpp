// describe(): a .tbw file's config, tokenizer settings, metadata and tensor table as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include "tinybert/format.hpp"

namespace tinybert {

inline nlohmann::json describe(const WeightFile& file) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : file.tensors())
    tensors.push_back({{"name", t.name},
                       {"dtype", dtype_name(t.view.dtype)},
                       {"shape", t.view.shape},
                       {"offset", t.offset},
                       {"bytes", t.view.bytes()}});
  return {{"path", file.path()},         {"file_bytes", file.file_bytes()},
          {"config", file.config()},     {"tokenizer", file.tokenizer()},
          {"metadata", file.metadata()}, {"tensors", tensors}};
}

}  // namespace tinybert
