// TraceBackend: a backend that computes nothing and records which buffers each primitive reads
// and writes. Running the real Encoder::forward on it yields the liveness of every workspace
// buffer, from which workspace_plan() derives which buffers may share storage. It is also the
// smallest complete backend: a template for a new one (docs/architecture.md).
#pragma once

#include <algorithm>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "tinybert/backend/backend.hpp"
#include "tinybert/encoder.hpp"

namespace tinybert {

class TraceBackend {
 public:
  struct Matrix {
    int64_t rows_ = 0, cols_ = 0;
    int64_t rows() const { return rows_; }
    int64_t cols() const { return cols_; }
  };
  struct Linear {
    int64_t out = 0;
  };
  struct Norm {};
  struct Embeddings {
    int64_t hidden = 0;
  };
  // One primitive call: the matrices it read and wrote (a read-modify-write output is both).
  struct Step {
    std::string op;
    std::vector<const Matrix*> reads, writes;
  };

  std::string name() const { return "trace"; }
  const std::vector<Step>& steps() const { return steps_; }

  Linear prepare(const LinearWeights& w) const { return {w.weight.rows()}; }
  Norm prepare(const NormWeights&, float) const { return {}; }
  Embeddings prepare(const EmbeddingWeights& w, float) const { return {w.word.cols()}; }

  void embed(const Embeddings& e, const Batch& batch, Matrix& out) {
    record("embed", {}, {&out}, &out, batch.num_tokens(), e.hidden);
  }
  void linear(const Linear& l, const Matrix& in, Matrix& out, Activation = Activation::none) {
    record("linear", {&in}, {&out}, &out, in.rows(), l.out);
  }
  void add_layernorm(const Norm&, const Matrix& residual, Matrix& x) {
    record("add_layernorm", {&residual, &x}, {&x}, &x, x.rows(), x.cols());
  }
  void layernorm(const Norm&, Matrix& x) {
    record("layernorm", {&x}, {&x}, &x, x.rows(), x.cols());
  }
  void attention(const Matrix& qkv, const Batch&, int64_t, Matrix& context,
                 std::vector<float>* = nullptr) {
    record("attention", {&qkv}, {&context}, &context, qkv.rows(), qkv.cols() / 3);
  }
  void pool(const Matrix& hidden, const Batch& batch, Pooling, Matrix& out) {
    record("pool", {&hidden}, {&out}, &out, batch.num_sequences(), hidden.cols());
  }
  void gather_rows(const Matrix& in, std::span<const int64_t> rows, Matrix& out) {
    record("gather_rows", {&in}, {&out}, &out, static_cast<int64_t>(rows.size()), in.cols());
  }
  void from_host(std::span<const float>, int64_t rows, int64_t cols, Matrix& out) {
    record("from_host", {}, {&out}, &out, rows, cols);
  }
  std::vector<float> to_host(const Matrix& m) {
    record("to_host", {&m}, {}, nullptr, 0, 0);
    return {};
  }

 private:
  void record(const char* op, std::vector<const Matrix*> reads, std::vector<const Matrix*> writes,
              Matrix* out, int64_t rows, int64_t cols) {
    if (out) *out = {rows, cols};
    steps_.push_back({op, std::move(reads), std::move(writes)});
  }

  std::vector<Step> steps_;
};
static_assert(Backend<TraceBackend>);

// Which workspace buffers one forward pass of a model uses, their widths, and a storage group for
// each: buffers of one group are never live at the same time, so a backend short of memory (the
// GPU) may give a group one allocation of its widest member's size. Derived by tracing the
// encoder's own forward pass, so a change to its order of operations changes the plan with it.
struct WorkspacePlan {
  struct Entry {
    WorkspaceBuffer buffer;
    int64_t cols = 0;
    int group = 0;
  };
  std::vector<Entry> entries;  // in kWorkspaceBuffers order
  int groups = 0;

  const Entry& at(WorkspaceBuffer b) const {
    for (const Entry& e : entries)
      if (e.buffer == b) return e;
    throw Error(std::string("workspace plan: no buffer ") + workspace_buffer_name(b));
  }
  // The widest member of each group: the one that owns the storage.
  WorkspaceBuffer owner(int group) const {
    const Entry* widest = nullptr;
    for (const Entry& e : entries)
      if (e.group == group && (!widest || e.cols > widest->cols)) widest = &e;
    return widest->buffer;
  }
};

inline WorkspacePlan workspace_plan(const Model& model) {
  TraceBackend trace;
  const Encoder<TraceBackend> encoder(model, trace);
  Workspace<TraceBackend> ws;
  Batch batch;
  batch.add(std::vector<int32_t>{0});
  encoder.forward(batch, ws);

  // A buffer is live from a write to the last read before its next write (inclusive: a step
  // reads its inputs while it writes its output). The encoder's output stays live at the end.
  const int64_t end = static_cast<int64_t>(trace.steps().size());
  struct Interval {
    int64_t first, last;
  };
  std::map<WorkspaceBuffer, std::vector<Interval>> live;
  for (WorkspaceBuffer b : kWorkspaceBuffers) {
    const TraceBackend::Matrix* m = &ws.buffer(b);
    std::vector<Interval>& intervals = live[b];
    for (int64_t step = 0; step < end; ++step) {
      const TraceBackend::Step& s = trace.steps()[static_cast<size_t>(step)];
      const bool reads = std::count(s.reads.begin(), s.reads.end(), m) > 0;
      const bool writes = std::count(s.writes.begin(), s.writes.end(), m) > 0;
      if (writes && !reads)
        intervals.push_back({step, step});  // a new value begins
      else if ((reads || writes) && !intervals.empty())
        intervals.back().last = step;
    }
    if (b == WorkspaceBuffer::hidden && !intervals.empty()) intervals.back().last = end;
  }
  const auto overlap = [&](WorkspaceBuffer a, WorkspaceBuffer b) {
    for (const Interval& x : live[a])
      for (const Interval& y : live[b])
        if (x.first <= y.last && y.first <= x.last) return true;
    return false;
  };

  // Greedy, widest first: each buffer joins the first group none of whose members it overlaps.
  WorkspacePlan plan;
  for (WorkspaceBuffer b : kWorkspaceBuffers) plan.entries.push_back({b, ws.buffer(b).cols(), -1});
  std::vector<WorkspacePlan::Entry*> by_width;
  for (auto& e : plan.entries) by_width.push_back(&e);
  std::stable_sort(by_width.begin(), by_width.end(),
                   [](auto* a, auto* b) { return a->cols > b->cols; });
  for (WorkspacePlan::Entry* e : by_width) {
    for (int g = 0; g < plan.groups && e->group < 0; ++g) {
      bool free = true;
      for (const auto& other : plan.entries)
        if (other.group == g && overlap(e->buffer, other.buffer)) free = false;
      if (free) e->group = g;
    }
    if (e->group < 0) e->group = plan.groups++;
  }
  return plan;
}

}  // namespace tinybert
