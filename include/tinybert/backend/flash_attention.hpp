// Fused self-attention on the CPU, after FlashAttention-2 (Dao 2023): for each (sequence, head,
// block of kQueryBlock query rows) the keys are visited in blocks of kKeyBlock; each block's
// scores S = Q Kᵀ / sqrt(d) are computed 4 rows x 64 keys at a time in registers into a 16 KB
// scratch that stays in L1, an online softmax rescales what was accumulated so far (running max
// m and sum l per row), and P V is added to the output rows. No L x L matrix is ever written,
// and two parallel regions per call (packing, then the blocks) replace the blocked version's
// two matmuls and softmax sweep per block of each sequence (OneDnnBackend's v2), with their
// barriers between threads.
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
// h * d .. h * d + d of each third. Per (sequence, head) K and V are first packed: in f32 Kᵀ (16
// consecutive keys are one vector) and V's rows side by side; in bf16 K, V and Q as pairs (the
// operand layout of vdpbf16ps). Packing is O(L d), the attention O(L² d).
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

constexpr int64_t kQueryTile = 4;    // query rows in registers together (sharing K / V loads)
constexpr int64_t kKeyBlock = 128;   // keys per online-softmax step
constexpr int64_t kKeyTile = 64;     // keys in registers together: 4 vectors of 16 floats
constexpr int64_t kQueryBlock = 32;  // query rows per task, reusing each key block from L1

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

// What one block of kQueryBlock query rows carries from key block to key block: the running
// max m and sum l of each row, its output accumulators o (not yet divided by l), and the current
// key block's probabilities p (f32, and for bf16 as pairs of bf16: the P V operand).
template <int V>
struct BlockState {
  float m[kQueryBlock], l[kQueryBlock];
  alignas(64) float o[kQueryBlock][16 * V];
  alignas(64) float p[kQueryBlock][kKeyBlock];
  alignas(64) uint32_t p_pairs[kQueryBlock][kKeyBlock / 2];

  BlockState() {
    std::fill(std::begin(m), std::end(m), -std::numeric_limits<float>::infinity());
    std::fill(std::begin(l), std::end(l), 0.0f);
    std::memset(o, 0, sizeof(o));
  }
  // out[r] = o[r] / l[r] for the block's valid rows
  void finish(float* const out[], int64_t rows) const {
    for (int64_t r = 0; r < rows; ++r) {
      const __m512 inv = _mm512_set1_ps(1.0f / l[r]);
      for (int c = 0; c < V; ++c)
        _mm512_storeu_ps(out[r] + 16 * c, _mm512_mul_ps(_mm512_load_ps(o[r] + 16 * c), inv));
    }
  }
};

// The online-softmax step of row r for one key block: its raw scores in p[r] (kKeyBlock keys;
// those at or past `valid` are masked) become probabilities e^(scale s - m) under the new running
// max m (and pairs of bf16 in p_pairs[r] for the bf16 kernel); l and the output row are rescaled
// by e^(m_old - m_new). Two horizontal reductions per row and key block: the price of never
// holding a whole row of scores, which a larger kKeyBlock spreads over more keys.
template <int V>
inline void online_softmax_step(int64_t r, int64_t valid, float scale, bool pairs,
                                BlockState<V>& st) {
  constexpr int kVectors = kKeyBlock / 16;
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 keep[kVectors];
  __m512 s[kVectors];
  __m512 max = neg_inf;
  for (int v = 0; v < kVectors; ++v) {
    const int64_t left = std::clamp<int64_t>(valid - 16 * v, 0, 16);
    keep[v] = static_cast<__mmask16>((1u << left) - 1);
    s[v] = _mm512_maskz_mul_ps(keep[v], _mm512_load_ps(st.p[r] + 16 * v), _mm512_set1_ps(scale));
    max = _mm512_mask_max_ps(max, keep[v], max, s[v]);
  }
  const float m_new = std::max(st.m[r], _mm512_reduce_max_ps(max));
  const float alpha = std::exp(st.m[r] - m_new);  // 0 on the first block (m = -inf)
  const __m512 shift = _mm512_set1_ps(m_new);
  __m512 sum = _mm512_setzero_ps();
  for (int v = 0; v < kVectors; ++v) {
    s[v] = _mm512_maskz_mov_ps(keep[v], exp_ps(_mm512_sub_ps(s[v], shift)));
    sum = _mm512_add_ps(sum, s[v]);
    _mm512_store_ps(st.p[r] + 16 * v, s[v]);
  }
#if defined(__AVX512BF16__)
  if (pairs)  // 32 probabilities -> 32 bf16 in order: keys (2j, 2j+1) share a 32-bit lane
    for (int v = 0; v < kVectors; v += 2) {
      const __m512bh bf = _mm512_cvtne2ps_pbh(s[v + 1], s[v]);
      _mm512_store_si512(st.p_pairs[r] + 8 * v, reinterpret_cast<const __m512i&>(bf));
    }
#else
  (void)pairs;
#endif
  st.l[r] = st.l[r] * alpha + _mm512_reduce_add_ps(sum);
  st.m[r] = m_new;
  const __m512 a = _mm512_set1_ps(alpha);
  for (int c = 0; c < V; ++c)
    _mm512_store_ps(st.o[r] + 16 * c, _mm512_mul_ps(_mm512_load_ps(st.o[r] + 16 * c), a));
}

