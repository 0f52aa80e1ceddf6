// BatchingRunner: a Runner that merges the forward passes of many concurrent callers into
// packed batches (micro-batching). Callers (the server's connection threads) block in run();
// one scheduler thread takes the oldest waiting pass, adds waiting passes with the same head
// while the merged batch stays within the token budget and the oldest has waited at most
// max_wait, runs ONE forward pass, and hands every caller its slice of the result.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tinybert/runner.hpp"
#include "tinybert/serving/compute_thread.hpp"

namespace tinybert {

using SteadyClock = std::chrono::steady_clock;

// Why a pass was not run; the server maps these to 503 and 504.
class Overloaded : public Error {
 public:
  using Error::Error;
};
class DeadlineExceeded : public Error {
 public:
  using Error::Error;
};

struct BatchingOptions {
  bool enabled = true;              // false: every pass runs alone (for comparison)
  int64_t max_batch_tokens = 8192;  // a single larger pass still runs, alone
  std::chrono::microseconds max_wait{2000};
  size_t queue_capacity = 1024;  // waiting passes; one more is Overloaded
  // Passes of all models of a process never run at the same time: every BatchingRunner hands
  // them to the one ComputeThread.
};

// What one merged forward pass was, for metrics.
struct BatchRecord {
  int64_t passes = 0, sequences = 0, tokens = 0;
  double queue_wait_seconds = 0;  // of the oldest pass
  double run_seconds = 0;
};

// The deadline of the work the current thread is doing. The tasks know nothing of deadlines;
// the server sets one per request on the thread that handles it, and run() checks it.
class DeadlineScope {
 public:
  explicit DeadlineScope(SteadyClock::time_point deadline) : previous_(current()) {
    current() = deadline;
  }
  ~DeadlineScope() { current() = previous_; }
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;
  static SteadyClock::time_point& current() {
    thread_local SteadyClock::time_point deadline = SteadyClock::time_point::max();
    return deadline;
  }

 private:
  SteadyClock::time_point previous_;
};

// Appends every sequence of `from` to `into`.
inline void append_batch(Batch& into, const Batch& from) {
  const int64_t offset = into.num_tokens();
  into.input_ids.insert(into.input_ids.end(), from.input_ids.begin(), from.input_ids.end());
  into.token_type_ids.insert(into.token_type_ids.end(), from.token_type_ids.begin(),
                             from.token_type_ids.end());
  into.task_type_ids.insert(into.task_type_ids.end(), from.task_type_ids.begin(),
                            from.task_type_ids.end());
  for (int64_t s = 1; s <= from.num_sequences(); ++s)
    into.cu_seqlens.push_back(
        static_cast<int32_t>(offset + from.cu_seqlens[static_cast<size_t>(s)]));
  into.position_offsets.insert(into.position_offsets.end(), from.position_offsets.begin(),
                               from.position_offsets.end());
}

// Merges requests with equal heads into one request, and splits its result back: the inverse
// bookkeeping of where each request's sequences, tokens, rows and attention blocks landed.
class MergedPass {
 public:
  explicit MergedPass(const std::vector<const ForwardRequest*>& parts) {
    merged_.head = parts.front()->head;
    for (const ForwardRequest* part : parts) {
      Slice slice;
      slice.first_sequence = merged_.batch.num_sequences();
      slice.sequences = part->batch.num_sequences();
      slice.first_token = merged_.batch.num_tokens();
      slice.tokens = part->batch.num_tokens();
      slice.first_row = static_cast<int64_t>(merged_.rows.size());
      slice.rows = static_cast<int64_t>(part->rows.size());
      slice.first_attention = attention_elements_;
      for (int64_t s = 0; s < part->batch.num_sequences(); ++s)
        attention_elements_ += part->batch.seq_len(s) * part->batch.seq_len(s);
      slice.attention = attention_elements_ - slice.first_attention;
      slice.wants_attention = part->record_attention;
      for (int64_t row : part->rows) merged_.rows.push_back(slice.first_token + row);
      merged_.record_attention = merged_.record_attention || part->record_attention;
      append_batch(merged_.batch, part->batch);
      slices_.push_back(slice);
    }
  }

