// Fused self-attention on the CPU, after FlashAttention-2 (Dao 2023): for each (sequence, head,
// block of query rows) the keys are visited in blocks of kKeyBlock; each block's scores
// S = Q Kᵀ / sqrt(d) live only in registers and a 1 KB scratch, an online softmax rescales what
// was accumulated so far (running max m and sum l per row), and P V is added to the output
// rows. No L x L matrix is ever written, so memory traffic grows with L, not L², and one pass
// replaces the two matmuls and the softmax sweep of the blocked version (OneDnnBackend's v2).
//
// Numbered versions of this kernel sit side by side in dev/cpu/attention_forward.cpp (v1 naive,
// v2 blocked oneDNN matmuls, v3 this one), each checked against v1 and timed there.
//
// Precisions: f32 (AVX-512 FMA) and bf16 (AVX512-BF16 `vdpbf16ps`: Q, K, V and P rounded to
// bf16, products accumulated in f32, as the bf16 GEMMs do). A build without AVX-512 (generic
// x86-64, aarch64) gets the same algorithm in plain C++ for f32 and no bf16 kernel
// (available() says so; the backend then keeps v2).
//
// Layout: the packed qkv rows of a Batch, [tokens, 3 * hidden] = [q | k | v], head h at columns
// h * d .. h * d + d of each third. Per (sequence, head) K is first packed transposed (Kᵀ, so
// that 16 consecutive keys are one vector) and, for bf16, K and V as pairs (the operand layout of
// vdpbf16ps); packing is O(L d), the attention O(L² d).
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tinybert/batch.hpp"

namespace tinybert::flash {

constexpr int64_t kQueryTile = 4;  // query rows computed together (they share each K / V load)
constexpr int64_t kKeyBlock = 64;  // keys per online-softmax step: 4 vectors of 16 floats

#if defined(__AVX512F__)
constexpr bool kVectorised = true;
#else
constexpr bool kVectorised = false;
#endif
#if defined(__AVX512BF16__)
constexpr bool kHaveBf16 = true;
#else
constexpr bool kHaveBf16 = false;
#endif

// Whether this build has the fused kernel for a head size and precision: head_dim a multiple of
// 16 up to 128 (one to eight vectors per row) for the AVX-512 kernels; any for plain C++ f32.
inline bool available(int64_t head_dim, bool bf16) {
  if (bf16) return kHaveBf16 && head_dim % 16 == 0 && head_dim <= 128;
  return !kVectorised || (head_dim % 16 == 0 && head_dim <= 128);
}

namespace detail {

inline int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// f32 -> bf16, round to nearest even (Eigen's conversion), as the bits.
inline uint16_t bf16_bits(float x) { return Eigen::numext::bit_cast<uint16_t>(Eigen::bfloat16(x)); }
inline uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
}

// Per-call scratch of the packed K (and V for bf16), grown, never shrunk.
template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// One unit of work: a block of query rows of one head of one sequence.
struct Task {
  int64_t sequence, head, first_row, rows;
};

inline std::vector<Task> tasks_of(const Batch& batch, int64_t heads, int64_t query_block) {
  std::vector<Task> tasks;
  for (int64_t s = 0; s < batch.num_sequences(); ++s)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t q0 = 0; q0 < batch.seq_len(s); q0 += query_block)
        tasks.push_back({s, h, q0, std::min(query_block, batch.seq_len(s) - q0)});
  return tasks;
}

#if defined(__AVX512F__)
// e^x for x <= 0 (softmax arguments): x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor
// polynomial of degree 7 (relative error below 2e-8 there), times 2^n by vscalefps. Arguments
// below -87 give e^-87 (about 1.6e-38), which the callers mask to 0 where it matters.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2, high bits exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);      // ln2, the rest
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