// Calls f.template operator()<KV>() with KV = the 16-key vectors that `valid` keys need.
template <typename F>
void with_key_vectors(int64_t valid, F&& f) {
  switch ((valid + 15) / 16) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    default:
      return f.template operator()<4>();
  }
}

// One block of query rows, in either precision: Product supplies the two products (S = Q Kᵀ
// for kQueryTile rows x 16 KV keys, and O += P V for kQueryTile rows), the loop around them is
// the same. Per key block: S for 4 rows x 64 keys at a time in 16 registers into p, the online
// softmax per row, then O += P V for 4 rows at a time. The key block (32 KB of K and of V for
// d = 64) stays in L2 (mostly L1) while every row tile of the query block uses it. V =
// head_dim / 16; rows past `rows` repeat the last (their results are not stored).
template <int V, class Product>
void attend_block(const Product& product, int64_t rows, int64_t len, float scale,
                  float* const out[kQueryBlock]) {
  BlockState<V> st;
  const int64_t row_tiles = (rows + kQueryTile - 1) / kQueryTile;
  for (int64_t k0 = 0; k0 < len; k0 += kKeyBlock) {
    const int64_t valid = std::min(kKeyBlock, len - k0);
    for (int64_t tile = 0; tile < row_tiles; ++tile) {
      const int64_t r0 = tile * kQueryTile;
      for (int64_t c0 = 0; c0 < valid; c0 += kKeyTile) {
        __m512 s[kQueryTile][4];
        for (auto& row : s)
          for (auto& x : row) x = _mm512_setzero_ps();
        with_key_vectors(std::min(kKeyTile, valid - c0),
                         [&]<int KV>() { product.template scores<KV>(r0, k0 + c0, s); });
        for (int t = 0; t < kQueryTile; ++t)
          for (int v = 0; v < 4; ++v) _mm512_store_ps(st.p[r0 + t] + c0 + 16 * v, s[t][v]);
      }
    }
    for (int64_t r = 0; r < row_tiles * kQueryTile; ++r)
      online_softmax_step<V>(r, valid, scale, Product::kPairs, st);
    for (int64_t tile = 0; tile < row_tiles; ++tile) {
      const int64_t r0 = tile * kQueryTile;
      __m512 o[kQueryTile][V];
      for (int t = 0; t < kQueryTile; ++t)
        for (int c = 0; c < V; ++c) o[t][c] = _mm512_load_ps(st.o[r0 + t] + 16 * c);
      product.template add_pv<V>(st, r0, k0, valid, o);
      for (int t = 0; t < kQueryTile; ++t)
        for (int c = 0; c < V; ++c) _mm512_store_ps(st.o[r0 + t] + 16 * c, o[t][c]);
    }
  }
  st.finish(out, rows);
}

// f32 products. q: kQueryBlock row pointers; kt: the head's Kᵀ, [d][stride]; v: its V rows,
// [stride][d], both with keys padded by zeros to `stride`, a multiple of 16.
struct ProductF32 {
  static constexpr bool kPairs = false;  // P stays f32
  const float* const* q;
  const float* kt;
  const float* v;
  int64_t stride, d;

