// The backend contract as a C++20 concept: what Encoder<B> and Heads<B> call, with the argument
// types and constness they call it with. Every backend checks itself against it with
// static_assert(Backend<ItsName>), so a missing or mistyped primitive is one compile error at the
// backend, not pages of template errors in the encoder. What each primitive computes is defined
// by CpuRefBackend (backend/cpu_ref.hpp, the spec); tests/test_backend_ops.cpp holds every
// backend to it. Adding a backend: docs/architecture.md.
#pragma once

#include <concepts>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tinybert/backend/host_matrix.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/model.hpp"

namespace tinybert {

// A backend is used through a non-const reference (the CUDA one keeps a stream and scratch
// state); inputs are const references, outputs non-const references that the primitive resizes.
template <class B>
concept Backend = requires(
    B& backend, const LinearWeights& linear_weights, const NormWeights& norm_weights,
    const EmbeddingWeights& embedding_weights, float eps, const typename B::Linear& linear,
    const typename B::Norm& norm, const typename B::Embeddings& embeddings, const Batch& batch,
    const typename B::Matrix& in, typename B::Matrix& out, Activation activation, Pooling pooling,
    int64_t num_heads, std::vector<float>* probabilities, std::span<const int64_t> rows,
    std::span<const float> host_values, int64_t host_rows, int64_t host_cols) {
  // Activations [rows, cols]: a workspace buffer whose storage only grows.
  typename B::Matrix;
  requires std::default_initializable<typename B::Matrix>;
  { in.rows() } -> std::convertible_to<int64_t>;
  { in.cols() } -> std::convertible_to<int64_t>;
  // Weights prepared once at load (converted, packed or uploaded), owned by the encoder.
  typename B::Linear;
  typename B::Norm;
  typename B::Embeddings;
  { backend.prepare(linear_weights) } -> std::same_as<typename B::Linear>;
  { backend.prepare(norm_weights, eps) } -> std::same_as<typename B::Norm>;
  { backend.prepare(embedding_weights, eps) } -> std::same_as<typename B::Embeddings>;
  // out[t] = LayerNorm(word[id] + position[pos in its sequence] + token_type[type] (+ task))
  { backend.embed(embeddings, batch, out) } -> std::same_as<void>;
  // out = activation(in @ W^T + b)
  { backend.linear(linear, in, out, activation) } -> std::same_as<void>;
  // out = LayerNorm(out + in): the residual is the input
  { backend.add_layernorm(norm, in, out) } -> std::same_as<void>;
  { backend.layernorm(norm, out) } -> std::same_as<void>;
  // Self-attention of each packed sequence over itself; in = qkv rows [q | k | v]. When
  // `probabilities` is not null the softmax is also written there (layout: ForwardResult).
  { backend.attention(in, batch, num_heads, out, probabilities) } -> std::same_as<void>;
  // out[s] = the [CLS] row or the mean of sequence s's rows
  { backend.pool(in, batch, pooling, out) } -> std::same_as<void>;
  // out[i] = in[rows[i]]
  { backend.gather_rows(in, rows, out) } -> std::same_as<void>;
  // f32 values row-major in host memory (waits for a device), and back: out = [rows, cols]
  { backend.to_host(in) } -> std::same_as<std::vector<float>>;
  { backend.from_host(host_values, host_rows, host_cols, out) } -> std::same_as<void>;
  // "ref", "f32", "bf16", "int8", "cuda-f16", ...: what --backend calls it; caches that hold
  // a backend's outputs (the label cache) key on it.
  { std::as_const(backend).name() } -> std::convertible_to<std::string>;
};

// Optional, for a backend that fuses the feed-forward block's two linears (OneDnnBackend in int8:
// the first one's epilogue quantises the second one's input): out = W_2 gelu(W_1 in + b_1) + b_2,
// `intermediate` its scratch. Encoder calls it where a backend has it, else linear() twice, which
// is the definition it must equal.
template <class B>
concept FusedFeedForward = requires(B& backend, const typename B::Linear& linear,
                                    const typename B::Matrix& in, typename B::Matrix& out) {
  { backend.feed_forward(linear, linear, in, out, out) } -> std::same_as<void>;
};

}  // namespace tinybert
