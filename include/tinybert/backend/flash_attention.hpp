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
// v2 blocked oneDNN matmuls, v3 this one, v4 this one on AMX tiles), each checked against v1 and
// timed there.
//
// Arithmetic: f32 (AVX-512 FMA), bf16 (AVX512-BF16 `vdpbf16ps`: Q, K, V and P rounded to bf16,
// products accumulated in f32, as the bf16 GEMMs do) and amx_bf16 (the same roundings, the two
// products on AMX tiles: attend_block_amx below). A build without AVX-512 (generic x86-64,
// aarch64) gets the same algorithm in plain C++ for f32 and no bf16 kernel (available() says so;
// the backend then keeps v2).
//
// Layout: the packed qkv rows of a Batch, [tokens, 3 * hidden] = [q | k | v], head h at columns
// h * d .. h * d + d of each third. Per (sequence, head) K and V are first packed: in f32 Kᵀ (16
// consecutive keys are one vector) and V's rows side by side; in bf16 K, V and Q as pairs (the
// operand layout of vdpbf16ps, and of AMX's tdpbf16ps). Packing is O(L d), the attention O(L² d).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tinybert/backend/aligned_vector.hpp"
#include "tinybert/backend/cpu_features.hpp"
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
#if defined(__AVX512BF16__) && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define TINYBERT_FLASH_AMX 1  // AMX tiles with bf16 (Sapphire Rapids and later), and AVX512-BF16
constexpr bool kHaveAmx = true;
#else
constexpr bool kHaveAmx = false;
#endif

// How the two products are computed (the softmax is f32 in all three).
enum class Arithmetic { f32, bf16, amx_bf16 };

inline const char* arithmetic_name(Arithmetic a) {
  return a == Arithmetic::f32 ? "f32" : a == Arithmetic::bf16 ? "bf16" : "AMX bf16";
}

// Whether this build and process have the fused kernel for a head size and arithmetic: head_dim
// a multiple of 16 up to 128 (one to eight vectors per row) for the AVX-512 kernels; 32 or 64
// (the output rows of 16 queries must fit in four of AMX's eight tiles) for AMX, where the
// kernel also lets this process use tiles; any for plain C++ f32.
inline bool available(int64_t head_dim, Arithmetic a) {
  switch (a) {
    case Arithmetic::amx_bf16:
      return kHaveAmx && (head_dim == 32 || head_dim == 64) && cpu::amx_tiles_enabled();
    case Arithmetic::bf16:
      return kHaveBf16 && head_dim % 16 == 0 && head_dim <= 128;
    default:
      return !kVectorised || (head_dim % 16 == 0 && head_dim <= 128);
  }
}

namespace detail {

inline int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

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
// 16 floats -> 16 bf16 rounded to nearest even (as Eigen::bfloat16 does), i.e. 8 pairs.
inline __m256i bf16_x16(const float* x) {
  const __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(x));
  return reinterpret_cast<const __m256i&>(b);
}

// Packs one (sequence, head) for the bf16 kernels from its columns of the qkv rows (q, k, v: the
// head's first column in the first row; rows row_stride apart), keys past `len` zeros up to
// `stride`: kp [d/2][stride] pairs of dimensions (a transposition, through a gather), vp
// [stride/2][d] pairs of keys (two rows interleaved), and the query rows into qp as pairs (its
// rows q_row apart). Vectorised: scalar packing was 8 % of a bge-small pass at 256 tokens.
inline void pack_head_bf16(const float* q, const float* k, const float* v, int64_t row_stride,
                           int64_t len, int64_t stride, int64_t d, uint32_t* kp, uint32_t* vp,
                           uint32_t* qp, int64_t q_row) {
  const __m256i zero = _mm256_setzero_si256();
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  // K, 16 keys at a time: their rows as pairs into `rows` (in L1), then each pair's 16 keys
  // gathered from there into one contiguous vector of kp (whole cache lines written once).
  alignas(64) uint32_t rows[16 * 64];  // 16 keys x up to 64 pairs (d <= 128)
  const __m512i key_rows =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int>(d / 2)));
  for (int64_t j0 = 0; j0 < stride; j0 += 16) {
    for (int64_t j = 0; j < 16; ++j)
      for (int64_t i = 0; i < d; i += 16)
        _mm256_store_si256(reinterpret_cast<__m256i*>(rows + j * d / 2 + i / 2),
                           j0 + j < len ? bf16_x16(k + (j0 + j) * row_stride + i) : zero);
    for (int64_t pair = 0; pair < d / 2; ++pair)
      _mm512_storeu_si512(kp + pair * stride + j0,
                          _mm512_i32gather_epi32(key_rows, rows + pair, 4));
  }
  for (int64_t j = 0; j < stride; j += 2)
    for (int64_t i = 0; i < d; i += 16) {
      const __m256i a = j < len ? bf16_x16(v + j * row_stride + i) : zero;
      const __m256i b = j + 1 < len ? bf16_x16(v + (j + 1) * row_stride + i) : zero;
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
      _mm512_storeu_si512(vp + j / 2 * d + i, _mm512_permutexvar_epi16(interleave, both));
    }
  for (int64_t r = 0; r < len; ++r)
    for (int64_t i = 0; i < d; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qp + r * q_row + i / 2),
                          bf16_x16(q + r * row_stride + i));
}

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

