// LabelCache: a thread-safe LRU cache of label embeddings (and the content-free inputs'
// embeddings that calibration subtracts) for zero-shot classification.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tinybert/model.hpp"

namespace tinybert {

struct LabelCacheStats {
  uint64_t hits = 0, misses = 0, evictions = 0;
  size_t size = 0, capacity = 0;
};

// What makes cached embeddings interchangeable: the file (path and size), the config's name and
// the backend that computed them (an int8 vector is not an f32 one). A file converted again in
// place with another size is another model.
inline std::string model_identity(const Model& model, const std::string& backend_name) {
  std::string id = model.file().path();
  id += '|';
  id += std::to_string(model.file().file_bytes());
  id += '|';
  id += model.config().name;
  id += '|';
  id += backend_name;
  return id;
}

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

  // Inserts or refreshes an entry as the most recently used. A capacity of 0 stores nothing.
  void put(const std::string& key, std::vector<float> value) {
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
    return {hits_, misses_, evictions_, entries_.size(), capacity_};
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
  uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace tinybert
