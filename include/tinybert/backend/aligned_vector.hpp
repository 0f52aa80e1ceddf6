// AlignedVector: a std::vector whose storage starts on a 64-byte cache line.
//
// Why: glibc's malloc aligns large blocks to 16 bytes, so a 64-byte row of an activation buffer
// straddles two cache lines. AMX tile loads (tileloadd) and AVX-512 loads then touch twice the
// lines: oneDNN's AMX int8 GEMMs ran ~25% slower on such buffers than on aligned ones (issue 18,
// measured at 256 tokens). Every buffer a GEMM, tile load or vector kernel streams is one.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace tinybert {

inline constexpr std::size_t kCacheLine = 64;

template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{kCacheLine}));
  }
  void deallocate(T* p, std::size_t) noexcept {
    ::operator delete (p, std::align_val_t{kCacheLine});
  }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Grows a scratch vector to at least n elements and returns its data. It never shrinks, so a warm
// forward pass allocates nothing.
template <class T>
T* grow(AlignedVector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace tinybert