  const ForwardRequest& request() const { return merged_; }

  // Part i's share of the merged result.
  ForwardResult split(const ForwardResult& all, size_t i) const {
    const Slice& s = slices_[i];
    ForwardResult out;
    const auto copy = [](const std::vector<float>& from, int64_t first, int64_t count,
                         int64_t width) {
      return std::vector<float>(from.begin() + first * width,
                                from.begin() + (first + count) * width);
    };
    switch (merged_.head.kind) {
      case HeadKind::pooled:
      case HeadKind::classifier_logits:
        out.values = copy(all.values, s.first_sequence, s.sequences,
                          width(all.values, merged_.batch.num_sequences()));
        break;
      case HeadKind::mlm_logits:
        out.values = copy(all.values, s.first_row, s.rows,
                          width(all.values, static_cast<int64_t>(merged_.rows.size())));
        break;
      case HeadKind::uie_spans:
        out.start = copy(all.start, s.first_token, s.tokens, 1);
        out.end = copy(all.end, s.first_token, s.tokens, 1);
        break;
      case HeadKind::siamese_text_states:
      case HeadKind::siamese_logits:
        throw Error("SiameseUIE passes are not merged");  // see mergeable()
    }
    if (s.wants_attention && attention_elements_ > 0) {
      const int64_t heads = static_cast<int64_t>(all.attention.size()) / attention_elements_;
      out.attention = copy(all.attention, s.first_attention, s.attention, heads);
    }
    return out;
  }

 private:
  struct Slice {
    int64_t first_sequence = 0, sequences = 0, first_token = 0, tokens = 0, first_row = 0, rows = 0;
    int64_t first_attention = 0, attention = 0;  // in units of heads (len^2 per sequence)
    bool wants_attention = false;
  };
  static int64_t width(const std::vector<float>& values, int64_t rows) {
    return rows > 0 ? static_cast<int64_t>(values.size()) / rows : 0;
  }

  ForwardRequest merged_;
  std::vector<Slice> slices_;
  int64_t attention_elements_ = 0;
};

// Whether passes with this head may share a forward pass with others. SiameseUIE's passes carry
// text states beside their batch (which MergedPass does not split); they run alone.
inline bool mergeable(HeadKind kind) {
  return kind != HeadKind::siamese_text_states && kind != HeadKind::siamese_logits;
}

class BatchingRunner final : public Runner {
 public:
  // `inner` runs the merged passes; it is used from the scheduler thread only.
  BatchingRunner(std::unique_ptr<Runner> inner, BatchingOptions options,
                 std::function<void(const BatchRecord&)> on_batch = {})
      : inner_(std::move(inner)), options_(std::move(options)), on_batch_(std::move(on_batch)) {
    if (options_.max_batch_tokens < 1) throw Error("max batch tokens must be at least 1");
    scheduler_ = std::thread([this] { schedule(); });
  }
  ~BatchingRunner() override { stop(); }
  BatchingRunner(const BatchingRunner&) = delete;
  BatchingRunner& operator=(const BatchingRunner&) = delete;

  const Model& model() const override { return inner_->model(); }
  std::string backend_name() const override { return inner_->backend_name(); }
  std::string backend_note() const override { return inner_->backend_note(); }
  std::string attention_kernel() const override { return inner_->attention_kernel(); }
  std::optional<DeviceMemory> device_memory() const override { return inner_->device_memory(); }

  // Blocks until the pass has run. Throws Overloaded (queue full or stopping), DeadlineExceeded,
  // or the Error of an invalid request (checked here, before it can share a batch with others).
  ForwardResult run(ForwardRequest request) override {
    validate_request(request, model().config());
    auto pending = std::make_shared<Pending>();
    pending->request = std::move(request);
    pending->arrival = SteadyClock::now();
    pending->deadline = DeadlineScope::current();
    std::future<ForwardResult> result = pending->promise.get_future();
    {
      std::lock_guard lock(mutex_);
      if (stopping_) throw Overloaded("the server is shutting down");
      if (queue_.size() >= options_.queue_capacity)
        throw Overloaded("the queue of model '" + model().config().name + "' is full (" +
                         std::to_string(options_.queue_capacity) + " passes waiting)");
      queue_.push_back(std::move(pending));
    }
    wake_.notify_one();
    return result.get();
  }

