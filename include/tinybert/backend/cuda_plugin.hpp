// The CUDA backend as a plugin loaded at run time (libtinybert-cuda.so, src/cuda/plugin.cpp):
// its one entry point, the ABI check, and the loader make_runner() uses for "cuda-*" backends.
// Programs that include this link no CUDA library: cudart and cuBLASLt (541 MB) are mapped only
// when a CUDA backend is asked for and the plugin loads (docs/cuda.md, "The plugin").
#pragma once

#include <dlfcn.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "tinybert/backend/cuda.hpp"
#include "tinybert/model.hpp"
#include "tinybert/runner.hpp"

// The project version (top-level CMakeLists.txt defines it for every user of tinybert::tinybert).
#ifndef TINYBERT_VERSION
#define TINYBERT_VERSION "unknown"
#endif
// Bump when the entry point below changes shape.
#define TINYBERT_CUDA_PLUGIN_ABI_VERSION 1

namespace tinybert {

// The plugin's file name, and its directory relative to the programs' (bin/) once installed.
inline constexpr const char* kCudaPluginFile = "libtinybert-cuda.so";
#ifndef TINYBERT_CUDA_PLUGIN_RELATIVE_DIR
#define TINYBERT_CUDA_PLUGIN_RELATIVE_DIR "../lib/tinybert"
#endif
// The environment variable that names the plugin file (and then only that file is tried).
inline constexpr const char* kCudaPluginEnv = "TINYBERT_CUDA_PLUGIN";

// What the plugin hands over. C++ objects (Model, Runner, std::function, exceptions) cross the
// boundary, so the plugin and the program must be built from the same headers by the same
// compiler and standard library: `abi` is read first (a plain C string at a fixed offset) and
// nothing else is touched unless it equals the program's cuda_plugin_abi().
struct CudaPlugin {
  const char* abi;
  // FallbackRunner (cuda_runner.hpp): the GPU while it works, else make_cpu()'s runner, with the
  // reason reported once on stderr. The CPU runner is the program's own (oneDNN or reference),
  // so the plugin needs no CPU backend of its own.
  std::unique_ptr<Runner> (*make_runner)(const Model& model, const CudaOptions& options,
                                         std::function<std::unique_ptr<Runner>()> make_cpu);
};

// The one symbol the plugin exports: `extern "C" const CudaPlugin* tinybert_cuda_plugin();`.
inline constexpr const char* kCudaPluginEntry = "tinybert_cuda_plugin";
using CudaPluginEntry = const CudaPlugin* (*)();

#if defined(__clang__)
#define TINYBERT_PLUGIN_COMPILER "clang"
#else
#define TINYBERT_PLUGIN_COMPILER "gcc"
#endif

// Everything that must agree for the objects above to mean the same on both sides: the version,
// the compiler, libstdc++'s string ABI and debug mode, Eigen's alignment (which -march changes),
// and the sizes of the types that cross.
inline std::string cuda_plugin_abi() {
  std::string abi = "tinybert " TINYBERT_VERSION " " TINYBERT_PLUGIN_COMPILER " " __VERSION__;
  // (appended piece by piece: GCC 12 warns falsely (-Wrestrict) on " " + std::to_string(n))
  const auto add = [&abi](const char* name, size_t value) {
    abi += name;
    abi += std::to_string(value);
  };
  add(" plugin-abi ", TINYBERT_CUDA_PLUGIN_ABI_VERSION);
  add(" eigen-align ", EIGEN_MAX_ALIGN_BYTES);
#ifdef _GLIBCXX_USE_CXX11_ABI
  add(" cxx11-abi ", _GLIBCXX_USE_CXX11_ABI);
#endif
#ifdef _GLIBCXX_DEBUG
  abi += " glibcxx-debug";
#endif
  for (const size_t size : {sizeof(Model), sizeof(ForwardRequest), sizeof(ForwardResult),
                            sizeof(CudaOptions), sizeof(Runner), sizeof(std::string)})
    add(" ", size);
  return abi;
}

namespace cuda_plugin_detail {

// The directory of the executable or shared object that holds this code: the program for the
// CLI and the server, libtinybert.so for the C API, the extension module for Python.
inline std::filesystem::path own_directory() {
  static const int anchor = 0;
  Dl_info info{};
  if (dladdr(&anchor, &info) && info.dli_fname &&
      std::string(info.dli_fname).find('/') != std::string::npos)
    return std::filesystem::path(info.dli_fname).parent_path();
  return {};
}

inline std::filesystem::path executable_directory() {
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::path() : exe.parent_path();
}

// Where the plugin is looked for, in order (docs/cuda.md): $TINYBERT_CUDA_PLUGIN alone when set;
// else next to this code's file and the executable, in tinybert/ below them (libtinybert.so in
// lib/) and in the installed layout's lib/tinybert beside bin/; the build tree's lib/tinybert for
// programs that were not installed; last the bare name, which the dynamic loader resolves
// (LD_LIBRARY_PATH, ld.so.cache).
inline std::vector<std::string> candidates() {
  if (const char* path = std::getenv(kCudaPluginEnv); path && *path) return {path};
  std::vector<std::string> paths;
  const auto add = [&paths](const std::filesystem::path& path) {
    const std::string p = path.lexically_normal().string();
    if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(p);
  };
  for (const auto& dir : {own_directory(), executable_directory()}) {
    if (dir.empty()) continue;
    add(dir / kCudaPluginFile);
    add(dir / "tinybert" / kCudaPluginFile);
    add(dir / TINYBERT_CUDA_PLUGIN_RELATIVE_DIR / kCudaPluginFile);
  }
#ifdef TINYBERT_CUDA_PLUGIN_BUILD_DIR
  add(std::filesystem::path(TINYBERT_CUDA_PLUGIN_BUILD_DIR) / kCudaPluginFile);
#endif
  paths.emplace_back(kCudaPluginFile);
  return paths;
}

struct Loaded {
  const CudaPlugin* plugin = nullptr;
  std::string error;  // why not, naming every place tried
};

// Opens one candidate: the plugin, or why not.
inline const CudaPlugin* open(const std::string& path, std::string& why) {
  const bool is_path = path.find('/') != std::string::npos;
  std::error_code error;
  if (is_path && !std::filesystem::exists(path, error)) {
    why = path + ": not found";
    return nullptr;
  }
  // RTLD_LOCAL: nothing of the plugin (its copies of inline functions included) can stand in for
  // the program's own symbols. It is never closed once used: its runners' code lives in it.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* message = dlerror();
    why = message ? message : path + ": dlopen failed";
    return nullptr;
  }
  const auto entry = reinterpret_cast<CudaPluginEntry>(dlsym(handle, kCudaPluginEntry));
  if (!entry) {
    why = path + ": not a tinybert CUDA plugin (no " + kCudaPluginEntry + " symbol)";
    dlclose(handle);
    return nullptr;
  }
  const CudaPlugin* plugin = entry();
  const std::string ours = cuda_plugin_abi();
  if (!plugin || !plugin->abi || plugin->abi != ours || !plugin->make_runner) {
    why = path + ": built for another tinybert or compiler (plugin: '" +
          (plugin && plugin->abi ? plugin->abi : "?") + "', program: '" + ours +
          "'); rebuild it with this program";
    dlclose(handle);
    return nullptr;
  }
  return plugin;
}

inline Loaded load() {
  Loaded loaded;
  std::string tried;
  for (const std::string& path : candidates()) {
    std::string why;
    if ((loaded.plugin = open(path, why))) return loaded;
    tried += (tried.empty() ? "" : "; ") + why;
  }
  loaded.error = std::string("cannot load the CUDA plugin (") + tried + ")";
  return loaded;
}

}  // namespace cuda_plugin_detail

// The plugin, loaded on the first call (by any thread) and kept for the life of the process; or
// the error that says where it was looked for and why each place failed.
inline const cuda_plugin_detail::Loaded& load_cuda_plugin() {
  static const cuda_plugin_detail::Loaded loaded = cuda_plugin_detail::load();
  return loaded;
}

}  // namespace tinybert
