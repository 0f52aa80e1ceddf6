// Whether the CUDA backend can run here, and the precision names.
#include <cuda_runtime.h>

#include "kernels.hpp"
#include "tinybert/backend/cuda.hpp"

namespace tinybert {

namespace {
std::string error_text(cudaError_t error) {
  cudaGetLastError();  // clear it: a failed probe must not poison the next CUDA call
  return std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
}
}  // namespace

std::optional<std::string> cuda_unavailable_reason(int device) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) return "CUDA: no usable driver or device (" + error_text(error) + ")";
  if (count == 0) return std::string("CUDA: no CUDA device");
  if (device < 0 || device >= count)
    return "CUDA: device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
           " found)";
  cudaDeviceProp prop{};
  error = cudaGetDeviceProperties(&prop, device);
  if (error != cudaSuccess)
    return "CUDA: device " + std::to_string(device) + ": " + error_text(error);
  if (prop.major < 8)
    return "CUDA: " + std::string(prop.name) + " has compute capability " +
           std::to_string(prop.major) + "." + std::to_string(prop.minor) +
           "; the CUDA backend needs 8.0 or newer (built for sm_80, sm_89, sm_90)";
  error = cudaSetDevice(device);
  if (error == cudaSuccess) error = cudaFree(nullptr);  // creates the context
  if (error != cudaSuccess)
    return "CUDA: cannot start a context on " + std::string(prop.name) + " (" + error_text(error) +
           ")";
  error = cuda_kernels::init_kernels();
  if (error != cudaSuccess)
    return "CUDA: our kernels cannot run on " + std::string(prop.name) + " (" + error_text(error) +
           ")";
  return std::nullopt;
}

}  // namespace tinybert
