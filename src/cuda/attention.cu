// Fused multi-head attention over packed variable-length sequences, flash-attention style: a
// block owns a tile of queries of one (sequence, head), walks the sequence's keys in tiles held
// in shared memory and keeps a running (online) softmax, so no length x length matrix ever
// reaches global memory. Two versions, both tested against the fp32 reference:
//   attention_simple_kernel   fp32 on CUDA cores, any head_dim <= 256: the readable one;
//   attention_tc_kernel       WMMA tensor cores (16x16x16 fp16/bf16, fp32 accumulate) for
//                             head_dim 64 and 128: the fast one.
// Grids are (query tiles of the longest sequence, heads, sequences); blocks past the end of a
// shorter sequence exit at once (FlashAttention's varlen scheme). attention_probs_kernel writes
// the probabilities themselves, only when a caller asks for them.
#include <mma.h>

#include "common.cuh"

namespace tinybert::cuda_kernels {
namespace {

// log2(e): scores are kept in the log2 domain so that the softmax uses exp2f.
constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------------
// Simple kernel: 4 warps, 16 query rows per block (4 per warp), 32 keys per tile (one per lane).

constexpr int kSimpleWarps = 4;
constexpr int kSimpleRowsPerWarp = 4;
constexpr int kSimpleQueryRows = kSimpleWarps * kSimpleRowsPerWarp;
constexpr int kSimpleKeys = 32;
constexpr int kSimpleDimsPerLane = kMaxSimpleHeadDim / 32;

size_t simple_shared_bytes(int head_dim) {
  return sizeof(float) *
         (kSimpleQueryRows * head_dim + kSimpleKeys * (head_dim + 1) + kSimpleKeys * head_dim);
}

template <class T>
__global__ void __launch_bounds__(kSimpleWarps * 32)
    attention_simple_kernel(const T* __restrict__ qkv, T* __restrict__ context,
                            const int32_t* __restrict__ cu_seqlens, int num_heads, int head_dim,
                            float scale_log2) {
  const int seq = blockIdx.z, head = blockIdx.y;
  const int begin = cu_seqlens[seq], len = cu_seqlens[seq + 1] - begin;
  const int q0 = blockIdx.x * kSimpleQueryRows;
  if (q0 >= len) return;
  const int hidden = num_heads * head_dim;
  const int64_t stride = 3ll * hidden;
  const T* base = qkv + static_cast<int64_t>(begin) * stride + head * head_dim;

  extern __shared__ float simple_shared[];
  float* qs = simple_shared;                      // [16][head_dim], pre-scaled
  float* ks = qs + kSimpleQueryRows * head_dim;   // [32][head_dim + 1] (padded: lanes read rows)
  float* vs = ks + kSimpleKeys * (head_dim + 1);  // [32][head_dim]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  for (int i = threadIdx.x; i < kSimpleQueryRows * head_dim; i += blockDim.x) {
    const int r = i / head_dim, d = i % head_dim;
    qs[i] = q0 + r < len ? to_float(base[(q0 + r) * stride + d]) * scale_log2 : 0.0f;
  }

  float acc[kSimpleRowsPerWarp][kSimpleDimsPerLane];
  float row_max[kSimpleRowsPerWarp], row_sum[kSimpleRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kSimpleRowsPerWarp; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kSimpleDimsPerLane; ++i) acc[r][i] = 0.0f;
  }

