// Row kernels with a LayerNorm at the end: embeddings gather + LayerNorm, and residual add +
// LayerNorm. One block per token; the row is kept in shared memory as fp32 and normalised with
// the two-pass mean/variance of the reference backend.
#include "common.cuh"

namespace tinybert::cuda_kernels {
namespace {

constexpr int kThreads = 256;

// row[0..cols) holds the pre-normalisation values (each thread reads back only what it wrote).
template <class T>
__device__ __forceinline__ void normalize_row(const float* row, const float* gamma,
                                              const float* beta, float eps, int cols,
                                              float local_sum, T* out) {
  __shared__ float scratch[32];
  const float mean = block_sum(local_sum, scratch) / static_cast<float>(cols);
  float local_sq = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = row[c] - mean;
    local_sq += d * d;
  }
  const float variance = block_sum(local_sq, scratch) / static_cast<float>(cols);
  const float inv_std = rsqrtf(variance + eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    out[c] = from_float<T>((row[c] - mean) * inv_std * gamma[c] + beta[c]);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    embed_layernorm_kernel(BatchView batch, const T* __restrict__ word,
                           const T* __restrict__ position, const T* __restrict__ token_type,
                           const T* __restrict__ task_type, const float* __restrict__ gamma,
                           const float* __restrict__ beta, float eps, T* __restrict__ out,
                           int cols) {
  extern __shared__ float row[];
  const int64_t t = blockIdx.x;
  const T* w = word + static_cast<int64_t>(batch.input_ids[t]) * cols;
  const T* p = position + static_cast<int64_t>(batch.positions[t]) * cols;
  const T* y = token_type + static_cast<int64_t>(batch.token_type_ids[t]) * cols;
  const T* k =
      task_type ? task_type + static_cast<int64_t>(batch.task_type_ids[t]) * cols : nullptr;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_float(w[c]) + to_float(p[c]) + to_float(y[c]);
    if (k) v += to_float(k[c]);
    row[c] = v;
    sum += v;
  }
  normalize_row(row, gamma, beta, eps, cols, sum, out + t * cols);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    add_layernorm_kernel(T* __restrict__ x, const T* __restrict__ residual,
                         const float* __restrict__ gamma, const float* __restrict__ beta, float eps,
                         int cols) {
  extern __shared__ float row[];
  const int64_t r = blockIdx.x;
  T* xr = x + r * cols;
  const T* rr = residual ? residual + r * cols : nullptr;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_float(xr[c]);
    if (rr) v += to_float(rr[c]);
    row[c] = v;
    sum += v;
  }
  normalize_row(row, gamma, beta, eps, cols, sum, xr);
}

int threads_for(int cols) { return cols >= kThreads ? kThreads : ((cols + 31) / 32) * 32; }

}  // namespace

cudaError_t embed_layernorm(Element element, const BatchView& batch, const void* word,
                            const void* position, const void* token_type, const void* task_type,
                            const float* gamma, const float* beta, float eps, void* out, int cols,
                            cudaStream_t stream) {
  if (batch.num_tokens == 0) return cudaSuccess;
  if (cols > kMaxLayerNormCols) return cudaErrorInvalidValue;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    embed_layernorm_kernel<T>
        <<<batch.num_tokens, threads_for(cols), cols * sizeof(float), stream>>>(
            batch, static_cast<const T*>(word), static_cast<const T*>(position),
            static_cast<const T*>(token_type), static_cast<const T*>(task_type), gamma, beta, eps,
            static_cast<T*>(out), cols);
  });
  return cudaGetLastError();
}

cudaError_t add_layernorm(Element element, void* x, const void* residual, const float* gamma,
                          const float* beta, float eps, int rows, int cols, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (cols > kMaxLayerNormCols) return cudaErrorInvalidValue;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    add_layernorm_kernel<T><<<rows, threads_for(cols), cols * sizeof(float), stream>>>(
        static_cast<T*>(x), static_cast<const T*>(residual), gamma, beta, eps, cols);
  });
  return cudaGetLastError();
}

}  // namespace tinybert::cuda_kernels
