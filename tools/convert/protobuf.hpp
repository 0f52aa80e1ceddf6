// Protocol-buffers wire-format decoding: one bounds-checked field reader, no schema.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "source_model.hpp"

namespace tinybert::convert::protobuf {

enum WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  WireType type = kVarint;
  uint64_t varint = 0;             // kVarint, kFixed64, kFixed32 (raw bits)
  std::span<const uint8_t> bytes;  // kLengthDelimited
  uint64_t offset = 0;             // of the field's tag in the whole file
};

// Reads the fields of one message; nested messages are read by constructing another Reader on
// Field::bytes, so nesting depth is set by the caller's schema, never by the data.
class Reader {
 public:
  Reader(std::span<const uint8_t> data, uint64_t base_offset, const std::string& what)
      : data_(data), base_(base_offset), what_(what) {}

  bool next(Field& field) {
    if (pos_ >= data_.size()) return false;
    field.offset = base_ + pos_;
    const uint64_t tag = varint();
    field.number = static_cast<uint32_t>(tag >> 3);
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) fail("invalid field number", field.offset);
    switch (tag & 7) {
      case kVarint:
        field.type = kVarint;
        field.varint = varint();
        break;
      case kFixed64:
        field.type = kFixed64;
        field.varint = load_le<uint64_t>(take(8));
        break;
      case kFixed32:
        field.type = kFixed32;
        field.varint = load_le<uint32_t>(take(4));
        break;
      case kLengthDelimited: {
        field.type = kLengthDelimited;
        const uint64_t len = varint();
        field.bytes = std::span<const uint8_t>(take(len), static_cast<size_t>(len));
        break;
      }
      default:
        fail("unsupported wire type " + std::to_string(tag & 7), field.offset);
    }
    return true;
  }

  uint64_t offset_of(std::span<const uint8_t> inner) const {
    return base_ + static_cast<uint64_t>(inner.data() - data_.data());
  }

  [[noreturn]] void fail(const std::string& message, uint64_t offset) const {
    throw Error(what_ + ": protobuf " + message + " at byte " + std::to_string(offset));
  }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("varint runs past the end", base_ + pos_);
      const uint8_t b = data_[pos_++];
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes", base_ + pos_);
  }

  bool done() const { return pos_ >= data_.size(); }

 private:
  const uint8_t* take(uint64_t n) {
    if (n > data_.size() - pos_)
      fail("field length runs past the end of its message", base_ + pos_);
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }

  std::span<const uint8_t> data_;
  uint64_t base_;
  const std::string& what_;
  size_t pos_ = 0;
};

// Appends a repeated scalar field, packed or not. Decode: (raw value bits) -> T.
template <class T, class Decode>
inline void read_repeated(const Field& field, const Reader& parent, std::vector<T>& out,
                          WireType element, Decode decode, const std::string& what) {
  if (field.type == element) {
    out.push_back(decode(field.varint));
    return;
  }
  if (field.type != kLengthDelimited)
    parent.fail("field " + std::to_string(field.number) + " has an unexpected wire type",
                field.offset);
  Reader packed(field.bytes, parent.offset_of(field.bytes), what);
  if (element == kVarint) {
    while (!packed.done()) out.push_back(decode(packed.varint()));
    return;
  }
  const size_t width = element == kFixed32 ? 4 : 8;
  if (field.bytes.size() % width)
    parent.fail(
        "packed field " + std::to_string(field.number) + " is not a whole number of elements",
        field.offset);
  for (size_t i = 0; i < field.bytes.size(); i += width)
    out.push_back(decode(width == 4 ? load_le<uint32_t>(field.bytes.data() + i)
                                    : load_le<uint64_t>(field.bytes.data() + i)));
}

inline std::string as_string(const Field& field) {
  return std::string(reinterpret_cast<const char*>(field.bytes.data()), field.bytes.size());
}

}  // namespace tinybert::convert::protobuf
