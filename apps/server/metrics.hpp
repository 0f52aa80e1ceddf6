// Prometheus metrics of the server: requests by endpoint and status, latency and batch-size
// histograms, queue depth and label-cache counters, rendered in the text exposition format.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tinybert/serving/batching_runner.hpp"
#include "tinybert/serving/service.hpp"
#include "tinybert/tasks/label_cache.hpp"

namespace tinybert::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

  void observe(double value) {
    for (size_t i = 0; i < bounds_.size(); ++i)
      if (value <= bounds_[i]) ++counts_[i];  // cumulative, as Prometheus wants
    sum_ += value;
    ++count_;
  }

  void render(std::ostream& out, const std::string& name, const std::string& labels) const {
    const std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < bounds_.size(); ++i)
      out << name << "_bucket{" << labels << sep << "le=\"" << bounds_[i] << "\"} " << counts_[i]
          << "\n";
    out << name << "_bucket{" << labels << sep << "le=\"+Inf\"} " << count_ << "\n";
    out << name << "_sum" << (labels.empty() ? "" : "{" + labels + "}") << " " << sum_ << "\n";
    out << name << "_count" << (labels.empty() ? "" : "{" + labels + "}") << " " << count_ << "\n";
  }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  void record_request(const std::string& endpoint, int status, double seconds) {
    std::lock_guard lock(mutex_);
    ++requests_[{endpoint, status}];
    latency_.try_emplace(endpoint, latency_bounds()).first->second.observe(seconds);
  }

  void record_batch(const std::string& model, const BatchRecord& batch) {
    std::lock_guard lock(mutex_);
    auto& m = batches_.try_emplace(model).first->second;
    m.passes.observe(static_cast<double>(batch.passes));
    m.sequences.observe(static_cast<double>(batch.sequences));
    m.tokens.observe(static_cast<double>(batch.tokens));
    m.queue_wait.observe(batch.queue_wait_seconds);
    m.run.observe(batch.run_seconds);
  }

  // queue_depths: model -> waiting passes now.
  std::string render(const std::vector<std::pair<std::string, size_t>>& queue_depths,
                     const LabelCacheStats& cache,
                     const std::vector<Service::ModelHealth>& health = {}) const {
    std::ostringstream out;
    std::lock_guard lock(mutex_);
    out << "# HELP tinybert_requests_total Requests answered, by endpoint and HTTP status.\n"
        << "# TYPE tinybert_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out << "tinybert_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second
          << "\"} " << n << "\n";
    out << "# HELP tinybert_request_duration_seconds Time from reading a request to answering it.\n"
        << "# TYPE tinybert_request_duration_seconds histogram\n";
    for (const auto& [endpoint, h] : latency_)
      h.render(out, "tinybert_request_duration_seconds", "endpoint=\"" + endpoint + "\"");
    const struct {
      const char* name;
      const char* help;
      Histogram BatchHistograms::*histogram;
    } batch_metrics[] = {
        {"tinybert_batch_passes", "Forward passes (of requests) merged into one batch.",
         &BatchHistograms::passes},
        {"tinybert_batch_sequences", "Sequences in one merged forward pass.",
         &BatchHistograms::sequences},
        {"tinybert_batch_tokens", "Tokens in one merged forward pass.", &BatchHistograms::tokens},
        {"tinybert_batch_queue_wait_seconds", "How long the oldest pass of a batch waited.",
         &BatchHistograms::queue_wait},
        {"tinybert_batch_run_seconds", "How long the merged forward pass ran.",
         &BatchHistograms::run}};
    for (const auto& metric : batch_metrics) {
      out << "# HELP " << metric.name << " " << metric.help << "\n# TYPE " << metric.name
          << " histogram\n";
      for (const auto& [model, m] : batches_)
        (m.*metric.histogram).render(out, metric.name, "model=\"" + model + "\"");
    }
    out << "# HELP tinybert_queue_depth Forward passes waiting, by model.\n# TYPE "
           "tinybert_queue_depth gauge\n";
    for (const auto& [model, depth] : queue_depths)
      out << "tinybert_queue_depth{model=\"" << model << "\"} " << depth << "\n";
    const uint64_t lookups = cache.hits + cache.misses;
    out << "# HELP tinybert_label_cache_hits_total Label embeddings found in the cache.\n"
        << "# TYPE tinybert_label_cache_hits_total counter\ntinybert_label_cache_hits_total "
        << cache.hits << "\n"
        << "# HELP tinybert_label_cache_misses_total Label embeddings computed.\n"
        << "# TYPE tinybert_label_cache_misses_total counter\ntinybert_label_cache_misses_total "
        << cache.misses << "\n"
        << "# HELP tinybert_label_cache_hit_ratio Hits over lookups since start.\n"
        << "# TYPE tinybert_label_cache_hit_ratio gauge\ntinybert_label_cache_hit_ratio "
        << (lookups ? double(cache.hits) / double(lookups) : 0.0) << "\n"
        << "# HELP tinybert_label_cache_entries Label embeddings held.\n"
        << "# TYPE tinybert_label_cache_entries gauge\ntinybert_label_cache_entries " << cache.size
        << "\n";
    render_remote_tier(out, cache);
    render_health(out, health);
    return out.str();
  }

 private:
  // The label cache's shared tier (Redis), when there is one.
  static void render_remote_tier(std::ostream& out, const LabelCacheStats& cache) {
    if (!cache.remote) return;
    const RemoteTierStatus& r = *cache.remote;
    const struct {
      const char* name;
      const char* type;
      const char* help;
      double value;
    } series[] = {
        {"tinybert_label_cache_remote_hits_total", "counter",
         "Local misses found in the shared tier (Redis).", double(cache.remote_hits)},
        {"tinybert_label_cache_remote_misses_total", "counter",
         "Local misses not found (or not usable) in the shared tier.", double(cache.remote_misses)},
        {"tinybert_label_cache_remote_up", "gauge", "1 while the shared tier answers, else 0.",
         r.up ? 1.0 : 0.0},
        {"tinybert_label_cache_remote_errors_total", "counter",
         "Shared-tier operations that failed or timed out.", double(r.errors)},
        {"tinybert_label_cache_remote_garbage_total", "counter",
         "Shared-tier values that were not a well-formed embedding.", double(r.garbage)},
        {"tinybert_label_cache_remote_dropped_writes_total", "counter",
         "Embeddings not written to the shared tier (queue full or tier down).",
         double(r.dropped_writes)},
        {"tinybert_label_cache_remote_outages_total", "counter", "Times the shared tier went down.",
         double(r.outages)}};
    for (const auto& s : series) {
      family(out, s.name, s.type, s.help);
      out << s.name << " " << s.value << "\n";
    }
  }

  // A metric family's HELP and TYPE lines.
  static void family(std::ostream& out, const char* name, const char* type, const char* help) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }

  // Circuit breakers (models with a fallback backend) and accelerator memory (models on one).
  static void render_health(std::ostream& out, const std::vector<Service::ModelHealth>& health) {
    family(out, "tinybert_breaker_state", "gauge",
           "0 closed (on its backend), 1 open (on the fallback), 2 half-open (probing).");
    for (const auto& h : health)
      if (h.breaker)
        out << "tinybert_breaker_state{model=\"" << h.name << "\"} "
            << static_cast<int>(h.breaker->state) << "\n";
    family(out, "tinybert_breaker_trips_total", "counter",
           "Times a model's passes moved to its fallback backend.");
    for (const auto& h : health)
      if (h.breaker)
        out << "tinybert_breaker_trips_total{model=\"" << h.name << "\"} " << h.breaker->trips
            << "\n";
    family(out, "tinybert_device_memory_bytes", "gauge",
           "Accelerator memory: this model's (ours) and the device's (used, total).");
    for (const auto& h : health)
      if (h.device_memory)
        for (const auto& [kind, bytes] : {std::pair{"ours", h.device_memory->ours},
                                          {"used", h.device_memory->device_used},
                                          {"total", h.device_memory->device_total}})
          out << "tinybert_device_memory_bytes{model=\"" << h.name << "\",kind=\"" << kind << "\"} "
              << bytes << "\n";
  }

  static std::vector<double> latency_bounds() {
    return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  }
  struct BatchHistograms {
    Histogram passes{{1, 2, 4, 8, 16, 32, 64, 128}};
    Histogram sequences{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}};
    Histogram tokens{{16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}};
    Histogram queue_wait{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}};
    Histogram run{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  };

  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, BatchHistograms> batches_;
};

}  // namespace tinybert::server
