// What this CPU offers that oneDNN 2.6's ISA query does not tell: on AArch64, the int8
// dot-product instructions (SDOT, and I8MM's SMMLA), read from the kernel's hwcaps; on x86,
// whether this process may use AMX tiles in its own kernels. (x86's VNNI and AMX are read from
// oneDNN, which also honours ONEDNN_MAX_CPU_ISA: see onednn.hpp.)
#pragma once

#include <string>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
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

// Whether this process may execute AMX tile instructions. Linux (5.16 and later) gives a process
// the 8 KB of tile registers to save on each context switch only after it asks for them with
// arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); a CPU without AMX, or an older kernel,
// refuses, and the first tile instruction would then kill the process (SIGILL). Asked once.
inline bool amx_tiles_enabled() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool enabled = [] {
    constexpr long kArchRequestXcompPermission = 0x1023, kXfeatureTileData = 18;
    return ::syscall(SYS_arch_prctl, kArchRequestXcompPermission, kXfeatureTileData) == 0;
  }();
  return enabled;
#else
  return false;
#endif
}

}  // namespace tinybert::cpu