  size_t queue_depth() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
  }

  // Refuses new passes, finishes the waiting ones, joins the scheduler. Idempotent.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (scheduler_.joinable()) scheduler_.join();
  }

 private:
  struct Pending {
    ForwardRequest request;
    std::promise<ForwardResult> promise;
    SteadyClock::time_point arrival, deadline;
  };
  using PendingPtr = std::shared_ptr<Pending>;

  // Takes the oldest pass and every compatible one that fits, waiting up to max_wait (counted
  // from the oldest's arrival) for more while the budget has room. Empty when stopping and idle.
  std::vector<PendingPtr> next_group() {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return {};
    std::vector<PendingPtr> group{queue_.front()};
    queue_.pop_front();
    if (!options_.enabled || !mergeable(group.front()->request.head.kind)) return group;
    int64_t tokens = group.front()->request.batch.num_tokens();
    const auto close_at = group.front()->arrival + options_.max_wait;
    while (true) {
      for (auto it = queue_.begin(); it != queue_.end() && tokens < options_.max_batch_tokens;) {
        const int64_t more = (*it)->request.batch.num_tokens();
        if ((*it)->request.head == group.front()->request.head &&
            tokens + more <= options_.max_batch_tokens) {
          tokens += more;
          group.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      if (tokens >= options_.max_batch_tokens || stopping_ || SteadyClock::now() >= close_at)
        return group;
      wake_.wait_until(lock, close_at);
    }
  }

  void schedule() {
    while (true) {
      std::vector<PendingPtr> group = next_group();
      if (group.empty()) return;
      const auto started = SteadyClock::now();
      // A pass whose caller has given up is not run.
      std::erase_if(group, [&](const PendingPtr& p) {
        if (p->deadline >= started) return false;
        p->promise.set_exception(std::make_exception_ptr(
            DeadlineExceeded("the request's deadline passed while it waited")));
        return true;
      });
      if (!group.empty()) run_group(group, started);
    }
  }

  void run_group(const std::vector<PendingPtr>& group, SteadyClock::time_point started) {
    BatchRecord record;
    record.passes = static_cast<int64_t>(group.size());
    for (const PendingPtr& p : group) {
      record.sequences += p->request.batch.num_sequences();
      record.tokens += p->request.batch.num_tokens();
    }
    record.queue_wait_seconds =
        std::chrono::duration<double>(started - group.front()->arrival).count();
    try {
      if (group.size() == 1) {
        group.front()->promise.set_value(run_inner(group.front()->request));
      } else {
        std::vector<const ForwardRequest*> parts;
        for (const PendingPtr& p : group) parts.push_back(&p->request);
        const MergedPass merged(parts);
        const ForwardResult all = run_inner(merged.request());
        for (size_t i = 0; i < group.size(); ++i) group[i]->promise.set_value(merged.split(all, i));
      }
    } catch (...) {
      for (const PendingPtr& p : group) {
        try {
          p->promise.set_exception(std::current_exception());
        } catch (const std::future_error&) {  // this one was already answered
        }
      }
      return;
    }
    record.run_seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
    if (on_batch_) on_batch_(record);
  }

  // On the process's one compute thread (compute_thread.hpp): one OpenMP pool for all passes,
  // and the passes of several models one after another, never competing for the cores.
  ForwardResult run_inner(const ForwardRequest& request) {
    return ComputeThread::instance().run([&] { return inner_->run(request); });
  }

  std::unique_ptr<Runner> inner_;
  BatchingOptions options_;
  std::function<void(const BatchRecord&)> on_batch_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<PendingPtr> queue_;
  bool stopping_ = false;
  std::thread scheduler_;
};

}  // namespace tinybert
