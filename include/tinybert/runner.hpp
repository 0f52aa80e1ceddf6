// Runner: what the tasks ask of a model — run one packed batch through the encoder and one
// head, get host vectors back. The tasks (classify, fill-mask, extract) are written against this
// interface only, so the same task code runs directly (DirectRunner: one forward per call) or
// behind the server's micro-batching scheduler (serving/batching_runner.hpp), which merges the
// requests of many connections into one packed batch.
#pragma once

#include <mutex>
#include <utility>
#include <vector>

#include "tinybert/heads.hpp"

namespace tinybert {

enum class HeadKind {
  pooled,             // sentence vectors [sequences, hidden]
  classifier_logits,  // sequence classification logits [sequences, num_labels]
  mlm_logits,         // masked-LM logits [rows, vocab] for the requested token rows
  uie_spans,          // UIE start/end probabilities, [tokens] each
};

inline const char* head_kind_name(HeadKind kind) {
  switch (kind) {
    case HeadKind::pooled: return "pooled";
    case HeadKind::classifier_logits: return "classifier_logits";
    case HeadKind::mlm_logits: return "mlm_logits";
    case HeadKind::uie_spans: return "uie_spans";
  }
  return "?";
}

// Which head, with its parameters. Two requests with equal heads can share one forward pass.
struct Head {
  HeadKind kind = HeadKind::pooled;
  Pooling pooling = Pooling::cls;  // pooled only
  bool normalize = false;          // pooled only
  bool operator==(const Head&) const = default;
};

struct ForwardRequest {
  Batch batch;                     // packed sequences
  Head head;
  std::vector<int64_t> rows;       // mlm_logits: packed token rows (of this batch) to score
  bool record_attention = false;   // also return the last layer's attention probabilities
};

struct ForwardResult {
  std::vector<float> values;       // pooled / classifier_logits / mlm_logits, row-major
  std::vector<float> start, end;   // uie_spans: per token of the batch
  // When recorded: for sequence s, head h, query i, key j at
  // attention[offset(s) + (h * len + i) * len + j], offset(s) = sum of heads * len^2 before s.
  std::vector<float> attention;
};

class Runner {
 public:
  virtual ~Runner() = default;
  // Safe to call from many threads at once.
  virtual ForwardResult run(ForwardRequest request) = 0;
  virtual const Model& model() const = 0;
};

// Encoder + heads of a model on one backend, for one forward pass per run() call. Calls from
// several threads are serialised (one workspace).
template <class Backend>
class DirectRunner final : public Runner {
 public:
  DirectRunner(const Model& model, Backend& backend) : model_(model), encoder_(model, backend), heads_(model, backend) {}

  const Model& model() const override { return model_; }

  ForwardResult run(ForwardRequest request) override {
    std::lock_guard lock(mutex_);
    return run_unlocked(request);
  }

  // For a caller that already serialises (the batching scheduler's worker thread).
  ForwardResult run_unlocked(const ForwardRequest& request) {
    ForwardResult result;
    ws_.record_last_attention = request.record_attention;
    encoder_.forward(request.batch, ws_);
    ws_.record_last_attention = false;
    if (request.record_attention) result.attention = std::move(ws_.last_attention);
    ws_.last_attention.clear();
    switch (request.head.kind) {
      case HeadKind::pooled:
        result.values = heads_.pool(ws_.hidden, request.batch, request.head.pooling, request.head.normalize);
        break;
      case HeadKind::classifier_logits:
        result.values = heads_.classifier_logits(ws_.hidden, request.batch);
        break;
      case HeadKind::mlm_logits:
        result.values = heads_.mlm_logits(ws_.hidden, request.rows);
        break;
      case HeadKind::uie_spans: {
        auto p = heads_.uie_probabilities(ws_.hidden);
        result.start = std::move(p.start);
        result.end = std::move(p.end);
        break;
      }
    }
    return result;
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

 private:
  Backend backend_;
  DirectRunner<Backend> runner_;
};

// The model's own sentence-vector head (config.pooling, config.normalize).
inline Head pooled_head(const Model& model) {
  return {HeadKind::pooled, model.config().pooling, model.config().normalize};
}

}  // namespace tinybert
