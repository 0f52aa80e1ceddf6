// Choosing a backend by name at run time (CLI --backend, server --backend): the runner of a
// model on the plain fp32 reference, oneDNN (programs that link tinybert::onednn) or CUDA.
#pragma once

#include <memory>
#include <string>

#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/error.hpp"
#include "tinybert/runner.hpp"
#ifdef TINYBERT_HAVE_ONEDNN
#include "tinybert/backend/onednn.hpp"
#endif
#ifdef TINYBERT_HAVE_CUDA
#include "tinybert/backend/cuda_runner.hpp"
#else
#include <iostream>

#include "tinybert/backend/cuda_plugin.hpp"
#endif

namespace tinybert {

inline std::string default_backend() {
#ifdef TINYBERT_HAVE_ONEDNN
  return "f32";
#else
  return "ref";
#endif
}

// The runner of `model` on the backend `name` selects: "ref" (the plain fp32 reference), with
// oneDNN "f32", "bf16" or "int8", and "cuda-f16", "cuda-bf16" or "cuda-int8": the GPU while it
// works, else (no GPU, CUDA error, no CUDA plugin) the default CPU backend, with the reason
// reported once on stderr. Programs that link tinybert::cuda (its tests and benchmarks) run the
// CUDA backend directly; all others load it from the plugin (cuda_plugin.hpp) at the first
// "cuda-*" request, so that they need no CUDA library to start.
inline std::unique_ptr<Runner> make_runner(const Model& model, const std::string& name) {
  if (name == "ref") return std::make_unique<OwningRunner<CpuRefBackend>>(model);
  if (name.rfind("cuda-", 0) == 0) {
    CudaOptions options;
    options.precision = parse_precision(name.substr(5));
    if (options.precision ==
        Precision::f32)  // refused here too: without a GPU it would never be tried
      throw Error("backend '" + name + "': the CUDA backend computes in f16, bf16 or int8");
    auto make_cpu = [&model] { return make_runner(model, default_backend()); };
#ifdef TINYBERT_HAVE_CUDA
    return std::make_unique<FallbackRunner>(model, options, make_cpu);
#else
    const auto& plugin = load_cuda_plugin();
    if (plugin.plugin) return plugin.plugin->make_runner(model, options, make_cpu);
    // The same line FallbackRunner writes when there is no GPU: the request still gets served.
    std::cerr << "tinybert: CUDA unavailable, running on the CPU: " << plugin.error << std::endl;
    return make_cpu();
#endif
  }
#ifdef TINYBERT_HAVE_ONEDNN
  return std::make_unique<OwningRunner<OneDnnBackend>>(model, parse_precision(name));
#else
  throw Error("backend '" + name + "': this build has no oneDNN backend (use ref)");
#endif
}

}  // namespace tinybert
