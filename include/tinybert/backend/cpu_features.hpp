// What this CPU offers for int8 matrix products that oneDNN 2.6's ISA query does not tell: on
// AArch64, the dot-product instructions (SDOT, and I8MM's SMMLA), read from the kernel's hwcaps.
// (x86's VNNI is read from oneDNN, which also honours ONEDNN_MAX_CPU_ISA: see onednn.hpp.)
#pragma once

#include <string>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace tinybert::cpu {

// "SDOT", "SDOT, I8MM", or "" where the CPU has no int8 dot-product instructions (Cortex-A72 of
// the Raspberry Pi 4, Cortex-A53) or is not AArch64. With them, int8 products accumulate in 32
// bits and the weights can use all 8 bits.
inline std::string arm_int8_dot_product() {
#if defined(__aarch64__) && defined(__linux__)
  // The bit values of the kernel's uapi asm/hwcap.h, spelled out for older headers.
  constexpr unsigned long kHwcapAsimdDotProduct = 1UL << 20;  // HWCAP_ASIMDDP
  constexpr unsigned long kHwcap2Int8MatMul = 1UL << 13;      // HWCAP2_I8MM
  const unsigned long hwcap = ::getauxval(AT_HWCAP), hwcap2 = ::getauxval(AT_HWCAP2);
  if (!(hwcap & kHwcapAsimdDotProduct)) return "";
  return (hwcap2 & kHwcap2Int8MatMul) ? "SDOT, I8MM" : "SDOT";
#else
  return "";
#endif
}

}  // namespace tinybert::cpu
