// A CUDA plugin from another build: it exports the entry point, but with another ABI string, so
// the loader must refuse it before it touches anything else (tests/test_cuda_plugin.cpp).
#include "tinybert/backend/cuda_plugin.hpp"

extern "C" __attribute__((visibility("default"))) const tinybert::CudaPlugin*
tinybert_cuda_plugin() {
  // make_runner would crash if it were ever called: the loader must stop at the ABI string.
  static const tinybert::CudaPlugin plugin{"tinybert 0.0.0 plugin-abi 0 another compiler", nullptr};
  return &plugin;
}
