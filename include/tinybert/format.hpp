// The .tbw weight file: layout constants, a validating zero-copy reader over mmap, and a writer.
// docs/weight-format.md is the specification.
#pragma once

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tinybert/error.hpp"
#include "tinybert/mapped_file.hpp"
#include "tinybert/tensor.hpp"

namespace tinybert {

namespace format {
inline constexpr char kMagic[8] = {'T', 'I', 'N', 'Y', 'B', 'E', 'R', 'T'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kAlignment = 64;
inline constexpr size_t kPreambleBytes = 24;  // magic + version + alignment + header_bytes
inline constexpr uint64_t kMaxHeaderBytes = 256ull << 20;
}  // namespace format

struct TensorEntry {
  std::string name;
  TensorView view;
  uint64_t offset = 0;  // from the data start
};

// A validated, opened .tbw file. Tensor views point into the mapping; nothing is copied.
class WeightFile {
 public:
  explicit WeightFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
    parse();
  }

  const nlohmann::json& config() const { return header_.at("config"); }
  const nlohmann::json& tokenizer() const { return header_.at("tokenizer"); }
  const nlohmann::json& metadata() const { return metadata_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const std::string& path() const { return file_->path(); }
  size_t file_bytes() const { return file_->size(); }

  const TensorEntry* find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const TensorEntry& at(std::string_view name) const {
    const TensorEntry* entry = find(name);
    if (!entry) throw Error(path() + ": missing tensor '" + std::string(name) + "'");
    return *entry;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error(path() + ": " + what); }

  void parse() {
    const uint8_t* bytes = file_->data();
    const size_t size = file_->size();
    if (size < format::kPreambleBytes || std::memcmp(bytes, format::kMagic, 8) != 0)
      fail("not a .tbw file (expected magic \"TINYBERT\")");
    const auto version = load_le<uint32_t>(bytes + 8);
    if (version != format::kVersion)
      fail("unsupported .tbw version " + std::to_string(version) + " (expected " +
           std::to_string(format::kVersion) + ")");
    const auto alignment = load_le<uint32_t>(bytes + 12);
    if (alignment < 16 || alignment > 4096 || (alignment & (alignment - 1)) != 0)
      fail("bad alignment " + std::to_string(alignment) + " (expected a power of two in 16..4096)");
    const auto header_bytes = load_le<uint64_t>(bytes + 16);
    if (header_bytes > format::kMaxHeaderBytes || header_bytes > size - format::kPreambleBytes)
      fail("header of " + std::to_string(header_bytes) + " bytes does not fit in a file of " +
           std::to_string(size) + " bytes");
    const uint64_t data_start = format::kPreambleBytes + header_bytes;
    if (data_start % alignment != 0)
      fail("data start " + std::to_string(data_start) + " is not aligned");

    const char* header_text = reinterpret_cast<const char*>(bytes + format::kPreambleBytes);
    try {
      header_ = nlohmann::json::parse(header_text, header_text + header_bytes);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header_.is_object()) fail("header is not a JSON object");
    for (const char* key : {"config", "tokenizer"})
      if (!header_.contains(key) || !header_[key].is_object())
        fail(std::string("header has no \"") + key + "\" object");
    if (!header_.contains("tensors") || !header_["tensors"].is_array())
      fail("header has no \"tensors\" array");
    if (header_.contains("metadata")) metadata_ = header_["metadata"];

    const uint64_t data_bytes = size - data_start;
    for (const auto& item : header_["tensors"])
      parse_tensor(item, bytes + data_start, data_bytes, alignment);
    check_no_overlap();
  }

  void parse_tensor(const nlohmann::json& item, const uint8_t* data, uint64_t data_bytes,
                    uint32_t alignment) {
    const auto field = [&](const char* key) -> const nlohmann::json& {
      if (!item.is_object() || !item.contains(key))
        fail(std::string("tensor entry without \"") + key + "\"");
      return item[key];
    };
    TensorEntry entry;
    if (!field("name").is_string() || field("name").get_ref<const std::string&>().empty())
      fail("tensor entry with an empty or non-string name");
    entry.name = field("name").get<std::string>();
    const std::string where = "tensor '" + entry.name + "': ";
    if (!field("dtype").is_string()) fail(where + "dtype is not a string");
    try {
      entry.view.dtype = parse_dtype(field("dtype").get<std::string>());
    } catch (const Error& e) {
      fail(where + e.what());
    }
    if (!field("shape").is_array() || field("shape").size() > 8)
      fail(where + "shape must be an array of at most 8 dims");
    for (const auto& d : field("shape")) {
      if (!d.is_number_unsigned()) fail(where + "shape holds a non-integer or negative dim");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX)) fail(where + "dim too large");
      entry.view.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!field("offset").is_number_unsigned() || !field("bytes").is_number_unsigned())
      fail(where + "offset and bytes must be non-negative integers");
    entry.offset = field("offset").get<uint64_t>();
    const uint64_t nbytes = field("bytes").get<uint64_t>();
    int64_t numel = 0;
    try {
      numel = checked_numel(entry.view.shape);
    } catch (const Error& e) {
      fail(where + e.what());
    }
    if (static_cast<uint64_t>(numel) > UINT64_MAX / dtype_size(entry.view.dtype) ||
        static_cast<uint64_t>(numel) * dtype_size(entry.view.dtype) != nbytes)
      fail(where + "expected " + std::to_string(numel) + " x " +
           std::to_string(dtype_size(entry.view.dtype)) + " bytes for " +
           shape_string(entry.view.shape) + " " + dtype_name(entry.view.dtype) + ", got " +
           std::to_string(nbytes));
    if (entry.offset % alignment != 0)
      fail(where + "offset " + std::to_string(entry.offset) + " is not aligned");
    if (entry.offset > data_bytes || nbytes > data_bytes - entry.offset)
      fail(where + "data [" + std::to_string(entry.offset) + ", +" + std::to_string(nbytes) +
           ") lies outside the file's " + std::to_string(data_bytes) + " data bytes");
    entry.view.data = data + entry.offset;
    if (!index_.emplace(entry.name, tensors_.size()).second)
      fail("duplicate tensor name '" + entry.name + "'");
    tensors_.push_back(std::move(entry));
  }