#if defined(TINYBERT_FLASH_AMX)
// AMX (v4): eight tile registers of up to 16 rows x 64 bytes, and tdpbf16ps, which adds the
// product of a 16 x 32 bf16 tile A and a 32 x 16 one B (stored as 16 rows of 16 pairs: the K and
// V packing above) into a 16 x 16 f32 tile: 16 K multiply-adds in one instruction, 16 times
// vdpbf16ps's 512. Every tile here is 16 rows x 64 bytes. Tile registers are accumulators that
// vector instructions cannot reach: an online softmax would have to store, rescale and reload
// the output tiles at every key block. So a block of 16 query rows computes its whole score rows
// (16 x L f32, 32 KB at 512 keys: L2), takes an exact softmax of them, and then accumulates P V
// over all keys in four output tiles that are stored once. Still no L x L matrix.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

inline void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = 16;
  }
  _tile_loadconfig(&config);
}

// S = Q Kᵀ (not yet scaled) of 16 query rows and all `stride` keys (a multiple of 32) into
// s[16][stride]. q: the first row as pairs of dimensions, rows q_row uint32 apart; kp: the
// head's K as pairs, [d/2][stride]. Tiles: 0-1 S (16 keys each), 2-3 Q (32 dimensions each),
// 4-7 K. Chunks = d / 32.
template <int Chunks>
void scores_amx(const uint32_t* q, int64_t q_row, const uint32_t* kp, int64_t stride, float* s) {
  const auto k_row = stride * 4;  // bytes
  _tile_loadd(2, q, q_row * 4);
  if constexpr (Chunks == 2) _tile_loadd(3, q + 16, q_row * 4);
  for (int64_t key = 0; key < stride; key += 32) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_loadd(4, kp + key, k_row);
    _tile_loadd(5, kp + key + 16, k_row);
    _tile_dpbf16ps(0, 2, 4);
    _tile_dpbf16ps(1, 2, 5);
    if constexpr (Chunks == 2) {  // dimensions 32..63: pairs 16..31
      _tile_loadd(6, kp + 16 * stride + key, k_row);
      _tile_loadd(7, kp + 16 * stride + key + 16, k_row);
      _tile_dpbf16ps(0, 3, 6);
      _tile_dpbf16ps(1, 3, 7);
    }
    _tile_stored(0, s + key, k_row);
    _tile_stored(1, s + key + 16, k_row);
  }
}

// One score row: p = e^(scale (s - max)) for the `len` keys and 0 for the padding up to `stride`,
// written as bf16 (the P V operand); returns the sum of the f32 values.
inline float softmax_row_amx(const float* s, int64_t len, int64_t stride, float scale,
                             uint16_t* p) {
  const auto keep = [&](int64_t key) {
    return static_cast<__mmask16>((1u << std::clamp<int64_t>(len - key, 0, 16)) - 1);
  };
  __m512 max = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t key = 0; key < len; key += 16)
    max = _mm512_mask_max_ps(max, keep(key), max, _mm512_loadu_ps(s + key));
  const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(max) * scale);
  const __m512 scale_v = _mm512_set1_ps(scale);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t key = 0; key < stride; key += 32) {
    __m512 e[2];
    for (int h = 0; h < 2; ++h) {
      const int64_t at = key + 16 * h;
      e[h] = _mm512_maskz_mov_ps(keep(at),
                                 exp_ps(_mm512_fmsub_ps(_mm512_loadu_ps(s + at), scale_v, shift)));
      sum = _mm512_add_ps(sum, e[h]);
    }
    const __m512bh pair = _mm512_cvtne2ps_pbh(e[1], e[0]);
    _mm512_storeu_si512(p + key, reinterpret_cast<const __m512i&>(pair));
  }
  return _mm512_reduce_add_ps(sum);
}

