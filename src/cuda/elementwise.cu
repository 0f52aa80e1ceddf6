// The small kernels around the GEMMs and the heads: per-token int8 quantisation and the int8
// GEMM's dequantising epilogue, activations cuBLASLt cannot fuse, few-output projections in
// fp32, pooling and row gathering.
#include "common.cuh"

namespace tinybert::cuda_kernels {
namespace {

constexpr int kRowThreads = 256;
constexpr int kElementThreads = 256;

int element_blocks(int64_t count) {
  const int64_t blocks = (count + kElementThreads - 1) / kElementThreads;
  return static_cast<int>(blocks < 65536 ? blocks : 65536);  // grid-stride beyond
}

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    quantize_rows_kernel(const T* __restrict__ x, int8_t* __restrict__ q,
                         float* __restrict__ scales, int rows, int cols) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  int8_t* qr = q + r * cols;
  if (r >= rows) {  // padding rows of the GEMM: zeros
    for (int c = threadIdx.x; c < cols; c += blockDim.x) qr[c] = 0;
    if (threadIdx.x == 0) scales[r] = 1.0f;
    return;
  }
  const T* xr = x + r * cols;
  float local_max = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    local_max = fmaxf(local_max, fabsf(to_float(xr[c])));
  const float max_abs = block_max(local_max, scratch);
  const float scale = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
  const float inverse = 1.0f / scale;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const int v = __float2int_rn(to_float(xr[c]) * inverse);  // ties to even, as the CPU's rint
    qr[c] = static_cast<int8_t>(max(-127, min(127, v)));
  }
  if (threadIdx.x == 0) scales[r] = scale;
}

template <class T>
__global__ void __launch_bounds__(kElementThreads)
    dequantize_epilogue_kernel(const int32_t* __restrict__ acc,
                               const float* __restrict__ token_scales,
                               const float* __restrict__ weight_scales,
                               const float* __restrict__ bias, T* __restrict__ out, int rows,
                               int cols, Act act) {
  const int64_t count = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int c = static_cast<int>(i - r * cols);
    const float v = static_cast<float>(acc[i]) * token_scales[r] * weight_scales[c] + bias[c];
    out[i] = from_float<T>(apply_act(act, v));
  }
}

template <class T>
__global__ void __launch_bounds__(kElementThreads)
    activation_kernel(T* __restrict__ x, int64_t count, Act act) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = from_float<T>(apply_act(act, to_float(x[i])));
}

// One warp per output element.
constexpr int kSmallLinearWarps = 4;

template <class T>
__global__ void __launch_bounds__(kSmallLinearWarps * 32)
    small_linear_kernel(const T* __restrict__ in, const float* __restrict__ weight,
                        const float* __restrict__ bias, float* __restrict__ out, int rows,
                        int in_features, int out_features, Act act) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kSmallLinearWarps + (threadIdx.x >> 5);
  if (item >= static_cast<int64_t>(rows) * out_features) return;
  const int64_t r = item / out_features;
  const int o = static_cast<int>(item - r * out_features);
  const T* x = in + r * in_features;
  const float* w = weight + static_cast<int64_t>(o) * in_features;
  float sum = 0.0f;
  for (int c = threadIdx.x & 31; c < in_features; c += 32) sum += to_float(x[c]) * w[c];
  sum = warp_sum(sum);
  if ((threadIdx.x & 31) == 0) out[item] = apply_act(act, sum + bias[o]);
}

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    pool_kernel(const T* __restrict__ hidden, const int32_t* __restrict__ cu_seqlens, int cols,
                bool mean, T* __restrict__ out) {
  const int s = blockIdx.x;
  const int begin = cu_seqlens[s], len = cu_seqlens[s + 1] - begin;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_float(hidden[static_cast<int64_t>(begin) * cols + c]);
    if (mean) {
      for (int t = 1; t < len; ++t)
        v += to_float(hidden[static_cast<int64_t>(begin + t) * cols + c]);
      v /= static_cast<float>(len);
    }
    out[static_cast<int64_t>(s) * cols + c] = from_float<T>(v);
  }
}

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    gather_rows_kernel(const T* __restrict__ in, const int64_t* __restrict__ rows, int cols,
                       T* __restrict__ out) {
  const int64_t i = blockIdx.x;
  const T* src = in + rows[i] * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) out[i * cols + c] = src[c];
}

}  // namespace

cudaError_t init_kernels() {
  cudaError_t e = init_attention_kernels();
  if (e != cudaSuccess) return e;
  // Every .cu file is compiled for the same architectures: one lookup tells whether this device
  // has an image (the attention kernels' attributes above would have failed already too).
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(&pool_kernel<__half>));
}

cudaError_t quantize_rows(Element element, const void* x, int8_t* q, float* scales, int rows,
                          int padded_rows, int cols, cudaStream_t stream) {
  if (padded_rows == 0) return cudaSuccess;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    quantize_rows_kernel<T>
        <<<padded_rows, kRowThreads, 0, stream>>>(static_cast<const T*>(x), q, scales, rows, cols);
  });
  return cudaGetLastError();
}

cudaError_t dequantize_epilogue(Element element, const int32_t* acc, const float* token_scales,
                                const float* weight_scales, const float* bias, void* out, int rows,
                                int cols, Act act, cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(rows) * cols;
  if (count == 0) return cudaSuccess;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    dequantize_epilogue_kernel<T><<<element_blocks(count), kElementThreads, 0, stream>>>(
        acc, token_scales, weight_scales, bias, static_cast<T*>(out), rows, cols, act);
  });
  return cudaGetLastError();
}

cudaError_t activation(Element element, void* x, int64_t count, Act act, cudaStream_t stream) {
  if (count == 0 || act == Act::none) return cudaSuccess;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    activation_kernel<T>
        <<<element_blocks(count), kElementThreads, 0, stream>>>(static_cast<T*>(x), count, act);
  });
  return cudaGetLastError();
}

cudaError_t small_linear(Element element, const void* in, const float* weight, const float* bias,
                         float* out, int rows, int in_features, int out_features, Act act,
                         cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(rows) * out_features;
  if (items == 0) return cudaSuccess;
  if ((items + kSmallLinearWarps - 1) / kSmallLinearWarps > 0x7fffffff)
    return cudaErrorInvalidValue;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    small_linear_kernel<T>
        <<<ceil_div(items, kSmallLinearWarps), kSmallLinearWarps * 32, 0, stream>>>(
            static_cast<const T*>(in), weight, bias, out, rows, in_features, out_features, act);
  });
  return cudaGetLastError();
}

cudaError_t pool(Element element, const void* hidden, const int32_t* cu_seqlens, int num_sequences,
                 int cols, bool mean, void* out, cudaStream_t stream) {
  if (num_sequences == 0) return cudaSuccess;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    pool_kernel<T><<<num_sequences, kRowThreads, 0, stream>>>(
        static_cast<const T*>(hidden), cu_seqlens, cols, mean, static_cast<T*>(out));
  });
  return cudaGetLastError();
}

cudaError_t gather_rows(Element element, const void* in, const int64_t* rows, int num_rows,
                        int cols, void* out, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    gather_rows_kernel<T><<<num_rows, kRowThreads, 0, stream>>>(static_cast<const T*>(in), rows,
                                                                cols, static_cast<T*>(out));
  });
  return cudaGetLastError();
}

}  // namespace tinybert::cuda_kernels
