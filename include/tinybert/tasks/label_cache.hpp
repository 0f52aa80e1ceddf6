// LabelCache: a thread-safe LRU cache of label embeddings (and the content-free inputs'
// embeddings that calibration subtracts) for zero-shot classification, optionally in front of a
// second, shared tier (RemoteLabelTier: Redis in tinybert-server) that replicas fill for each
// other.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tinybert/model.hpp"

namespace tinybert {

// The remote tier's own health, for metrics.
struct RemoteTierStatus {
  bool up = false;
  uint64_t errors = 0;          // failed or timed-out operations
  uint64_t garbage = 0;         // entries that were not a well-formed embedding
  uint64_t dropped_writes = 0;  // puts not sent because the write queue was full or it was down
  uint64_t outages = 0;
};

struct LabelCacheStats {
  uint64_t hits = 0, misses = 0, evictions = 0;  // the local tier
  size_t size = 0, capacity = 0;
  uint64_t remote_hits = 0, remote_misses = 0;  // the remote tier, asked on local misses
  std::optional<RemoteTierStatus> remote;       // when there is one
};

// What makes cached embeddings interchangeable: the model's content (its fingerprint, not its
// path: replicas with their own copies share entries) and the backend that computed them (an
// int8 vector is not an f32 one).
inline std::string model_identity(const Model& model, const std::string& backend_name) {
  return model.fingerprint() + '|' + backend_name;
}

// A second tier behind the local LRU, shared by processes. Its failures are its own business:
// get() answers nullopt for anything it cannot deliver quickly and intact, put() never blocks.
class RemoteLabelTier {
 public:
  virtual ~RemoteLabelTier() = default;
  // One round trip for all keys; nullopt entries are misses.
  virtual std::vector<std::optional<std::vector<float>>> get(
      const std::vector<std::string>& keys) = 0;
  virtual void put(const std::string& key, const std::vector<float>& value) = 0;
  virtual RemoteTierStatus status() const = 0;
};

// Least-recently-used cache: get() moves a hit to the front, put() evicts from the back. One
// mutex guards everything, so one cache can serve many classifiers on many threads.
class LabelCache {
 public:
  explicit LabelCache(size_t capacity = 1024) : capacity_(capacity) {}

  // Length-prefixed parts, so ("ab", "c") and ("a", "bc") never share a key.
  static std::string key(std::string_view model_id, std::string_view label_template,
                         std::string_view label) {
    std::string k;
    for (std::string_view part : {model_id, label_template, label}) {
      k += std::to_string(part.size());
      k += ':';
      k += part;
    }
    return k;
  }

  // A content-free input's embedding (contextual calibration). It depends on the model and
  // backend only, not on labels or templates; the leading letter keeps it apart from every
  // label key, which starts with a digit (a length).
  static std::string content_free_key(std::string_view model_id, std::string_view text) {
    std::string k = "content-free|";
    for (std::string_view part : {model_id, text}) {
      k += std::to_string(part.size());
      k += ':';
      k += part;
    }
    return k;
  }

  // The cached vector (a copy: the entry may be evicted by another thread right after), counting
  // a hit or a miss.
  std::optional<std::vector<float>> get(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++misses_;
      return std::nullopt;
    }
    ++hits_;
    entries_.splice(entries_.begin(), entries_, it->second);
    return it->second->second;
  }

  // get() for many keys: the local tier first, then one remote round trip for its misses (found
  // entries are kept locally too).
  std::vector<std::optional<std::vector<float>>> get_many(const std::vector<std::string>& keys) {
    std::vector<std::optional<std::vector<float>>> out(keys.size());
    std::vector<std::string> missing;
    std::vector<size_t> where;
    for (size_t i = 0; i < keys.size(); ++i) {
      out[i] = get(keys[i]);
      if (!out[i]) {
        missing.push_back(keys[i]);
        where.push_back(i);
      }
    }
    const std::shared_ptr<RemoteLabelTier> remote = remote_tier();
    if (!remote || missing.empty()) return out;
    std::vector<std::optional<std::vector<float>>> found = remote->get(missing);
    found.resize(missing.size());
    uint64_t hits = 0;
    for (size_t m = 0; m < missing.size(); ++m) {
      if (!found[m]) continue;
      ++hits;
      put_local(missing[m], *found[m]);
      out[where[m]] = std::move(found[m]);
    }
    std::lock_guard lock(mutex_);
    remote_hits_ += hits;
    remote_misses_ += missing.size() - hits;
    return out;
  }

  // Inserts or refreshes an entry, locally as the most recently used and in the remote tier.
  void put(const std::string& key, std::vector<float> value) {
    if (const auto remote = remote_tier()) remote->put(key, value);
    put_local(key, std::move(value));
  }

  void set_remote_tier(std::shared_ptr<RemoteLabelTier> remote) {
    std::lock_guard lock(mutex_);
    remote_ = std::move(remote);
  }
  std::shared_ptr<RemoteLabelTier> remote_tier() const {
    std::lock_guard lock(mutex_);
    return remote_;
  }

  // Local only. A capacity of 0 stores nothing.
  void put_local(const std::string& key, std::vector<float> value) {
    std::lock_guard lock(mutex_);
    if (capacity_ == 0) return;
    if (auto it = index_.find(key); it != index_.end()) {
      it->second->second = std::move(value);
      entries_.splice(entries_.begin(), entries_, it->second);
      return;
    }
    entries_.emplace_front(key, std::move(value));
    index_[key] = entries_.begin();
    evict_to(capacity_);
  }

  bool contains(const std::string& key) const {
    std::lock_guard lock(mutex_);
    return index_.count(key) != 0;
  }

  void set_capacity(size_t capacity) {
    std::lock_guard lock(mutex_);
    capacity_ = capacity;
    evict_to(capacity_);
  }

  void clear() {
    std::lock_guard lock(mutex_);
    entries_.clear();
    index_.clear();
  }

  LabelCacheStats stats() const {
    std::lock_guard lock(mutex_);
    LabelCacheStats s{hits_,     misses_,      evictions_,     entries_.size(),
                      capacity_, remote_hits_, remote_misses_, std::nullopt};
    if (remote_) s.remote = remote_->status();
    return s;
  }

 private:
  void evict_to(size_t limit) {
    while (entries_.size() > limit) {
      index_.erase(entries_.back().first);
      entries_.pop_back();
      ++evictions_;
    }
  }

  using Entry = std::pair<std::string, std::vector<float>>;
  mutable std::mutex mutex_;
  size_t capacity_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t hits_ = 0, misses_ = 0, evictions_ = 0, remote_hits_ = 0, remote_misses_ = 0;
  std::shared_ptr<RemoteLabelTier> remote_;
};

}  // namespace tinybert