// O = P V of 16 rows over all keys into o[16][d] (f32, not yet divided by the sums). p: 16 rows
// of `stride` bf16; vp: the head's V as pairs of keys, [stride/2][d]. Tiles: 0-3 O (16
// dimensions each), 4 P (32 keys), 5-7 V.
template <int Chunks>
void context_amx(const uint16_t* p, int64_t stride, const uint32_t* vp, float* o) {
  constexpr int64_t d = 32 * Chunks;
  _tile_zero(0);
  _tile_zero(1);
  if constexpr (Chunks == 2) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t key = 0; key < stride; key += 32) {
    const uint32_t* v = vp + key / 2 * d;
    _tile_loadd(4, p + key, stride * 2);
    _tile_loadd(5, v, d * 4);
    _tile_loadd(6, v + 16, d * 4);
    _tile_dpbf16ps(0, 4, 5);
    _tile_dpbf16ps(1, 4, 6);
    if constexpr (Chunks == 2) {
      _tile_loadd(7, v + 32, d * 4);
      _tile_loadd(5, v + 48, d * 4);
      _tile_dpbf16ps(2, 4, 7);
      _tile_dpbf16ps(3, 4, 5);
    }
  }
  _tile_stored(0, o, d * 4);
  _tile_stored(1, o + 16, d * 4);
  if constexpr (Chunks == 2) {
    _tile_stored(2, o + 32, d * 4);
    _tile_stored(3, o + 48, d * 4);
  }
}

// The scratch of one thread's AMX blocks: 16 score rows (f32) and 16 probability rows (bf16),
// laid out in `bytes(stride)` bytes from `base`.
struct AmxScratch {
  float* scores;            // [16][stride]
  uint16_t* probabilities;  // [16][stride]

  static int64_t bytes(int64_t stride) {
    return 16 * stride * static_cast<int64_t>(sizeof(float) + sizeof(uint16_t));
  }
  static AmxScratch at(char* base, int64_t stride) {
    return {reinterpret_cast<float*>(base),
            reinterpret_cast<uint16_t*>(base + 16 * stride * sizeof(float))};
  }
};

