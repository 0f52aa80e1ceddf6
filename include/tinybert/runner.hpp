// Runner: what the tasks ask of a model — run one packed batch through the encoder and one
// head, get host vectors back. The tasks (classify, fill-mask, extract) are written against this
// interface only, so the same task code runs directly (DirectRunner: one forward per call) or
// behind the server's micro-batching scheduler (serving/batching_runner.hpp), which merges the
// requests of many connections into one packed batch.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tinybert/heads.hpp"
#include "tinybert/request.hpp"

namespace tinybert {

// Memory of an accelerator a runner computes on, for metrics.
struct DeviceMemory {
  int64_t ours = 0;         // weights, activations and scratch this runner allocated
  int64_t device_used = 0;  // in use on the device (all processes)
  int64_t device_total = 0;
};

class Runner {
 public:
  virtual ~Runner() = default;
  // Safe to call from many threads at once.
  virtual ForwardResult run(ForwardRequest request) = 0;
  virtual const Model& model() const = 0;
  // The backend that computes the results (Backend::name(): "ref", "int8", "cuda-f16", ...).
  virtual std::string backend_name() const = 0;
  // What a user should know about how it computes (Backend::note() where the backend has one):
  // "bf16 matmul is not available on this CPU ...; using f32", "int8: 8-bit weights (SDOT)".
  virtual std::string backend_note() const { return ""; }
  // Which attention kernel the CPU backend picked for this model's head size ("fused AMX bf16",
  // "blocked", ...: OneDnnBackend::attention_name); empty where the backend has one kernel.
  virtual std::string attention_kernel() const { return ""; }
  // Device memory when the runner computes on an accelerator; none on the CPU.
  virtual std::optional<DeviceMemory> device_memory() const { return std::nullopt; }
};

// The packing of a siamese_logits request's cross-layer pass: [window ; hint] for every hint and
// window, hint-major. (CudaRunner, which sizes its workspace ahead, asks for it too.)
inline Batch siamese_pairs(const ForwardRequest& request) {
  Batch pairs;
  const std::vector<int32_t>& windows = request.text_cu_seqlens;
  for (int64_t h = 0; h < request.batch.num_sequences(); ++h)
    for (size_t w = 0; w + 1 < windows.size(); ++w)
      pairs.add(std::vector<int32_t>(
          static_cast<size_t>(windows[w + 1] - windows[w] + request.batch.seq_len(h)), 0));
  return pairs;
}

// SiameseUIE's split forward pass (ModelScope's fast_inference), on the same encoder and
// primitives: the shared layers over each text window alone (once per text, by the caller's
// first request) and over each hint alone; then the cross layers over [window ; hint] with full
// attention; then the pointer heads on the window's rows. The pairs are assembled on the host:
// a copy of hidden states, small next to the layers' work.
template <class Backend>
ForwardResult run_siamese(const Encoder<Backend>& encoder, Heads<Backend>& heads,
                          Workspace<Backend>& ws, const ForwardRequest& request) {
  const ModelConfig& config = encoder.config();
  const int64_t shared = config.num_layers - config.cross_layers, hidden = config.hidden_size;
  Backend& backend = encoder.backend();
  ForwardResult result;
  encoder.embed(request.batch, ws);
  encoder.run_layers(request.batch, ws, 0, shared);
  if (request.head.kind == HeadKind::siamese_text_states) {
    result.values = backend.to_host(ws.hidden);
    return result;
  }
  const std::vector<float> hint_states = backend.to_host(ws.hidden);
  const Batch& hints = request.batch;
  const std::vector<int32_t>& windows = request.text_cu_seqlens;
  const Batch pairs = siamese_pairs(request);  // packing only: the cross layers start from states
  std::vector<float> pair_states;
  pair_states.reserve(static_cast<size_t>(pairs.num_tokens() * hidden));
  std::vector<int64_t> text_rows;  // the window's rows of every pair, where the heads read
  const auto append_rows = [&](const std::vector<float>& from, int64_t begin, int64_t end) {
    pair_states.insert(pair_states.end(), from.begin() + begin * hidden,
                       from.begin() + end * hidden);
  };
  for (int64_t h = 0; h < hints.num_sequences(); ++h)
    for (size_t w = 0; w + 1 < windows.size(); ++w) {
      const auto first_row = static_cast<int64_t>(pair_states.size()) / hidden;
      for (int64_t t = 0; t < windows[w + 1] - windows[w]; ++t) text_rows.push_back(first_row + t);
      append_rows(request.text_states, windows[w], windows[w + 1]);
      append_rows(hint_states, hints.seq_begin(h), hints.seq_begin(h) + hints.seq_len(h));
    }
  backend.from_host(pair_states, pairs.num_tokens(), hidden, ws.hidden);
  encoder.run_layers(pairs, ws, shared, config.num_layers);
  auto logits = heads.siamese_logits(ws.hidden, text_rows);
  result.start = std::move(logits.start);
  result.end = std::move(logits.end);
  return result;
}

// THE request path of every runner: validate the request against the model, run the encoder,
// then the head the request names. `forward` runs the encoder over the batch; the CUDA runner
// passes one that replays a captured CUDA Graph instead.
template <class Backend, class Forward>
ForwardResult run_request(const Encoder<Backend>& encoder, Heads<Backend>& heads,
                          Workspace<Backend>& ws, const ForwardRequest& request,
                          Forward&& forward) {
  validate_request(request, encoder.config());
  if (request.head.kind == HeadKind::siamese_text_states ||
      request.head.kind == HeadKind::siamese_logits)
    return run_siamese(encoder, heads, ws, request);
  ForwardResult result;
  ws.record_last_attention = request.record_attention;
  ws.last_attention.clear();
  try {
    forward(request.batch, ws);
  } catch (...) {
    ws.record_last_attention = false;
    throw;
  }
  ws.record_last_attention = false;
  if (request.record_attention) result.attention = std::move(ws.last_attention);
  ws.last_attention.clear();
  switch (request.head.kind) {
    case HeadKind::pooled:
      result.values =
          heads.pool(ws.hidden, request.batch, request.head.pooling, request.head.normalize);
      break;
    case HeadKind::classifier_logits:
      result.values = heads.classifier_logits(ws.hidden, request.batch);
      break;
    case HeadKind::mlm_logits:
      result.values = heads.mlm_logits(ws.hidden, request.rows);
      break;
    case HeadKind::uie_spans: {
      auto p = heads.uie_probabilities(ws.hidden);
      result.start = std::move(p.start);
      result.end = std::move(p.end);
      break;
    }
    case HeadKind::siamese_text_states:
    case HeadKind::siamese_logits:
      break;  // run_siamese() above
  }
  return result;
}

template <class Backend>
ForwardResult run_request(const Encoder<Backend>& encoder, Heads<Backend>& heads,
                          Workspace<Backend>& ws, const ForwardRequest& request) {
  return run_request(
      encoder, heads, ws, request,
      [&encoder](const Batch& batch, Workspace<Backend>& w) { encoder.forward(batch, w); });
}

// Encoder + heads of a model on one backend, for one forward pass per run() call. Calls from
// several threads are serialised (one workspace).
template <class Backend>
class DirectRunner final : public Runner {
 public:
  DirectRunner(const Model& model, Backend& backend)
      : model_(model), encoder_(model, backend), heads_(model, backend) {}

