# CMake toolchain for aarch64 Linux (Raspberry Pi 4/5, Graviton, Jetson CPUs) with Debian's cross
# compiler, against an arm64 sysroot unpacked from Debian's packages (scripts/cross_aarch64.sh
# makes one). Tests run under qemu-user through CMAKE_CROSSCOMPILING_EMULATOR.
#   cmake --preset aarch64-linux-gnu -DTINYBERT_SYSROOT=/path/to/sysroot
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# The sysroot: -DTINYBERT_SYSROOT, else $TINYBERT_SYSROOT, else the script's cached one.
if(NOT TINYBERT_SYSROOT)
  if(DEFINED ENV{TINYBERT_SYSROOT})
    set(TINYBERT_SYSROOT "$ENV{TINYBERT_SYSROOT}")
  elseif(DEFINED ENV{XDG_CACHE_HOME})
    set(TINYBERT_SYSROOT "$ENV{XDG_CACHE_HOME}/tinybert/sysroot-arm64")
  else()
    set(TINYBERT_SYSROOT "$ENV{HOME}/.cache/tinybert/sysroot-arm64")
  endif()
endif()
get_filename_component(TINYBERT_SYSROOT "${TINYBERT_SYSROOT}" REALPATH)
if(NOT EXISTS "${TINYBERT_SYSROOT}/usr/include")
  message(FATAL_ERROR "no arm64 sysroot at '${TINYBERT_SYSROOT}' (bash scripts/cross_aarch64.sh "
                      "--sysroot makes one; -DTINYBERT_SYSROOT=... names another)")
endif()
set(TINYBERT_SYSROOT "${TINYBERT_SYSROOT}" CACHE PATH "arm64 sysroot (libraries and headers)")
# try_compile projects (FindOpenMP, check_language) read this file again: pass the path on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES TINYBERT_SYSROOT)

# Libraries, headers and CMake packages from the sysroot only (never the host's x86 ones);
# programs (pkg-config) from the host. No --sysroot for the compiler: libc and
# libstdc++ come with the cross compiler (/usr/aarch64-linux-gnu), the rest from these paths.
set(CMAKE_FIND_ROOT_PATH "${TINYBERT_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${TINYBERT_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR} "${TINYBERT_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig")
set(ENV{PKG_CONFIG_LIBDIR} "$ENV{PKG_CONFIG_LIBDIR}:${TINYBERT_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
# pkg-config drops -I/usr/include as a system folder; it is the sysroot's here.
foreach(lang C CXX)
  set(CMAKE_${lang}_STANDARD_INCLUDE_DIRECTORIES "${TINYBERT_SYSROOT}/usr/include"
      "${TINYBERT_SYSROOT}/usr/include/aarch64-linux-gnu")
endforeach()
# The linker resolves the libraries' own dependencies (libssl for cpp-httplib, ...) there too;
# some Debian packages (zlib1g) still install into /lib rather than /usr/lib.
set(sysroot_libs "-Wl,-rpath-link,${TINYBERT_SYSROOT}/usr/lib/aarch64-linux-gnu")
string(APPEND sysroot_libs " -Wl,-rpath-link,${TINYBERT_SYSROOT}/lib/aarch64-linux-gnu")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${sysroot_libs}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${sysroot_libs}")

# Tests (and catch_discover_tests at build time) run the aarch64 programs under qemu-user; the
# sysroot holds every library they load. QEMU_CPU in the environment picks the emulated CPU.
find_program(TINYBERT_QEMU_AARCH64 qemu-aarch64)
if(TINYBERT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${TINYBERT_QEMU_AARCH64};-L;${TINYBERT_SYSROOT}")
endif()