  // S, accumulated into s: per dimension one load of each key vector, 4 KV FMAs (KV = 1..4
  // vectors: a short last key block computes only what it has).
  template <int KV>
  void scores(int64_t r0, int64_t key, __m512 s[kQueryTile][4]) const {
    for (int64_t i = 0; i < d; ++i) {
      __m512 k[KV];
      for (int c = 0; c < KV; ++c) k[c] = _mm512_loadu_ps(kt + i * stride + key + 16 * c);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512 qi = _mm512_set1_ps(q[r0 + t][i]);
        for (int c = 0; c < KV; ++c) s[t][c] = _mm512_fmadd_ps(qi, k[c], s[t][c]);
      }
    }
  }
  // O += P V: per key one load of its V row, 4 V FMAs.
  template <int V>
  void add_pv(const BlockState<V>& st, int64_t r0, int64_t k0, int64_t valid,
              __m512 o[kQueryTile][V]) const {
    for (int64_t j = 0; j < valid; ++j) {
      const float* vj = v + (k0 + j) * d;
      __m512 vv[V];
      for (int c = 0; c < V; ++c) vv[c] = _mm512_loadu_ps(vj + 16 * c);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512 pj = _mm512_set1_ps(st.p[r0 + t][j]);
        for (int c = 0; c < V; ++c) o[t][c] = _mm512_fmadd_ps(pj, vv[c], o[t][c]);
      }
    }
  }
};
#endif

#if defined(__AVX512BF16__)
inline __m512 dot_bf16(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b));
}

// bf16 products with vdpbf16ps, which multiplies pairs of bf16 and adds both products to an f32
// lane. q: the rows as pairs of dimensions, [d/2] uint32 each; kp: the head's K as pairs of
// dimensions, [d/2][stride] (16 keys a vector); vp: its V as pairs of keys, [stride/2][d] (16
// dimensions a vector); P goes in as pairs of keys (BlockState::p_pairs).
struct ProductBf16 {
  static constexpr bool kPairs = true;
  const uint32_t* const* q;
  const uint32_t* kp;
  const uint32_t* vp;
  int64_t stride, d;

