// read_pytorch_bin: torch.save zip archives (data.pkl + data/<key> storages) -> SourceModel.
#pragma once

#include <map>
#include <span>
#include <string>

#include "pickle.hpp"
#include "source_model.hpp"
#include "zip_reader.hpp"

namespace tinybert::convert {

namespace detail {

// Storage classes we turn into tensors; others (Long, Int, Double, Bool...) are skipped.
inline bool torch_storage_dtype(const std::string& type, DType& dtype) {
  if (type == "torch.FloatStorage")
    dtype = DType::f32;
  else if (type == "torch.HalfStorage")
    dtype = DType::f16;
  else if (type == "torch.BFloat16Storage")
    dtype = DType::bf16;
  else if (type == "torch.CharStorage")
    dtype = DType::i8;
  else if (type == "torch.ByteStorage")
    dtype = DType::u8;
  else
    return false;
  return true;
}

// Copies a (possibly strided) view out of its storage, every index checked against the storage.
inline std::vector<uint8_t> materialise(const pickle::Tensor& t, std::span<const uint8_t> storage,
                                        size_t elem, const std::string& where) {
  if (storage.size() % elem)
    throw Error(where + ": storage of " + std::to_string(storage.size()) +
                " bytes is not a whole number of " + std::to_string(elem) + "-byte elements");
  const uint64_t storage_elems = storage.size() / elem;
  int64_t numel = 0;
  try {
    numel = checked_numel(t.size);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  if (numel == 0) return {};
  if (t.storage_offset < 0) throw Error(where + ": negative storage offset");
  // Highest element index touched; each term is bounded before it is added.
  uint64_t last = static_cast<uint64_t>(t.storage_offset);
  if (last >= storage_elems) throw Error(where + ": storage offset beyond the storage");
  for (size_t d = 0; d < t.size.size(); ++d) {
    if (t.stride[d] < 0) throw Error(where + ": negative stride " + shape_string(t.stride));
    const uint64_t step = static_cast<uint64_t>(t.size[d] - 1);
    const uint64_t stride = static_cast<uint64_t>(t.stride[d]);
    if (stride != 0 && step > (storage_elems - last) / stride)
      throw Error(where + ": view " + shape_string(t.size) + " stride " + shape_string(t.stride) +
                  " offset " + std::to_string(t.storage_offset) + " reaches past its storage of " +
                  std::to_string(storage_elems) + " elements");
    last += step * stride;
  }
  if (last >= storage_elems) throw Error(where + ": view reaches past its storage");
  if (static_cast<uint64_t>(numel) > storage_elems)
    throw Error(where + ": " + std::to_string(numel) + " elements from a storage of " +
                std::to_string(storage_elems) + " (expanded views are not supported)");
  std::vector<uint8_t> out(static_cast<size_t>(numel) * elem);
  bool contiguous = true;
  int64_t expected = 1;
  for (size_t d = t.size.size(); d-- > 0;) {
    if (t.size[d] != 1 && t.stride[d] != expected) contiguous = false;
    expected *= t.size[d];
  }
  const uint8_t* base = storage.data() + static_cast<uint64_t>(t.storage_offset) * elem;
  if (contiguous) {
    std::memcpy(out.data(), base, out.size());
    return out;
  }
  std::vector<int64_t> index(t.size.size(), 0);
  uint64_t src = 0;  // element offset from base, kept in step with index
  for (int64_t i = 0; i < numel; ++i) {
    std::memcpy(&out[static_cast<size_t>(i) * elem], base + src * elem, elem);
    for (size_t d = t.size.size(); d-- > 0;) {
      if (++index[d] < t.size[d]) {
        src += static_cast<uint64_t>(t.stride[d]);
        break;
      }
      src -= static_cast<uint64_t>(t.stride[d]) * static_cast<uint64_t>(t.size[d] - 1);
      index[d] = 0;
    }
  }
  return out;
}

}  // namespace detail

// Parses torch.save bytes; `what` names the source in messages.
inline SourceModel parse_pytorch_bin(std::span<const uint8_t> file, const std::string& what) {
  if (file.size() >= 2 && file[0] == 0x80 && file[1] <= 5)
    throw Error(what + ": legacy (non-zip) torch.save format; re-save with torch >= 1.6");
  if (file.size() < 4 || load_le<uint32_t>(file.data()) != 0x04034b50u)
    throw Error(what + ": expected a zip archive (torch.save format), found no 'PK' signature");
  const ZipArchive zip(file, what);
  const ZipEntry* pkl = nullptr;
  std::string root;
  for (const ZipEntry& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos &&
        e.name.compare(slash + 1, std::string::npos, "data.pkl") == 0) {
      if (pkl) throw Error(what + ": two data.pkl records (" + pkl->name + ", " + e.name + ")");
      pkl = &e;
      root = e.name.substr(0, slash + 1);
    }
  }
  if (!pkl)
    throw Error(what + ": zip archive has no <root>/data.pkl record (not a torch.save file)");
  if (const ZipEntry* order = zip.find(root + "byteorder")) {
    const auto bytes = zip.data(*order);
    if (std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()) != "little")
      throw Error(what + ": byteorder record is not 'little'");
  }
  const pickle::Program prog = pickle::run(zip.data(*pkl), what + ": " + pkl->name);