  void check_no_overlap() const {
    std::vector<std::pair<uint64_t, const TensorEntry*>> by_offset;
    for (const auto& t : tensors_) by_offset.emplace_back(t.offset, &t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const TensorEntry& prev = *by_offset[i - 1].second;
      if (prev.offset + prev.view.bytes() > by_offset[i].first)
        fail("tensors '" + prev.name + "' and '" + by_offset[i].second->name + "' overlap");
    }
  }

  std::unique_ptr<MappedFile> file_;
  nlohmann::json header_;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t> index_;
};

// Collects tensors (owned bytes) and writes a .tbw file.
class WeightFileWriter {
 public:
  void set_config(nlohmann::json config) { config_ = std::move(config); }
  void set_tokenizer(nlohmann::json tokenizer) { tokenizer_ = std::move(tokenizer); }
  void set_metadata(nlohmann::json metadata) { metadata_ = std::move(metadata); }

  void add(std::string name, DType dtype, Shape shape, std::vector<uint8_t> bytes) {
    const size_t expected = static_cast<size_t>(checked_numel(shape)) * dtype_size(dtype);
    if (bytes.size() != expected)
      throw Error("tensor '" + name + "': expected " + std::to_string(expected) + " bytes, got " +
                  std::to_string(bytes.size()));
    for (const auto& t : tensors_)
      if (t.name == name) throw Error("duplicate tensor '" + name + "'");
    tensors_.push_back({std::move(name), dtype, std::move(shape), std::move(bytes)});
  }
  void add_f32(std::string name, Shape shape, const std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(float));
    if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    add(std::move(name), DType::f32, std::move(shape), std::move(bytes));
  }

  void write(const std::string& path) const {
    nlohmann::json tensors = nlohmann::json::array();
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors_) {
      offset = align(offset);
      offsets.push_back(offset);
      tensors.push_back({{"name", t.name},
                         {"dtype", dtype_name(t.dtype)},
                         {"shape", t.shape},
                         {"offset", offset},
                         {"bytes", t.bytes.size()}});
      offset += t.bytes.size();
    }
    nlohmann::json header = {{"config", config_},
                             {"tokenizer", tokenizer_},
                             {"tensors", tensors},
                             {"metadata", metadata_}};
    std::string text = header.dump();
    text.resize(align(format::kPreambleBytes + text.size()) - format::kPreambleBytes, ' ');

    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot open for writing");
    const uint32_t version = format::kVersion, alignment = format::kAlignment;
    const uint64_t header_bytes = text.size();
    out.write(format::kMagic, 8);
    out.write(reinterpret_cast<const char*>(&version), 4);
    out.write(reinterpret_cast<const char*>(&alignment), 4);
    out.write(reinterpret_cast<const char*>(&header_bytes), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    uint64_t written = 0;
    static const char zeros[format::kAlignment] = {};
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.write(zeros, static_cast<std::streamsize>(offsets[i] - written));
      out.write(reinterpret_cast<const char*>(tensors_[i].bytes.data()),
                static_cast<std::streamsize>(tensors_[i].bytes.size()));
      written = offsets[i] + tensors_[i].bytes.size();
    }
    if (!out.flush()) throw Error(path + ": write failed");
  }

 private:
  static uint64_t align(uint64_t n) {
    return (n + format::kAlignment - 1) / format::kAlignment * format::kAlignment;
  }

  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  nlohmann::json config_ = nlohmann::json::object(), tokenizer_ = nlohmann::json::object();
  nlohmann::json metadata_ = nlohmann::json::object();
  std::vector<Pending> tensors_;
};

}  // namespace tinybert
