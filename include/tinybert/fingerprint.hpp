// A model's content fingerprint: 128 bits over what determines its outputs (config, tokenizer,
// every tensor's name, dtype, shape and bytes), not over its path or file metadata. Two replicas
// that converted the same checkpoint share label embeddings in Redis under it.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "tinybert/format.hpp"
#include "tinybert/mapped_file.hpp"

namespace tinybert {

// Two independent 64-bit lanes of xxHash64's round (multiply, rotate, multiply) over 8-byte
// words, then its avalanche. Fast (a few GB/s) and well mixed; not a cryptographic hash.
class ContentHash {
 public:
  void add(const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    length_ += bytes;
    for (; bytes >= 8; p += 8, bytes -= 8) {
      uint64_t word;
      std::memcpy(&word, p, 8);
      mix(word);
    }
    if (bytes > 0) {  // the tail, zero-padded (the length is mixed in at the end)
      uint64_t word = 0;
      std::memcpy(&word, p, bytes);
      mix(word);
    }
  }
  void add(std::string_view s) {
    const uint64_t n = s.size();  // length-prefixed: ("ab", "c") != ("a", "bc")
    add(&n, sizeof n);
    add(s.data(), s.size());
  }

  std::string hex() const {
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx",
                  static_cast<unsigned long long>(avalanche(lanes_[0] ^ length_)),
                  static_cast<unsigned long long>(avalanche(lanes_[1] + length_)));
    return out;
  }

 private:
  static constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull, kPrime2 = 0xC2B2AE3D27D4EB4Full;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  void mix(uint64_t word) {
    uint64_t& lane = lanes_[words_++ & 1];
    lane = rotl(lane + word * kPrime2, 31) * kPrime1;
  }
  static uint64_t avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= kPrime2;
    h ^= h >> 29;
    h *= 0x165667B19E3779F9ull;
    return h ^ (h >> 32);
  }

  std::array<uint64_t, 2> lanes_{kPrime1, kPrime2};
  uint64_t words_ = 0, length_ = 0;
};

// Reads every tensor once, then lets go of its pages (a backend that copied the weights does not
// get them resident again for this).
inline std::string content_fingerprint(const WeightFile& file) {
  ContentHash hash;
  nlohmann::json config = file.config();
  config.erase("name");  // the converted folder's name: not content
  hash.add(config.dump());
  hash.add(file.tokenizer().dump());
  for (const TensorEntry& t : file.tensors()) {
    hash.add(t.name);
    hash.add(dtype_name(t.view.dtype));
    hash.add(shape_string(t.view.shape));
    hash.add(t.view.data, t.view.bytes());
    release_mapped_pages(t.view.data, t.view.bytes());
  }
  return hash.hex();
}

}  // namespace tinybert