// The online-softmax step shared by both precisions, for one query row of the tile: raw scores
// s[0..4) (kKeyBlock keys, those at or past `valid` masked), running max m and sum l, and the
// row's output accumulators o[0..V) in registers. Writes the block's probabilities (not yet
// divided by l) to p and rescales o by e^(m_old - m_new).
template <int V>
inline void online_softmax_step(__m512 s[4], int64_t valid, float scale, float& m, float& l,
                                __m512 o[V], float* p) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 keep[4];
  for (int v = 0; v < 4; ++v) {
    const int64_t left = std::clamp<int64_t>(valid - 16 * v, 0, 16);
    keep[v] = static_cast<__mmask16>((1u << left) - 1);
    s[v] = _mm512_mask_mov_ps(neg_inf, keep[v], _mm512_mul_ps(s[v], _mm512_set1_ps(scale)));
  }
  const float block_max =
      _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(s[0], s[1]), _mm512_max_ps(s[2], s[3])));
  const float m_new = std::max(m, block_max);
  const float alpha = std::exp(m - m_new);  // 0 on the first block (m = -inf)
  __m512 sum = _mm512_setzero_ps();
  for (int v = 0; v < 4; ++v) {
    const __m512 e =
        _mm512_maskz_mov_ps(keep[v], exp_ps(_mm512_sub_ps(s[v], _mm512_set1_ps(m_new))));
    sum = _mm512_add_ps(sum, e);
    _mm512_storeu_ps(p + 16 * v, e);
  }
  l = l * alpha + _mm512_reduce_add_ps(sum);
  m = m_new;
  for (int c = 0; c < V; ++c) o[c] = _mm512_mul_ps(o[c], _mm512_set1_ps(alpha));
}

// f32: V = head_dim / 16 output vectors per row. kt: this head's Kᵀ, [d][stride] (keys padded
// with zeros to a multiple of kKeyBlock).
template <int V>
void tile_f32(const float* const q[kQueryTile], const float* kt, int64_t kt_stride,
              const float* v_rows, int64_t row_stride, int64_t len, float scale,
              float* const out[kQueryTile], int64_t tile_rows) {
  constexpr int64_t d = 16 * V;
  __m512 o[kQueryTile][V];
  float m[kQueryTile], l[kQueryTile];
  alignas(64) float p[kQueryTile][kKeyBlock];
  for (int t = 0; t < kQueryTile; ++t) {
    m[t] = -std::numeric_limits<float>::infinity();
    l[t] = 0;
    for (int c = 0; c < V; ++c) o[t][c] = _mm512_setzero_ps();
  }
  for (int64_t k0 = 0; k0 < len; k0 += kKeyBlock) {
    // S = Q Kᵀ for 4 rows x 64 keys: per dimension one load of 4 key vectors, 16 FMAs
    __m512 s[kQueryTile][4];
    for (auto& row : s)
      for (auto& x : row) x = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; ++i) {
      const float* k = kt + i * kt_stride + k0;
      const __m512 k0v = _mm512_loadu_ps(k), k1v = _mm512_loadu_ps(k + 16),
                   k2v = _mm512_loadu_ps(k + 32), k3v = _mm512_loadu_ps(k + 48);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512 qi = _mm512_set1_ps(q[t][i]);
        s[t][0] = _mm512_fmadd_ps(qi, k0v, s[t][0]);
        s[t][1] = _mm512_fmadd_ps(qi, k1v, s[t][1]);
        s[t][2] = _mm512_fmadd_ps(qi, k2v, s[t][2]);
        s[t][3] = _mm512_fmadd_ps(qi, k3v, s[t][3]);
      }
    }
    const int64_t valid = std::min(kKeyBlock, len - k0);
    for (int t = 0; t < kQueryTile; ++t)
      online_softmax_step<V>(s[t], valid, scale, m[t], l[t], o[t], p[t]);
    // O += P V: per key one load of its V row (V vectors), shared by the 4 query rows
    for (int64_t j = 0; j < valid; ++j) {
      const float* v = v_rows + (k0 + j) * row_stride;
      __m512 vv[V];
      for (int c = 0; c < V; ++c) vv[c] = _mm512_loadu_ps(v + 16 * c);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512 pj = _mm512_set1_ps(p[t][j]);
        for (int c = 0; c < V; ++c) o[t][c] = _mm512_fmadd_ps(pj, vv[c], o[t][c]);
      }
    }
  }
  for (int t = 0; t < tile_rows; ++t) {
    const __m512 inv = _mm512_set1_ps(1.0f / l[t]);
    for (int c = 0; c < V; ++c) _mm512_storeu_ps(out[t] + 16 * c, _mm512_mul_ps(o[t][c], inv));
  }
}
#endif