  const Model& model() const override { return model_; }

  ForwardResult run(ForwardRequest request) override {
    std::lock_guard lock(mutex_);
    return run_request(encoder_, heads_, ws_, request);
  }

  std::string backend_name() const override { return encoder_.backend().name(); }
  std::string backend_note() const override {
    if constexpr (requires(const Backend& b) { b.note(); }) return encoder_.backend().note();
    return "";
  }
  std::string attention_kernel() const override {
    if constexpr (requires(const Backend& b, int64_t head_dim) { b.attention_name(head_dim); })
      return encoder_.backend().attention_name(model_.config().head_dim());
    return "";
  }

 private:
  const Model& model_;
  Encoder<Backend> encoder_;
  Heads<Backend> heads_;
  Workspace<Backend> ws_;
  std::mutex mutex_;
};

// A runner that owns its backend, for programs that hold runners of several models by pointer.
template <class Backend>
class OwningRunner final : public Runner {
 public:
  template <class... BackendArgs>
  explicit OwningRunner(const Model& model, BackendArgs&&... args)
      : backend_(std::forward<BackendArgs>(args)...), runner_(model, backend_) {}
  ForwardResult run(ForwardRequest request) override { return runner_.run(std::move(request)); }
  const Model& model() const override { return runner_.model(); }
  std::string backend_name() const override { return runner_.backend_name(); }
  std::string backend_note() const override { return runner_.backend_note(); }
  std::string attention_kernel() const override { return runner_.attention_kernel(); }

 private:
  Backend backend_;
  DirectRunner<Backend> runner_;
};

// The model's own sentence-vector head (config.pooling, config.normalize).
inline Head pooled_head(const Model& model) {
  return {HeadKind::pooled, model.config().pooling, model.config().normalize};
}

}  // namespace tinybert