  for (int k0 = 0; k0 < len; k0 += kSimpleKeys) {
    __syncthreads();  // the previous tile is consumed (and, the first time, qs is written)
    for (int i = threadIdx.x; i < kSimpleKeys * head_dim; i += blockDim.x) {
      const int j = i / head_dim, d = i % head_dim;
      const bool valid = k0 + j < len;
      ks[j * (head_dim + 1) + d] = valid ? to_float(base[(k0 + j) * stride + hidden + d]) : 0.0f;
      vs[j * head_dim + d] = valid ? to_float(base[(k0 + j) * stride + 2 * hidden + d]) : 0.0f;
    }
    __syncthreads();
    const int valid_keys = min(kSimpleKeys, len - k0);
#pragma unroll
    for (int r = 0; r < kSimpleRowsPerWarp; ++r) {
      const float* q = qs + (warp * kSimpleRowsPerWarp + r) * head_dim;
      float score = -INFINITY;
      if (lane < valid_keys) {
        score = 0.0f;
        const float* k = ks + lane * (head_dim + 1);
        for (int d = 0; d < head_dim; ++d) score += q[d] * k[d];
      }
      const float new_max = fmaxf(row_max[r], warp_max(score));
      const float p = lane < valid_keys ? exp2f(score - new_max) : 0.0f;
      const float correction = exp2f(row_max[r] - new_max);
      row_sum[r] = row_sum[r] * correction + warp_sum(p);
      row_max[r] = new_max;
#pragma unroll
      for (int i = 0; i < kSimpleDimsPerLane; ++i) acc[r][i] *= correction;
      for (int j = 0; j < valid_keys; ++j) {
        const float pj = __shfl_sync(kFullMask, p, j);
#pragma unroll
        for (int i = 0; i < kSimpleDimsPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < head_dim) acc[r][i] += pj * vs[j * head_dim + d];
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kSimpleRowsPerWarp; ++r) {
    const int q = q0 + warp * kSimpleRowsPerWarp + r;
    if (q >= len) continue;
    const float inverse = 1.0f / row_sum[r];
    T* out = context + static_cast<int64_t>(begin + q) * hidden + head * head_dim;
#pragma unroll
    for (int i = 0; i < kSimpleDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < head_dim) out[d] = from_float<T>(acc[r][i] * inverse);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel: 4 warps, 64 query rows per block (16 per warp), 64 keys per tile.
//   S = Q K^T    WMMA, Q fragments held in registers for the whole block, S stored per warp in
//                shared memory (fp32) because WMMA's accumulator layout is opaque;
//   softmax      two lanes per query row, running max and sum in registers, P written as T;
//   O += P V     WMMA, with the fp32 O accumulator kept in shared memory, where the online
//                softmax can rescale it row by row.
// Shared memory (D = 64: 61 KiB, D = 128: 101 KiB; opt-in above 48 KiB): Q (later P, which
// reuses it), K, V as T with rows padded by 8 elements, S and O as fp32 padded by 4.

constexpr int kTcWarps = 4;
constexpr int kTcQueryRows = 16 * kTcWarps;
constexpr int kTcKeys = 64;

template <int D>
struct TcLayout {
  static constexpr int kLdT = D + 8;        // Q, K, V rows (16-bit elements)
  static constexpr int kLdS = kTcKeys + 4;  // S rows (fp32)
  static constexpr int kLdP = kTcKeys + 8;  // P rows (16-bit)
  static constexpr int kLdO = D + 4;        // O rows (fp32)
  static constexpr size_t kQBytes = kTcQueryRows * kLdT * 2;
  static constexpr size_t kPBytes = kTcWarps * 16 * kLdP * 2;
  static constexpr size_t kQPBytes = kQBytes > kPBytes ? kQBytes : kPBytes;
  static constexpr size_t kKVBytes = kTcKeys * kLdT * 2;
  static constexpr size_t kSBytes = kTcWarps * 16 * kLdS * 4;
  static constexpr size_t kOBytes = kTcWarps * 16 * kLdO * 4;
  static constexpr size_t kTotal = kQPBytes + 2 * kKVBytes + kSBytes + kOBytes;
  // WMMA pointers must be 32-byte aligned: every region and every 16-row slice is.
  static_assert(kQPBytes % 32 == 0 && kKVBytes % 32 == 0 && kSBytes % 32 == 0 &&
                    (16 * kLdT * 2) % 32 == 0 && (16 * kLdS * 4) % 32 == 0 &&
                    (16 * kLdP * 2) % 32 == 0 && (16 * kLdO * 4) % 32 == 0,
                "WMMA alignment");
};

// rows first..first+63 of a [*, D] slice with row stride `stride` (elements) into shared memory,
// zeros past `len`; 16-byte vectors (the caller guarantees their alignment).
template <class T, int D>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t stride, int first,
                                          int len) {
  constexpr int kVectorsPerRow = D / 8;
  for (int i = threadIdx.x; i < 64 * kVectorsPerRow; i += blockDim.x) {
    const int r = i / kVectorsPerRow, v = i % kVectorsPerRow;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (first + r < len)
      value = *reinterpret_cast<const uint4*>(src + (first + r) * stride + v * 8);
    *reinterpret_cast<uint4*>(dst + r * TcLayout<D>::kLdT + v * 8) = value;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kTcWarps * 32)
    attention_tc_kernel(const T* __restrict__ qkv, T* __restrict__ context,
                        const int32_t* __restrict__ cu_seqlens, int num_heads, float scale_log2) {
  using namespace nvcuda;
  using L = TcLayout<D>;
  const int seq = blockIdx.z, head = blockIdx.y;
  const int begin = cu_seqlens[seq], len = cu_seqlens[seq + 1] - begin;
  const int q0 = blockIdx.x * kTcQueryRows;
  if (q0 >= len) return;
  const int hidden = num_heads * D;
  const int64_t stride = 3ll * hidden;
  const T* base = qkv + static_cast<int64_t>(begin) * stride + head * D;

  extern __shared__ __align__(128) unsigned char tc_shared[];
  unsigned char* shared = tc_shared;
  T* qs = reinterpret_cast<T*>(shared);
  T* ks = reinterpret_cast<T*>(shared + L::kQPBytes);
  T* vs = reinterpret_cast<T*>(shared + L::kQPBytes + L::kKVBytes);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* ss =
      reinterpret_cast<float*>(shared + L::kQPBytes + 2 * L::kKVBytes) + warp * 16 * L::kLdS;
  float* os = reinterpret_cast<float*>(shared + L::kQPBytes + 2 * L::kKVBytes + L::kSBytes) +
              warp * 16 * L::kLdO;
  T* ps = qs + warp * 16 * L::kLdP;  // reuses Q's space once Q is in registers

  load_tile<T, D>(qs, base, stride, q0, len);
  for (int i = lane; i < 16 * L::kLdO; i += 32) os[i] = 0.0f;
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> q_frag[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    wmma::load_matrix_sync(q_frag[kk], qs + warp * 16 * L::kLdT + kk * 16, L::kLdT);

  const int row = lane >> 1, half = lane & 1;  // softmax: lanes 2r and 2r+1 own row r
  float row_max = -INFINITY, row_sum = 0.0f;

  for (int k0 = 0; k0 < len; k0 += kTcKeys) {
    __syncthreads();  // every warp has its Q fragments and is done with the previous K, V
    load_tile<T, D>(ks, base + hidden, stride, k0, len);
    load_tile<T, D>(vs, base + 2 * hidden, stride, k0, len);
    __syncthreads();

#pragma unroll
    for (int j = 0; j < kTcKeys / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
      wmma::fill_fragment(s_frag, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        // K^T as a column-major [D, keys] operand is K's row-major [keys, D] storage.
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> k_frag;
        wmma::load_matrix_sync(k_frag, ks + j * 16 * L::kLdT + kk * 16, L::kLdT);
        wmma::mma_sync(s_frag, q_frag[kk], k_frag, s_frag);
      }
      wmma::store_matrix_sync(ss + j * 16, s_frag, L::kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    const int valid_keys = min(kTcKeys, len - k0);
    float scores[kTcKeys / 2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < kTcKeys / 2; ++c) {
      const int col = half * (kTcKeys / 2) + c;
      scores[c] = col < valid_keys ? ss[row * L::kLdS + col] * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, scores[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    const float new_max = fmaxf(row_max, tile_max);
    float tile_sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kTcKeys / 2; ++c) {
      const float p = exp2f(scores[c] - new_max);
      tile_sum += p;
      ps[row * L::kLdP + half * (kTcKeys / 2) + c] = from_float<T>(p);
    }
    tile_sum += __shfl_xor_sync(kFullMask, tile_sum, 1);
    const float correction = exp2f(row_max - new_max);
    row_sum = row_sum * correction + tile_sum;
    row_max = new_max;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d) os[row * L::kLdO + d] *= correction;
    __syncwarp();

#pragma unroll
    for (int dt = 0; dt < D / 16; ++dt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
      wmma::load_matrix_sync(o_frag, os + dt * 16, L::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kTcKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> v_frag;
        wmma::load_matrix_sync(p_frag, ps + kk * 16, L::kLdP);
        wmma::load_matrix_sync(v_frag, vs + kk * 16 * L::kLdT + dt * 16, L::kLdT);
        wmma::mma_sync(o_frag, p_frag, v_frag, o_frag);
      }
      wmma::store_matrix_sync(os + dt * 16, o_frag, L::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }

  const int q = q0 + warp * 16 + row;
  if (q < len) {
    const float inverse = 1.0f / row_sum;
    T* out = context + static_cast<int64_t>(begin + q) * hidden + head * D;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d)
      out[d] = from_float<T>(os[row * L::kLdO + d] * inverse);
  }
}

// ---------------------------------------------------------------------------------------------
// Probabilities: one block per (query, head, sequence), fp32, scores of the row in shared memory.

constexpr int kProbThreads = 128;

template <class T>
__global__ void __launch_bounds__(kProbThreads)
    attention_probs_kernel(const T* __restrict__ qkv, float* __restrict__ probs,
                           const int32_t* __restrict__ cu_seqlens,
                           const int64_t* __restrict__ prob_offsets, int num_heads, int head_dim,
                           float scale) {
  const int seq = blockIdx.z, head = blockIdx.y, i = blockIdx.x;
  const int begin = cu_seqlens[seq], len = cu_seqlens[seq + 1] - begin;
  if (i >= len) return;
  extern __shared__ float scores[];
  __shared__ float scratch[32];
  const int hidden = num_heads * head_dim;
  const int64_t stride = 3ll * hidden;
  const T* q = qkv + static_cast<int64_t>(begin + i) * stride + head * head_dim;
  float local_max = -INFINITY;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const T* k = qkv + static_cast<int64_t>(begin + j) * stride + hidden + head * head_dim;
    float s = 0.0f;
    for (int d = 0; d < head_dim; ++d) s += to_float(q[d]) * to_float(k[d]);
    scores[j] = s * scale;
    local_max = fmaxf(local_max, scores[j]);
  }
  const float max = block_max(local_max, scratch);
  float local_sum = 0.0f;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    scores[j] = expf(scores[j] - max);
    local_sum += scores[j];
  }
  const float inverse = 1.0f / block_sum(local_sum, scratch);
  float* out = probs + prob_offsets[seq] + (static_cast<int64_t>(head) * len + i) * len;
  for (int j = threadIdx.x; j < len; j += blockDim.x) out[j] = scores[j] * inverse;
}

template <class T>
cudaError_t init_for() {
  const auto set = [](const void* kernel, size_t bytes) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(bytes));
  };
  cudaError_t e =
      set(reinterpret_cast<const void*>(&attention_tc_kernel<T, 64>), TcLayout<64>::kTotal);
  if (e == cudaSuccess)
    e = set(reinterpret_cast<const void*>(&attention_tc_kernel<T, 128>), TcLayout<128>::kTotal);
  if (e == cudaSuccess)
    e = set(reinterpret_cast<const void*>(&attention_simple_kernel<T>),
            simple_shared_bytes(kMaxSimpleHeadDim));
  return e;
}

}  // namespace

bool tensor_core_attention_supports(int head_dim) { return head_dim == 64 || head_dim == 128; }

cudaError_t init_attention_kernels() {
  cudaError_t e = init_for<__half>();
  return e == cudaSuccess ? init_for<__nv_bfloat16>() : e;
}

cudaError_t attention(Element element, AttentionKernel kernel, const void* qkv, void* context,
                      const int32_t* cu_seqlens, int num_sequences, int max_seq_len, int num_heads,
                      int head_dim, cudaStream_t stream) {
  if (num_sequences == 0 || max_seq_len == 0) return cudaSuccess;
  if (num_sequences > 65535 || num_heads > 65535 || head_dim > kMaxSimpleHeadDim)
    return cudaErrorInvalidValue;
  if (kernel == AttentionKernel::tensor_core && !tensor_core_attention_supports(head_dim))
    return cudaErrorInvalidValue;
  const float scale_log2 = kLog2e / sqrtf(static_cast<float>(head_dim));
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(qkv);
    T* out = static_cast<T*>(context);
    if (kernel == AttentionKernel::simple) {
      const dim3 grid(ceil_div(max_seq_len, kSimpleQueryRows), num_heads, num_sequences);
      attention_simple_kernel<T>
          <<<grid, kSimpleWarps * 32, simple_shared_bytes(head_dim), stream>>>(
              in, out, cu_seqlens, num_heads, head_dim, scale_log2);
    } else {
      const dim3 grid(ceil_div(max_seq_len, kTcQueryRows), num_heads, num_sequences);
      if (head_dim == 64)
        attention_tc_kernel<T, 64><<<grid, kTcWarps * 32, TcLayout<64>::kTotal, stream>>>(
            in, out, cu_seqlens, num_heads, scale_log2);
      else
        attention_tc_kernel<T, 128><<<grid, kTcWarps * 32, TcLayout<128>::kTotal, stream>>>(
            in, out, cu_seqlens, num_heads, scale_log2);
    }
  });
  return cudaGetLastError();
}

cudaError_t attention_probs(Element element, const void* qkv, float* probs,
                            const int32_t* cu_seqlens, const int64_t* prob_offsets,
                            int num_sequences, int max_seq_len, int num_heads, int head_dim,
                            cudaStream_t stream) {
  if (num_sequences == 0 || max_seq_len == 0) return cudaSuccess;
  if (num_sequences > 65535 || num_heads > 65535 || max_seq_len > 12000)
    return cudaErrorInvalidValue;
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));
  dispatch(element, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(max_seq_len, num_heads, num_sequences);
    attention_probs_kernel<T><<<grid, kProbThreads, max_seq_len * sizeof(float), stream>>>(
        static_cast<const T*>(qkv), probs, cu_seqlens, prob_offsets, num_heads, head_dim, scale);
  });
  return cudaGetLastError();
}

}  // namespace tinybert::cuda_kernels