#if defined(__AVX512BF16__)
// bf16: kp = this head's K as pairs of dimensions, [d/2][stride] uint32 (two bf16: dims 2i and
// 2i+1 of one key); vp = V as pairs of keys, [stride/2][d] uint32 (keys 2j and 2j+1 of one
// dimension); q = the tile's query rows as pairs, [kQueryTile][d/2]. vdpbf16ps multiplies the
// pairs and adds both products to an f32 lane: 16 keys (S) or 16 dimensions (P V) per vector.
template <int V>
void tile_bf16(const uint32_t* const qp[kQueryTile], const uint32_t* kp, int64_t stride,
               const uint32_t* vp, int64_t len, float scale, float* const out[kQueryTile],
               int64_t tile_rows) {
  constexpr int64_t d = 16 * V;
  __m512 o[kQueryTile][V];
  float m[kQueryTile], l[kQueryTile];
  alignas(64) float p[kQueryTile][kKeyBlock];
  for (int t = 0; t < kQueryTile; ++t) {
    m[t] = -std::numeric_limits<float>::infinity();
    l[t] = 0;
    for (int c = 0; c < V; ++c) o[t][c] = _mm512_setzero_ps();
  }
  const auto dot = [](__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b));
  };
  for (int64_t k0 = 0; k0 < len; k0 += kKeyBlock) {
    __m512 s[kQueryTile][4];
    for (auto& row : s)
      for (auto& x : row) x = _mm512_setzero_ps();
    for (int64_t i = 0; i < d / 2; ++i) {
      const uint32_t* k = kp + i * stride + k0;
      const __m512i k0v = _mm512_loadu_si512(k), k1v = _mm512_loadu_si512(k + 16),
                    k2v = _mm512_loadu_si512(k + 32), k3v = _mm512_loadu_si512(k + 48);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512i qi = _mm512_set1_epi32(static_cast<int>(qp[t][i]));
        s[t][0] = dot(s[t][0], qi, k0v);
        s[t][1] = dot(s[t][1], qi, k1v);
        s[t][2] = dot(s[t][2], qi, k2v);
        s[t][3] = dot(s[t][3], qi, k3v);
      }
    }
    const int64_t valid = std::min(kKeyBlock, len - k0);
    for (int t = 0; t < kQueryTile; ++t)
      online_softmax_step<V>(s[t], valid, scale, m[t], l[t], o[t], p[t]);
    // O += P V over pairs of keys; masked probabilities are 0 and padded V rows are zeros
    for (int64_t j = 0; j < valid; j += 2) {
      const uint32_t* v = vp + ((k0 + j) / 2) * d;
      __m512i vv[V];
      for (int c = 0; c < V; ++c) vv[c] = _mm512_loadu_si512(v + 16 * c);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512i pj = _mm512_set1_epi32(static_cast<int>(bf16_pair(p[t][j], p[t][j + 1])));
        for (int c = 0; c < V; ++c) o[t][c] = dot(o[t][c], pj, vv[c]);
      }
    }
  }
  for (int t = 0; t < tile_rows; ++t) {
    const __m512 inv = _mm512_set1_ps(1.0f / l[t]);
    for (int c = 0; c < V; ++c) _mm512_storeu_ps(out[t] + 16 * c, _mm512_mul_ps(o[t][c], inv));
  }
}

#endif

// Calls f.template operator()<V>() for V = vectors (1..8): the kernels' register arrays need V at
// compile time.
template <typename F>
void with_vectors(int vectors, F&& f) {
  switch (vectors) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    case 4:
      return f.template operator()<4>();
    case 5:
      return f.template operator()<5>();
    case 6:
      return f.template operator()<6>();
    case 7:
      return f.template operator()<7>();
    default:
      return f.template operator()<8>();
  }
}

