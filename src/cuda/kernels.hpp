// Host-side launchers of our own kernels (src/cuda/*.cu), with plain pointers and sizes only, so
// that the backend (compiled as C++20 by the host compiler) needs no CUDA language features.
// Every launcher enqueues on `stream` and returns cudaGetLastError().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tinybert::cuda_kernels {

enum class Element { f16, bf16 };  // the activation types kernels are instantiated for
enum class Act { none, gelu, tanh, sigmoid };

// A packed batch in device memory (int32 each): ids, type ids, task ids and positions per token,
// cu_seqlens per sequence + 1.
struct BatchView {
  const int32_t* input_ids = nullptr;
  const int32_t* token_type_ids = nullptr;
  const int32_t* task_type_ids = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* cu_seqlens = nullptr;
  int32_t num_tokens = 0, num_sequences = 0, max_seq_len = 0;
};

// Largest row LayerNorm keeps in shared memory (fp32).
constexpr int kMaxLayerNormCols = 8192;
// Largest head_dim of the simple attention kernel.
constexpr int kMaxSimpleHeadDim = 256;

// Opt-in shared memory sizes and a check that this device has a kernel image; call once per
// device before any launch.
cudaError_t init_kernels();

// out[t] = LayerNorm(word[id] + position[pos] + token_type[type] (+ task_type[task])).
cudaError_t embed_layernorm(Element element, const BatchView& batch, const void* word,
                            const void* position, const void* token_type, const void* task_type,
                            const float* gamma, const float* beta, float eps, void* out, int cols,
                            cudaStream_t stream);

// x = LayerNorm(x + residual), or LayerNorm(x) when residual is null; [rows, cols].
cudaError_t add_layernorm(Element element, void* x, const void* residual, const float* gamma,
                          const float* beta, float eps, int rows, int cols, cudaStream_t stream);

enum class AttentionKernel { simple, tensor_core };
bool tensor_core_attention_supports(int head_dim);

// context[t, h*d..] = softmax(q k^T / sqrt(d)) v within each sequence; qkv rows are [q | k | v].
cudaError_t attention(Element element, AttentionKernel kernel, const void* qkv, void* context,
                      const int32_t* cu_seqlens, int num_sequences, int max_seq_len, int num_heads,
                      int head_dim, cudaStream_t stream);

// The attention probabilities themselves (fill-mask attribution): for sequence s, head h, query
// i, key j at probs[prob_offsets[s] + (h * len + i) * len + j].
cudaError_t attention_probs(Element element, const void* qkv, float* probs,
                            const int32_t* cu_seqlens, const int64_t* prob_offsets,
                            int num_sequences, int max_seq_len, int num_heads, int head_dim,
                            cudaStream_t stream);

// Symmetric per-token int8: q = rint(x * 127 / max|x|); rows rows..padded_rows-1 are zeroed.
cudaError_t quantize_rows(Element element, const void* x, int8_t* q, float* scales, int rows,
                          int padded_rows, int cols, cudaStream_t stream);

// out[r, c] = act(acc[r, c] * token_scales[r] * weight_scales[c] + bias[c]), acc int32 [rows,
// cols].
cudaError_t dequantize_epilogue(Element element, const int32_t* acc, const float* token_scales,
                                const float* weight_scales, const float* bias, void* out, int rows,
                                int cols, Act act, cudaStream_t stream);

// x = act(x) in place, [count] elements.
cudaError_t activation(Element element, void* x, int64_t count, Act act, cudaStream_t stream);

// out[r, o] = act(in[r, :] . weight[o, :] + bias[o]) in fp32: projections with a few outputs.
cudaError_t small_linear(Element element, const void* in, const float* weight, const float* bias,
                         float* out, int rows, int in_features, int out_features, Act act,
                         cudaStream_t stream);

// out[s] = row 0 of sequence s (mean == false) or the mean of its rows.
cudaError_t pool(Element element, const void* hidden, const int32_t* cu_seqlens, int num_sequences,
                 int cols, bool mean, void* out, cudaStream_t stream);

// out[i] = in[rows[i]].
cudaError_t gather_rows(Element element, const void* in, const int64_t* rows, int num_rows,
                        int cols, void* out, cudaStream_t stream);

}  // namespace tinybert::cuda_kernels
