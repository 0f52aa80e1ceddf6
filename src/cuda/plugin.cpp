// libtinybert-cuda.so: the CUDA backend as a plugin that programs load at run time
// (include/tinybert/backend/cuda_plugin.hpp). Its one export hands over the ABI string it was
// built with and a factory of FallbackRunner, so that cudart and cuBLASLt are mapped only into
// processes that ask for a "cuda-*" backend.
#include "tinybert/backend/cuda_plugin.hpp"
#include "tinybert/backend/cuda_runner.hpp"

namespace {

std::unique_ptr<tinybert::Runner> make_fallback_runner(
    const tinybert::Model& model, const tinybert::CudaOptions& options,
    std::function<std::unique_ptr<tinybert::Runner>()> make_cpu) {
  return std::make_unique<tinybert::FallbackRunner>(model, options, std::move(make_cpu));
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const tinybert::CudaPlugin*
tinybert_cuda_plugin() {
  // Built on the first call: the loader reads `abi` before it uses anything else.
  static const std::string abi = tinybert::cuda_plugin_abi();
  static const tinybert::CudaPlugin plugin{abi.c_str(), &make_fallback_runner};
  return &plugin;
}