// Plain C++ f32 (builds without AVX-512): the same blocks and online softmax, one row at a time.
inline void rows_portable(const float* qkv, int64_t row_stride, int64_t hidden, int64_t begin,
                          int64_t len, int64_t head, int64_t head_dim, int64_t first, int64_t rows,
                          float scale, float* context) {
  std::vector<float> o(static_cast<size_t>(head_dim));
  float p[kKeyBlock];
  for (int64_t r = first; r < first + rows; ++r) {
    const float* q = qkv + (begin + r) * row_stride + head * head_dim;
    std::fill(o.begin(), o.end(), 0.0f);
    float m = -std::numeric_limits<float>::infinity(), l = 0;
    for (int64_t k0 = 0; k0 < len; k0 += kKeyBlock) {
      const int64_t valid = std::min(kKeyBlock, len - k0);
      float block_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < valid; ++j) {
        const float* k = qkv + (begin + k0 + j) * row_stride + hidden + head * head_dim;
        float dot = 0;
        for (int64_t i = 0; i < head_dim; ++i) dot += q[i] * k[i];
        p[j] = dot * scale;
        block_max = std::max(block_max, p[j]);
      }
      const float m_new = std::max(m, block_max), alpha = std::exp(m - m_new);
      l *= alpha;
      for (float& x : o) x *= alpha;
      for (int64_t j = 0; j < valid; ++j) {
        p[j] = std::exp(p[j] - m_new);
        l += p[j];
        const float* v = qkv + (begin + k0 + j) * row_stride + 2 * hidden + head * head_dim;
        for (int64_t i = 0; i < head_dim; ++i) o[i] += p[j] * v[i];
      }
      m = m_new;
    }
    float* out = context + (begin + r) * hidden + head * head_dim;
    for (int64_t i = 0; i < head_dim; ++i) out[i] = o[i] / l;
  }
}

}  // namespace detail

