// THE forward pass of a BERT-family encoder, written once and templated on the backend.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "tinybert/backend/backend.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/model.hpp"

namespace tinybert {

// The activation buffers of one forward pass, by name (see Workspace and workspace_plan()).
enum class WorkspaceBuffer { hidden, qkv, context, projected, intermediate };
inline constexpr std::array kWorkspaceBuffers = {
    WorkspaceBuffer::hidden, WorkspaceBuffer::qkv, WorkspaceBuffer::context,
    WorkspaceBuffer::projected, WorkspaceBuffer::intermediate};

inline const char* workspace_buffer_name(WorkspaceBuffer b) {
  switch (b) {
    case WorkspaceBuffer::hidden:
      return "hidden";
    case WorkspaceBuffer::qkv:
      return "qkv";
    case WorkspaceBuffer::context:
      return "context";
    case WorkspaceBuffer::projected:
      return "projected";
    case WorkspaceBuffer::intermediate:
      return "intermediate";
  }
  return "?";
}

// Activations of one forward pass. Sized by the first (or largest) batch; later batches of
// the same size or smaller reuse the memory.
template <class Backend>
struct Workspace {
  typename Backend::Matrix hidden;        // [tokens, hidden]: the encoder's output
  typename Backend::Matrix qkv;           // [tokens, 3 * hidden]
  typename Backend::Matrix context;       // [tokens, hidden]
  typename Backend::Matrix projected;     // [tokens, hidden]
  typename Backend::Matrix intermediate;  // [tokens, intermediate]
  // Last layer's attention probabilities, filled only when asked for (fill-mask attribution).
  std::vector<float> last_attention;
  bool record_last_attention = false;

  typename Backend::Matrix& buffer(WorkspaceBuffer b) {
    switch (b) {
      case WorkspaceBuffer::hidden:
        return hidden;
      case WorkspaceBuffer::qkv:
        return qkv;
      case WorkspaceBuffer::context:
        return context;
      case WorkspaceBuffer::projected:
        return projected;
      case WorkspaceBuffer::intermediate:
        return intermediate;
    }
    return hidden;
  }
  const typename Backend::Matrix& buffer(WorkspaceBuffer b) const {
    return const_cast<Workspace&>(*this).buffer(b);
  }
};

template <class Backend>
class Encoder {
 public:
  // Prepares (converts, packs) every weight once for the backend.
  Encoder(const Model& model, Backend& backend) : config_(model.config()), backend_(backend) {
    static_assert(tinybert::Backend<Backend>, "see include/tinybert/backend/backend.hpp");
    const ModelWeights& w = model.weights();
    const float eps = config_.layer_norm_eps;
    embeddings_ = backend.prepare(w.embeddings, eps);
    for (const LayerWeights& lw : w.layers) {
      layers_.push_back({backend.prepare(lw.qkv), backend.prepare(lw.attention_output),
                         backend.prepare(lw.attention_norm, eps),
                         backend.prepare(lw.ffn_intermediate), backend.prepare(lw.ffn_output),
                         backend.prepare(lw.ffn_norm, eps)});
      // Every backend's Linear is its own copy (packed, converted or on the GPU): the file's pages
      // that were read to make it need not stay resident next to it (issue 6: RSS after load).
      for (const LinearWeights* linear :
           {&lw.qkv, &lw.attention_output, &lw.ffn_intermediate, &lw.ffn_output})
        model.release_pages(linear->weight);
    }
  }

  // Packed tokens in, final hidden states out in ws.hidden ([tokens, hidden]). The batch must
  // have passed validate_request() (request.hpp): the runners check it, backends trust it.
  void forward(const Batch& batch, Workspace<Backend>& ws) const {
    embed(batch, ws);
    run_layers(batch, ws, 0, num_layers());
  }

  // The two halves of forward(), for models that run parts of the stack on different batches
  // (SiameseUIE: shared layers per sequence, cross layers over sequence pairs).
  void embed(const Batch& batch, Workspace<Backend>& ws) const {
    backend_.embed(embeddings_, batch, ws.hidden);
  }

  // Layers [first, last) over ws.hidden, in place.
  void run_layers(const Batch& batch, Workspace<Backend>& ws, int64_t first, int64_t last) const {
    for (int64_t i = first; i < last; ++i) {
      const Layer& layer = layers_[static_cast<size_t>(i)];
      const bool record = ws.record_last_attention && i + 1 == num_layers();
      // self-attention block, post-LayerNorm: h = LN(h + W_o * attention(W_qkv * h))
      backend_.linear(layer.qkv, ws.hidden, ws.qkv, Activation::none);
      backend_.attention(ws.qkv, batch, config_.num_heads, ws.context,
                         record ? &ws.last_attention : nullptr);
      backend_.linear(layer.attention_output, ws.context, ws.projected, Activation::none);
      backend_.add_layernorm(layer.attention_norm, ws.projected, ws.hidden);
      // feed-forward block: h = LN(h + W_2 * gelu(W_1 * h)), in one call where the backend
      // fuses the two linears (backend.hpp, FusedFeedForward)
      if constexpr (FusedFeedForward<Backend>) {
        backend_.feed_forward(layer.ffn_intermediate, layer.ffn_output, ws.hidden, ws.intermediate,
                              ws.projected);
      } else {
        backend_.linear(layer.ffn_intermediate, ws.hidden, ws.intermediate, Activation::gelu);
        backend_.linear(layer.ffn_output, ws.intermediate, ws.projected, Activation::none);
      }
      backend_.add_layernorm(layer.ffn_norm, ws.projected, ws.hidden);
    }
  }

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }

 private:
  struct Layer {
    typename Backend::Linear qkv, attention_output;
    typename Backend::Norm attention_norm;
    typename Backend::Linear ffn_intermediate, ffn_output;
    typename Backend::Norm ffn_norm;
  };

  ModelConfig config_;
  Backend& backend_;
  typename Backend::Embeddings embeddings_;
  std::vector<Layer> layers_;
};

}  // namespace tinybert
