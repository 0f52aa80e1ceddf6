// A read-only ZIP (incl. ZIP64) directory parser for STORED entries, as torch.save writes them.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "source_model.hpp"

namespace tinybert::convert {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // of the entry's bytes within the archive
  uint64_t size = 0;
  uint32_t crc32 = 0;
};

namespace detail {

inline uint32_t crc32(std::span<const uint8_t> bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (uint8_t b : bytes) c = table[(c ^ b) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

}  // namespace detail

class ZipArchive {
 public:
  ZipArchive(std::span<const uint8_t> file, std::string what)
      : file_(file), what_(std::move(what)) {
    parse();
  }

  const std::vector<ZipEntry>& entries() const { return entries_; }

  const ZipEntry* find(const std::string& name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
  }

  // The entry's bytes, CRC-checked on first access.
  std::span<const uint8_t> data(const ZipEntry& entry) const {
    const std::span<const uint8_t> bytes = file_.subspan(entry.data_offset, entry.size);
    if (checked_.insert(entry.name).second && detail::crc32(bytes) != entry.crc32)
      throw Error(what_ + ": zip entry " + entry.name + ": CRC mismatch (corrupted file)");
    return bytes;
  }

 private:
  uint16_t u16(uint64_t at) const {
    need(at, 2);
    return load_le<uint16_t>(file_.data() + at);
  }
  uint32_t u32(uint64_t at) const {
    need(at, 4);
    return load_le<uint32_t>(file_.data() + at);
  }
  uint64_t u64(uint64_t at) const {
    need(at, 8);
    return load_le<uint64_t>(file_.data() + at);
  }
  void need(uint64_t at, uint64_t n) const {
    if (at > file_.size() || n > file_.size() - at)
      throw Error(what_ + ": zip structure at " + detail::hex_offset(at) + " runs past the end (" +
                  std::to_string(file_.size()) + " bytes)");
  }

  void parse() {
    const uint64_t size = file_.size();
    if (size < 22)
      throw Error(what_ + ": too small for a zip archive (" + std::to_string(size) + " bytes)");
    // End of central directory: last 22 bytes, or earlier if there is a comment.
    uint64_t eocd = UINT64_MAX;
    const uint64_t lowest = size - 22 > 65535 ? size - 22 - 65535 : 0;
    for (uint64_t at = size - 22 + 1; at-- > lowest;) {
      if (u32(at) == 0x06054b50u && at + 22 + u16(at + 20) == size) {
        eocd = at;
        break;
      }
    }
    if (eocd == UINT64_MAX) throw Error(what_ + ": no zip end-of-central-directory record");
    uint64_t count = u16(eocd + 10);
    uint64_t cd_size = u32(eocd + 12);
    uint64_t cd_offset = u32(eocd + 16);
    if (u16(eocd + 4) != 0 || u16(eocd + 6) != 0)
      throw Error(what_ + ": multi-disk zip archives are not supported");
    if (eocd >= 20 && u32(eocd - 20) == 0x07064b50u) {  // ZIP64 locator
      const uint64_t z64 = u64(eocd - 20 + 8);
      if (u32(z64) != 0x06064b50u)
        throw Error(what_ + ": expected a ZIP64 end-of-central-directory record at " +
                    detail::hex_offset(z64));
      need(z64, 56);
      count = u64(z64 + 32);
      cd_size = u64(z64 + 40);
      cd_offset = u64(z64 + 48);
    }
    need(cd_offset, cd_size);
    if (count > cd_size / 46)
      throw Error(what_ + ": central directory claims " + std::to_string(count) + " entries in " +
                  std::to_string(cd_size) + " bytes");
    const uint64_t cd_end = cd_offset + cd_size;
    uint64_t at = cd_offset;
    entries_.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      if (at + 46 > cd_end || u32(at) != 0x02014b50u)
        throw Error(what_ + ": expected a central directory header at " + detail::hex_offset(at));
      const uint16_t flags = u16(at + 8);
      const uint16_t method = u16(at + 10);
      ZipEntry entry;
      entry.crc32 = u32(at + 16);
      uint64_t compressed = u32(at + 20);
      uint64_t uncompressed = u32(at + 24);
      const uint64_t name_len = u16(at + 28), extra_len = u16(at + 30), comment_len = u16(at + 32);
      uint64_t local = u32(at + 42);
      const uint64_t header_end = at + 46 + name_len + extra_len + comment_len;
      if (header_end > cd_end)
        throw Error(what_ + ": central directory entry at " + detail::hex_offset(at) +
                    " runs past the directory");
      entry.name.assign(reinterpret_cast<const char*>(file_.data() + at + 46), name_len);
      // ZIP64 extended information: the 0xffffffff fields follow in a fixed order.
      uint64_t x = at + 46 + name_len;
      const uint64_t x_end = x + extra_len;
      while (x + 4 <= x_end) {
        const uint16_t id = u16(x), len = u16(x + 2);
        if (x + 4 + len > x_end)
          throw Error(what_ + ": zip entry " + entry.name + ": bad extra field");
        if (id == 0x0001) {
          uint64_t p = x + 4;
          const uint64_t p_end = p + len;
          for (uint64_t* field : {&uncompressed, &compressed, &local}) {
            if (*field != 0xffffffffu) continue;
            if (p + 8 > p_end)
              throw Error(what_ + ": zip entry " + entry.name + ": ZIP64 extra field too short");
            *field = u64(p);
            p += 8;
          }
        }
        x += 4 + len;
      }
      if (flags & 1u) throw Error(what_ + ": zip entry " + entry.name + " is encrypted");
      if (method != 0)
        throw Error(what_ + ": zip entry " + entry.name + " is compressed (method " +
                    std::to_string(method) + "); expected STORED (0) as torch.save writes");
      if (compressed != uncompressed)
        throw Error(what_ + ": zip entry " + entry.name + ": stored sizes differ (" +
                    std::to_string(compressed) + " vs " + std::to_string(uncompressed) + ")");
      if (u32(local) != 0x04034b50u)
        throw Error(what_ + ": zip entry " + entry.name + ": expected a local header at " +
                    detail::hex_offset(local));
      entry.data_offset = local + 30 + u16(local + 26) + u16(local + 28);
      entry.size = uncompressed;
      need(entry.data_offset, entry.size);
      if (!by_name_.emplace(entry.name, entries_.size()).second)
        throw Error(what_ + ": zip entry " + entry.name + " appears twice");
      entries_.push_back(std::move(entry));
      at = header_end;
    }
  }

  std::span<const uint8_t> file_;
  std::string what_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t> by_name_;
  mutable std::set<std::string> checked_;
};

}  // namespace tinybert::convert
