// cuBLASLt plans for the linear layers (see gemm.hpp). Row-major Y = X W^T is column-major
// Y^T[out, rows] = W[out, in] (stored [in, out] column-major, so op T) x X^T[in, rows] (op N):
// the "TN" form that the int8 IMMA kernels require and the fp16 ones run best in.
#include "gemm.hpp"

#include "tinybert/backend/cuda.hpp"

namespace tinybert::cuda_detail {

void throw_cuda(cudaError_t error, const std::string& what) {
  cudaGetLastError();  // clear a non-sticky error so that the next call does not see it
  throw CudaError("CUDA: " + what + ": " + cudaGetErrorString(error));
}

void throw_cublas(cublasStatus_t status, const std::string& what) {
  throw CudaError("cuBLASLt: " + what + ": " + cublasLtGetStatusString(status));
}

LtGemm::LtGemm(void* workspace, size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check_cublas(cublasLtCreate(&handle_), "cublasLtCreate");
}

LtGemm::~LtGemm() {
  for (auto& [key, plan] : plans_) {
    if (!plan.desc) continue;  // a remembered "no fused GELU"
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.desc);
  }
  if (handle_) cublasLtDestroy(handle_);
}

namespace {

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  check_cublas(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)),
               "cublasLtMatmulDescSetAttribute");
}

std::string shape_text(int64_t out, int64_t rows, int64_t in) {
  std::string text = "[";  // appended piecewise: GCC 12 reports a false -Wrestrict for "[" + string
  text += std::to_string(rows) + "," + std::to_string(in) + "] x [" + std::to_string(out) + "," +
          std::to_string(in);
  return text + "]^T";
}

}  // namespace

LtGemm::Plan* LtGemm::plan(const Key& key, const void* bias) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.desc ? &it->second : nullptr;
  const bool int8 = key.type == CUDA_R_8I;
  const auto type = static_cast<cudaDataType_t>(key.type);
  const cudaDataType_t out_type = int8 ? CUDA_R_32I : type;
  Plan p;
  try {
    check_cublas(cublasLtMatmulDescCreate(&p.desc, int8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F,
                                          int8 ? CUDA_R_32I : CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<int32_t>(CUBLAS_OP_T));
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<int32_t>(CUBLAS_OP_N));
    const auto epilogue = static_cast<Epilogue>(key.epilogue);
    if (epilogue != Epilogue::none) {
      set_desc(
          p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
          epilogue == Epilogue::gelu_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS);
      set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
               bias);  // its alignment guides the heuristic
    }
    check_cublas(cublasLtMatrixLayoutCreate(&p.a, type, static_cast<uint64_t>(key.in),
                                            static_cast<uint64_t>(key.out), key.in),
                 "cublasLtMatrixLayoutCreate");
    check_cublas(cublasLtMatrixLayoutCreate(&p.b, type, static_cast<uint64_t>(key.in),
                                            static_cast<uint64_t>(key.rows), key.in),
                 "cublasLtMatrixLayoutCreate");
    check_cublas(cublasLtMatrixLayoutCreate(&p.c, out_type, static_cast<uint64_t>(key.out),
                                            static_cast<uint64_t>(key.rows), key.out),
                 "cublasLtMatrixLayoutCreate");
    cublasLtMatmulPreference_t preference = nullptr;
    check_cublas(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
    const uint64_t workspace = workspace_bytes_;
    cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, preference, 1,
                                              &result, &found);
    cublasLtMatmulPreferenceDestroy(preference);
    const bool fused_gelu = static_cast<Epilogue>(key.epilogue) == Epilogue::gelu_bias;
    if (fused_gelu && (status != CUBLAS_STATUS_SUCCESS || found == 0)) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      cublasLtMatmulDescDestroy(p.desc);
      plans_.emplace(key, Plan{});  // remembered: this shape takes the unfused path
      return nullptr;
    }
    check_cublas(status, "no algorithm for " + shape_text(key.out, key.rows, key.in));
    if (found == 0)
      throw CudaError("cuBLASLt: no algorithm for " + std::string(int8 ? "int8 " : "") + "GEMM " +
                      shape_text(key.out, key.rows, key.in));
    p.algo = result.algo;
  } catch (...) {
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    throw;
  }
  return &plans_.emplace(key, p).first->second;
}

bool LtGemm::gemm16(cudaDataType_t type, const void* weight, const void* input, void* output,
                    const void* bias, int64_t out, int64_t rows, int64_t in, Epilogue epilogue,
                    cudaStream_t stream) {
  if (rows == 0) return true;
  Plan* p = plan({static_cast<int>(type), static_cast<int>(epilogue), out, rows, in}, bias);
  const bool fused = p != nullptr;
  if (!fused)
    p = plan({static_cast<int>(type), static_cast<int>(Epilogue::bias), out, rows, in}, bias);
  if (epilogue != Epilogue::none) set_desc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublasLtMatmul(handle_, p->desc, &alpha, weight, p->a, input, p->b, &beta, output,
                              p->c, output, p->c, &p->algo, workspace_, workspace_bytes_, stream),
               "matmul " + shape_text(out, rows, in));
  return fused;
}

void LtGemm::gemm_int8(const int8_t* weight, const int8_t* input, int32_t* output, int64_t out,
                       int64_t rows, int64_t in, cudaStream_t stream) {
  if (rows == 0) return;
  Plan* p =
      plan({static_cast<int>(CUDA_R_8I), static_cast<int>(Epilogue::none), out, rows, in}, nullptr);
  const int32_t alpha = 1, beta = 0;
  check_cublas(cublasLtMatmul(handle_, p->desc, &alpha, weight, p->a, input, p->b, &beta, output,
                              p->c, output, p->c, &p->algo, workspace_, workspace_bytes_, stream),
               "int8 matmul " + shape_text(out, rows, in));
}

}  // namespace tinybert::cuda_detail