// context[tokens, hidden] = attention of every packed sequence of `batch` over itself, from the
// packed qkv rows [tokens, 3 * hidden]. Threads (OpenMP) take (sequence, head, query block)
// tasks; query_block rows per task. Requires available(head_dim, bf16).
inline void attention(const float* qkv, const Batch& batch, int64_t heads, int64_t hidden,
                      float* context, bool bf16, int64_t query_block = 64) {
  const int64_t head_dim = hidden / heads, row_stride = 3 * hidden;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const std::vector<detail::Task> tasks = detail::tasks_of(batch, heads, query_block);
  const auto task_count = static_cast<int64_t>(tasks.size());
  if constexpr (!kVectorised) {
    (void)bf16;  // available() is false for bf16 here
#pragma omp parallel for schedule(dynamic)
    for (int64_t n = 0; n < task_count; ++n) {
      const detail::Task& t = tasks[static_cast<size_t>(n)];
      detail::rows_portable(qkv, row_stride, hidden, batch.seq_begin(t.sequence),
                            batch.seq_len(t.sequence), t.head, head_dim, t.first_row, t.rows, scale,
                            context);
    }
    return;
  }
#if defined(__AVX512F__)
  // 1. Pack K (and V) of every (sequence, head), keys padded to a multiple of kKeyBlock.
  const int64_t sequences = batch.num_sequences();
  std::vector<int64_t> offset(static_cast<size_t>(sequences + 1), 0);  // in elements per head
  for (int64_t s = 0; s < sequences; ++s)
    offset[s + 1] = offset[s] + detail::round_up(batch.seq_len(s), kKeyBlock) * head_dim;
  const int64_t per_head = offset[sequences];
  thread_local std::vector<float> kt_f32;
  thread_local std::vector<uint32_t> kp_bf16, vp_bf16, qp_bf16;
  float* kt = bf16 ? nullptr : detail::grow(kt_f32, static_cast<size_t>(heads * per_head));
  uint32_t* kp = bf16 ? detail::grow(kp_bf16, static_cast<size_t>(heads * per_head / 2)) : nullptr;
  uint32_t* vp = bf16 ? detail::grow(vp_bf16, static_cast<size_t>(heads * per_head / 2)) : nullptr;
  // bf16: the query rows as pairs too, [tokens][hidden / 2]
  uint32_t* qp =
      bf16 ? detail::grow(qp_bf16, static_cast<size_t>(batch.cu_seqlens.back() * hidden / 2))
           : nullptr;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t s = 0; s < sequences; ++s)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      const int64_t stride = detail::round_up(len, kKeyBlock);  // keys per packed row
      const int64_t base = h * per_head + offset[s];
      const auto k_at = [&](int64_t j, int64_t i) {
        return j < len ? qkv[(begin + j) * row_stride + hidden + h * head_dim + i] : 0.0f;
      };
      const auto v_at = [&](int64_t j, int64_t i) {
        return j < len ? qkv[(begin + j) * row_stride + 2 * hidden + h * head_dim + i] : 0.0f;
      };
      if (!bf16) {
        for (int64_t i = 0; i < head_dim; ++i)
          for (int64_t j = 0; j < stride; ++j) kt[base + i * stride + j] = k_at(j, i);
        continue;
      }
      for (int64_t i = 0; i < head_dim / 2; ++i)
        for (int64_t j = 0; j < stride; ++j)
          kp[base / 2 + i * stride + j] = detail::bf16_pair(k_at(j, 2 * i), k_at(j, 2 * i + 1));
      for (int64_t j = 0; j < stride / 2; ++j)
        for (int64_t i = 0; i < head_dim; ++i)
          vp[base / 2 + j * head_dim + i] = detail::bf16_pair(v_at(2 * j, i), v_at(2 * j + 1, i));
      for (int64_t r = 0; r < len; ++r)
        for (int64_t i = 0; i < head_dim / 2; ++i) {
          const float* q = qkv + (begin + r) * row_stride + h * head_dim + 2 * i;
          qp[(begin + r) * hidden / 2 + h * head_dim / 2 + i] = detail::bf16_pair(q[0], q[1]);
        }
    }
  // 2. The tasks: tiles of kQueryTile rows; a short last tile repeats its last row (not stored).
  const int vectors = static_cast<int>(head_dim / 16);
#pragma omp parallel for schedule(dynamic)
  for (int64_t n = 0; n < task_count; ++n) {
    const detail::Task& task = tasks[static_cast<size_t>(n)];
    const int64_t begin = batch.seq_begin(task.sequence), len = batch.seq_len(task.sequence);
    const int64_t stride = detail::round_up(len, kKeyBlock);
    const int64_t base = task.head * per_head + offset[task.sequence];
    for (int64_t r0 = task.first_row; r0 < task.first_row + task.rows; r0 += kQueryTile) {
      const int64_t tile_rows = std::min(kQueryTile, task.first_row + task.rows - r0);
      const float* q[kQueryTile];
      const uint32_t* qpair[kQueryTile];
      float* out[kQueryTile];
      for (int64_t t = 0; t < kQueryTile; ++t) {
        const int64_t token = begin + r0 + std::min(t, tile_rows - 1);
        q[t] = qkv + token * row_stride + task.head * head_dim;
        out[t] = context + token * hidden + task.head * head_dim;
        if (bf16) qpair[t] = qp + token * hidden / 2 + task.head * head_dim / 2;
      }
      const float* v_rows = qkv + begin * row_stride + 2 * hidden + task.head * head_dim;
      detail::with_vectors(vectors, [&]<int V>() {
#if defined(__AVX512BF16__)
        if (bf16)
          return detail::tile_bf16<V>(qpair, kp + base / 2, stride, vp + base / 2, len, scale, out,
                                      tile_rows);
#endif
        detail::tile_f32<V>(q, kt + base, stride, v_rows, row_stride, len, scale, out, tile_rows);
      });
    }
  }
#endif
}

}  // namespace tinybert::flash