  // S as ProductF32 computes it, per pair of dimensions one load of each key vector.
  template <int KV>
  void scores(int64_t r0, int64_t key, __m512 s[kQueryTile][4]) const {
    for (int64_t i = 0; i < d / 2; ++i) {
      __m512i k[KV];
      for (int c = 0; c < KV; ++c) k[c] = _mm512_loadu_si512(kp + i * stride + key + 16 * c);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512i qi = _mm512_set1_epi32(static_cast<int>(q[r0 + t][i]));
        for (int c = 0; c < KV; ++c) s[t][c] = dot_bf16(s[t][c], qi, k[c]);
      }
    }
  }
  // O += P V over pairs of keys; masked probabilities are 0 and padded V rows zeros, so an odd
  // `valid` may read one key more.
  template <int V>
  void add_pv(const BlockState<V>& st, int64_t r0, int64_t k0, int64_t valid,
              __m512 o[kQueryTile][V]) const {
    for (int64_t j = 0; j < (valid + 1) / 2; ++j) {
      const uint32_t* vj = vp + (k0 / 2 + j) * d;
      __m512i vv[V];
      for (int c = 0; c < V; ++c) vv[c] = _mm512_loadu_si512(vj + 16 * c);
      for (int t = 0; t < kQueryTile; ++t) {
        const __m512i pj = _mm512_set1_epi32(static_cast<int>(st.p_pairs[r0 + t][j]));
        for (int c = 0; c < V; ++c) o[t][c] = dot_bf16(o[t][c], pj, vv[c]);
      }
    }
  }
};
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
// packed qkv rows [tokens, 3 * hidden]. Threads (OpenMP) take (sequence, head, block of
// kQueryBlock query rows) tasks. Requires available(head_dim, bf16).
inline void attention(const float* qkv, const Batch& batch, int64_t heads, int64_t hidden,
                      float* context, bool bf16) {
  const int64_t head_dim = hidden / heads, row_stride = 3 * hidden;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const std::vector<detail::Task> tasks = detail::tasks_of(batch, heads, kQueryBlock);
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
  // 1. Pack K and V of every (sequence, head), keys padded with zeros to a multiple of 16:
  //    f32 Kᵀ [d][keys] and V [keys][d]; bf16 K in pairs of dimensions, V in pairs of keys, and
  //    the query rows in pairs of dimensions.
  const int64_t sequences = batch.num_sequences();
  std::vector<int64_t> offset(static_cast<size_t>(sequences + 1), 0);  // elements, per head
  for (int64_t s = 0; s < sequences; ++s)
    offset[s + 1] = offset[s] + detail::round_up(batch.seq_len(s), 16) * head_dim;
  const auto per_head = offset[static_cast<size_t>(sequences)];
  const auto packed = static_cast<size_t>(heads * per_head);
  thread_local std::vector<float> k_f32, v_f32;
  thread_local std::vector<uint32_t> k_bf16, v_bf16, q_bf16;
  float* kt = bf16 ? nullptr : detail::grow(k_f32, packed);
  float* vf = bf16 ? nullptr : detail::grow(v_f32, packed);
  uint32_t* kp = bf16 ? detail::grow(k_bf16, packed / 2) : nullptr;
  uint32_t* vp = bf16 ? detail::grow(v_bf16, packed / 2) : nullptr;
  uint32_t* qp =
      bf16 ? detail::grow(q_bf16, static_cast<size_t>(batch.cu_seqlens.back() * hidden / 2))
           : nullptr;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t s = 0; s < sequences; ++s)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      const int64_t stride = detail::round_up(len, 16);  // keys, padded to whole vectors
      const int64_t base = h * per_head + offset[static_cast<size_t>(s)];
      const auto k_at = [&](int64_t j, int64_t i) {
        return j < len ? qkv[(begin + j) * row_stride + hidden + h * head_dim + i] : 0.0f;
      };
      const auto v_at = [&](int64_t j, int64_t i) {
        return j < len ? qkv[(begin + j) * row_stride + 2 * hidden + h * head_dim + i] : 0.0f;
      };
      if (!bf16) {
        for (int64_t j = 0; j < stride; ++j)  // key-major: each qkv row is read once, in order
          for (int64_t i = 0; i < head_dim; ++i) kt[base + i * stride + j] = k_at(j, i);
        for (int64_t j = 0; j < stride; ++j)
          for (int64_t i = 0; i < head_dim; ++i) vf[base + j * head_dim + i] = v_at(j, i);
        continue;
      }
      for (int64_t j = 0; j < stride; ++j)
        for (int64_t i = 0; i < head_dim / 2; ++i)
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
  // 2. The blocks of query rows; rows past a short block's end repeat its last row (not stored).
  const int vectors = static_cast<int>(head_dim / 16);
#pragma omp parallel for schedule(dynamic)
  for (int64_t n = 0; n < task_count; ++n) {
    const detail::Task& task = tasks[static_cast<size_t>(n)];
    const int64_t begin = batch.seq_begin(task.sequence), len = batch.seq_len(task.sequence);
    const int64_t stride = detail::round_up(len, 16);  // keys, padded to whole vectors
    const int64_t base = task.head * per_head + offset[static_cast<size_t>(task.sequence)];
    const float* q[kQueryBlock];
    const uint32_t* q_pairs[kQueryBlock];
    float* out[kQueryBlock];
    for (int64_t r = 0; r < kQueryBlock; ++r) {
      const int64_t token = begin + task.first_row + std::min(r, task.rows - 1);
      q[r] = qkv + token * row_stride + task.head * head_dim;
      out[r] = context + token * hidden + task.head * head_dim;
      q_pairs[r] = bf16 ? qp + token * hidden / 2 + task.head * head_dim / 2 : nullptr;
    }
    detail::with_vectors(vectors, [&]<int V>() {
#if defined(__AVX512BF16__)
      if (bf16)
        return detail::attend_block<V>(
            detail::ProductBf16{q_pairs, kp + base / 2, vp + base / 2, stride, head_dim}, task.rows,
            len, scale, out);
#endif
      detail::attend_block<V>(detail::ProductF32{q, kt + base, vf + base, stride, head_dim},
                              task.rows, len, scale, out);
    });
  }
#endif
}

}  // namespace tinybert::flash