  // The state dict: the root dict, or its "state_dict" / "model" entry when it has one.
  const auto is_dict = [&](uint32_t o) { return prog.at(o).kind == pickle::Kind::dict; };
  if (!is_dict(prog.root)) throw Error(what + ": expected a dict at the top of data.pkl");
  uint32_t dict = prog.root;
  for (const char* wrapper : {"state_dict", "model"}) {
    const auto& items = prog.at(prog.root).items;
    bool found = false;
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      const pickle::Object& key = prog.at(items[i]);
      if (key.kind == pickle::Kind::string && key.text == wrapper && is_dict(items[i + 1])) {
        dict = items[i + 1];
        found = true;
      }
    }
    if (found) break;
  }

  // Python dict semantics: a repeated key keeps its first position and its last value.
  const auto& items = prog.at(dict).items;
  std::vector<std::string> order;
  std::map<std::string, uint32_t> value_of;
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    const pickle::Object& key = prog.at(items[i]);
    if (key.kind != pickle::Kind::string) throw Error(what + ": state dict key is not a string");
    if (value_of.emplace(key.text, items[i + 1]).second)
      order.push_back(key.text);
    else
      value_of[key.text] = items[i + 1];
  }

  SourceModel model;
  std::string skipped;
  const auto skip = [&](const std::string& note) {
    skipped += (skipped.empty() ? "" : ",") + note;
  };
  for (const std::string& name : order) {
    const pickle::Object& value = prog.at(value_of[name]);
    if (value.kind != pickle::Kind::tensor) {
      skip(name);
      continue;
    }
    const pickle::Tensor& t = prog.tensors[static_cast<size_t>(value.integer)];
    const pickle::Storage& s = prog.storages[t.storage];
    const std::string where = what + ": tensor " + name;
    if (s.type.rfind("torch.", 0) != 0 || s.type.size() < 13 ||
        s.type.compare(s.type.size() - 7, 7, "Storage") != 0)
      throw Error(where + ": unsupported storage type " + s.type);
    SourceTensor out;
    out.name = name;
    if (!detail::torch_storage_dtype(s.type, out.dtype)) {
      skip(name + " (" + s.type + ")");
      continue;
    }
    const ZipEntry* entry = zip.find(root + "data/" + s.key);
    if (!entry) throw Error(where + ": storage record " + root + "data/" + s.key + " is missing");
    out.shape = t.size;
    out.data = detail::materialise(t, zip.data(*entry), dtype_size(out.dtype), where);
    model.tensors.push_back(std::move(out));
  }
  if (!skipped.empty()) model.metadata["skipped"] = skipped;
  model.metadata["source_format"] = "pytorch";
  return model;
}

inline SourceModel read_pytorch_bin(const std::string& path) {
  const MappedFile file(path);
  return parse_pytorch_bin(file.bytes(), path);
}

}  // namespace tinybert::convert
