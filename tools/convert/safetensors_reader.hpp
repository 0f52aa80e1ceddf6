// read_safetensors: the safetensors format (u64 header size, JSON header, raw data) -> SourceModel.
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>

#include "source_model.hpp"

namespace tinybert::convert {

namespace detail {

inline DType safetensors_dtype(const std::string& name, const std::string& tensor) {
  if (name == "F32") return DType::f32;
  if (name == "F16") return DType::f16;
  if (name == "BF16") return DType::bf16;
  if (name == "I8") return DType::i8;
  if (name == "U8") return DType::u8;
  throw Error("tensor " + tensor + ": unsupported dtype '" + name +
              "' (expected F32, F16, BF16, I8 or U8)");
}

// The JSON parser is iterative, but a cheap depth check keeps hostile headers harmless.
inline void check_json_depth(std::string_view text, int max_depth, const std::string& what) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth)
        throw Error(what + ": JSON header nested deeper than " + std::to_string(max_depth));
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

}  // namespace detail

// Parses safetensors bytes; `what` names the source in messages.
inline SourceModel parse_safetensors(std::span<const uint8_t> file, const std::string& what) {
  if (file.size() < 8)
    throw Error(what + ": expected at least 8 bytes (header size), found " +
                std::to_string(file.size()));
  const uint64_t header_size = load_le<uint64_t>(file.data());
  if (header_size > file.size() - 8)
    throw Error(what + ": header size " + std::to_string(header_size) + " exceeds the file (" +
                std::to_string(file.size()) + " bytes)");
  const std::string_view header(reinterpret_cast<const char*>(file.data() + 8), header_size);
  detail::check_json_depth(header, 8, what);

  std::set<std::string> top_keys;
  std::string duplicate;
  const auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& value) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && value.is_string()) {
      const std::string& key = value.get_ref<const std::string&>();
      if (!top_keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  const nlohmann::json root = nlohmann::json::parse(header.begin(), header.end(), on_event,
                                                    /*allow_exceptions=*/false);
  if (root.is_discarded()) throw Error(what + ": header is not valid JSON");
  if (!root.is_object()) throw Error(what + ": header: expected a JSON object");
  if (!duplicate.empty()) throw Error(what + ": tensor name '" + duplicate + "' appears twice");

  const uint64_t data_begin = 8 + header_size;
  const uint64_t data_size = file.size() - data_begin;
  SourceModel model;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(what + ": __metadata__: expected an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          throw Error(what + ": __metadata__." + key + ": expected a string, found " +
                      value.type_name());
        model.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = what + ": tensor " + name;
    if (!entry.is_object()) throw Error(where + ": expected an object");
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string())
      throw Error(where + ": expected a string field 'dtype'");
    if (shape_it == entry.end() || !shape_it->is_array())
      throw Error(where + ": expected an array field 'shape'");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
      throw Error(where + ": expected 'data_offsets' = [begin, end]");
    SourceTensor tensor;
    tensor.name = name;
    tensor.dtype = detail::safetensors_dtype(dtype_it->get<std::string>(), name);
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > uint64_t{INT64_MAX})
        throw Error(where + ": shape entries must be non-negative integers, found " + dim.dump());
      tensor.shape.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
    }
    for (const auto& off : *offsets_it)
      if (!off.is_number_unsigned())
        throw Error(where + ": data_offsets must be non-negative integers, found " + off.dump());
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end)
      throw Error(where + ": data_offsets begin " + std::to_string(begin) + " > end " +
                  std::to_string(end));
    if (end > data_size)
      throw Error(where + ": data_offsets end " + std::to_string(end) + " beyond the data area (" +
                  std::to_string(data_size) + " bytes)");
    const uint64_t expected = detail::tensor_bytes(tensor.shape, tensor.dtype, where);
    if (end - begin != expected)
      throw Error(where + ": expected " + std::to_string(expected) + " bytes for " +
                  shape_string(tensor.shape) + " " + dtype_name(tensor.dtype) + ", found " +
                  std::to_string(end - begin));
    ranges.push_back({begin, end, model.tensors.size()});
    model.tensors.push_back(std::move(tensor));
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      throw Error(what + ": tensors " + model.tensors[ranges[i - 1].index].name + " and " +
                  model.tensors[ranges[i].index].name + " overlap");
  for (const Range& r : ranges) {
    const uint8_t* p = file.data() + data_begin + r.begin;
    model.tensors[r.index].data.assign(p, p + (r.end - r.begin));
  }
  model.metadata.emplace("source_format", "safetensors");
  return model;
}

inline SourceModel read_safetensors(const std::string& path) {
  const MappedFile file(path);
  return parse_safetensors(file.bytes(), path);
}

}  // namespace tinybert::convert