// One block of query rows on AMX, 16 rows at a time (rows past `rows` are computed from
// whatever rows follow and not stored). q: the first row as pairs, rows q_row apart; kp, vp as
// ProductBf16's, keys padded to `stride` (a multiple of 32). Needs configure_tiles() first.
template <int Chunks>
void attend_block_amx(const uint32_t* q, int64_t q_row, const uint32_t* kp, const uint32_t* vp,
                      int64_t rows, int64_t len, int64_t stride, float scale, AmxScratch scratch,
                      float* const out[kQueryBlock]) {
  constexpr int64_t d = 32 * Chunks;
  float* scores = scratch.scores;
  uint16_t* probabilities = scratch.probabilities;
  alignas(64) float o[16][d];
  float inverse_sum[16];
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    scores_amx<Chunks>(q + r0 * q_row, q_row, kp, stride, scores);
    for (int64_t r = 0; r < 16; ++r)
      inverse_sum[r] = 1.0f / softmax_row_amx(scores + r * stride, len, stride, scale,
                                              probabilities + r * stride);
    context_amx<Chunks>(probabilities, stride, vp, &o[0][0]);
    for (int64_t r = 0; r < std::min<int64_t>(16, rows - r0); ++r) {
      const __m512 inv = _mm512_set1_ps(inverse_sum[r]);
      for (int64_t c = 0; c < d; c += 16)
        _mm512_storeu_ps(out[r0 + r] + c, _mm512_mul_ps(_mm512_load_ps(&o[r][c]), inv));
    }
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
// packed qkv rows [tokens, 3 * hidden]. Threads (OpenMP) take (sequence, head, block of
// kQueryBlock query rows) tasks. Requires available(head_dim, arithmetic).
inline void attention(const float* qkv, const Batch& batch, int64_t heads, int64_t hidden,
                      float* context, Arithmetic arithmetic) {
  const int64_t head_dim = hidden / heads, row_stride = 3 * hidden;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const std::vector<detail::Task> tasks = detail::tasks_of(batch, heads, kQueryBlock);
  const auto task_count = static_cast<int64_t>(tasks.size());
  if constexpr (!kVectorised) {
    (void)arithmetic;  // available() is false for bf16 here
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
  // 1. Pack K and V of every (sequence, head), keys padded with zeros to whole vectors (16; 32 in
  //    bf16, AMX's step): f32 Kᵀ [d][keys] and V [keys][d]; bf16 K in pairs of dimensions, V in
  //    pairs of keys, and the query rows in pairs of dimensions, with 16 rows of zeros after the
  //    last (AMX loads 16 query rows at a time).
  const bool bf16 = arithmetic != Arithmetic::f32, amx = arithmetic == Arithmetic::amx_bf16;
  const int64_t key_multiple = bf16 ? 32 : 16;
  const int64_t sequences = batch.num_sequences(), tokens = batch.cu_seqlens.back();
  std::vector<int64_t> offset(static_cast<size_t>(sequences + 1), 0);  // elements, per head
  for (int64_t s = 0; s < sequences; ++s)
    offset[s + 1] = offset[s] + detail::round_up(batch.seq_len(s), key_multiple) * head_dim;
  const auto per_head = offset[static_cast<size_t>(sequences)];
  const auto packed = static_cast<size_t>(heads * per_head);
  thread_local AlignedVector<float> k_f32, v_f32;
  thread_local AlignedVector<uint32_t> k_bf16, v_bf16, q_bf16;
  thread_local AlignedVector<char> amx_scratch;  // per thread, for the longest sequence
  float* kt = bf16 ? nullptr : grow(k_f32, packed);
  float* vf = bf16 ? nullptr : grow(v_f32, packed);
  uint32_t* kp = bf16 ? grow(k_bf16, packed / 2) : nullptr;
  uint32_t* vp = bf16 ? grow(v_bf16, packed / 2) : nullptr;
  uint32_t* qp = bf16 ? grow(q_bf16, static_cast<size_t>((tokens + 16) * hidden / 2)) : nullptr;
  if (bf16) std::fill(qp + tokens * hidden / 2, qp + (tokens + 16) * hidden / 2, 0u);
  int64_t longest = 0;
  for (int64_t s = 0; s < sequences; ++s) longest = std::max(longest, batch.seq_len(s));
  const int64_t amx_bytes =  // per thread; a multiple of 64 (32 keys a step)
      amx ? detail::AmxScratch::bytes(detail::round_up(longest, key_multiple)) : 0;
  [[maybe_unused]] char* amx_base =
      grow(amx_scratch, static_cast<size_t>(amx_bytes * omp_get_max_threads()));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t s = 0; s < sequences; ++s)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t begin = batch.seq_begin(s), len = batch.seq_len(s);
      const int64_t stride = detail::round_up(len, key_multiple);  // keys, padded
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
#if defined(__AVX512BF16__)
      const float* q = qkv + begin * row_stride + h * head_dim;
      detail::pack_head_bf16(q, q + hidden, q + 2 * hidden, row_stride, len, stride, head_dim,
                             kp + base / 2, vp + base / 2,
                             qp + begin * hidden / 2 + h * head_dim / 2, hidden / 2);
#endif
    }
  // 2. The blocks of query rows; rows past a short block's end repeat its last row (not stored).
  //    Each thread configures its tiles once for AMX, and gives them back at the end.
  const int vectors = static_cast<int>(head_dim / 16);
#pragma omp parallel
  {
#if defined(TINYBERT_FLASH_AMX)
    if (amx) detail::configure_tiles();
    char* const mine = amx_base + amx_bytes * omp_get_thread_num();
#endif
#pragma omp for schedule(dynamic)
    for (int64_t n = 0; n < task_count; ++n) {
      const detail::Task& task = tasks[static_cast<size_t>(n)];
      const int64_t begin = batch.seq_begin(task.sequence), len = batch.seq_len(task.sequence);
      const int64_t stride = detail::round_up(len, key_multiple);  // keys, padded
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
#if defined(TINYBERT_FLASH_AMX)
      if (amx) {
        const auto block =
            head_dim == 64 ? detail::attend_block_amx<2> : detail::attend_block_amx<1>;
        block(q_pairs[0], hidden / 2, kp + base / 2, vp + base / 2, task.rows, len, stride, scale,
              detail::AmxScratch::at(mine, stride), out);
        continue;
      }
#endif
      detail::with_vectors(vectors, [&]<int V>() {
#if defined(__AVX512BF16__)
        if (bf16)
          return detail::attend_block<V>(
              detail::ProductBf16{q_pairs, kp + base / 2, vp + base / 2, stride, head_dim},
              task.rows, len, scale, out);
#endif
        detail::attend_block<V>(detail::ProductF32{q, kt + base, vf + base, stride, head_dim},
                                task.rows, len, scale, out);
      });
    }
#if defined(TINYBERT_FLASH_AMX)
    if (amx) _tile_release();
#endif
  }
#endif
}

}  // namespace tinybert::flash
