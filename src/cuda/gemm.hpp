// cuBLASLt GEMMs of the row-major linear layer Y[rows, out] = X[rows, in] W[out, in]^T: fp16/bf16
// with a fused bias or bias+GELU epilogue, and int8 x int8 -> int32 on the IMMA tensor cores.
// Plans (descriptors, layouts, the heuristic's algorithm) are made once per shape and kept.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>

namespace tinybert::cuda_detail {

[[noreturn]] void throw_cuda(cudaError_t error, const std::string& what);
[[noreturn]] void throw_cublas(cublasStatus_t status, const std::string& what);
inline void check_cuda(cudaError_t error, const std::string& what) {
  if (error != cudaSuccess) throw_cuda(error, what);
}
inline void check_cublas(cublasStatus_t status, const std::string& what) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas(status, what);
}

class LtGemm {
 public:
  enum class Epilogue { none, bias, gelu_bias };

  LtGemm(void* workspace, size_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // type: CUDA_R_16F or CUDA_R_16BF for weight, input, output and bias; fp32 accumulation.
  // Returns false when cuBLASLt has no fused GELU for this shape: then only the bias was applied
  // and the caller applies the GELU itself.
  bool gemm16(cudaDataType_t type, const void* weight, const void* input, void* output,
              const void* bias, int64_t out, int64_t rows, int64_t in, Epilogue epilogue,
              cudaStream_t stream);
  // int32 output, alpha 1, beta 0: the caller's epilogue applies the scales. in and out must be
  // multiples of 4 (cuBLASLt's IMMA rules for the regular layouts: "TN", m and k multiples of 4).
  void gemm_int8(const int8_t* weight, const int8_t* input, int32_t* output, int64_t out,
                 int64_t rows, int64_t in, cudaStream_t stream);

 private:
  struct Key {
    int type;
    int epilogue;
    int64_t out, rows, in;
    auto operator<=>(const Key&) const = default;
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  // Null when cuBLASLt has no algorithm for a fused-GELU plan (anything else throws CudaError).
  Plan* plan(const Key& key, const void* bias);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
};

}  // namespace tinybert::cuda_detail
