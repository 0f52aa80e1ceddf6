// RedisLabelTier: the label cache's shared tier in Redis (hiredis), so that replicas compute a
// label's embedding once between them. Redis must never make a request fail or wait long:
// - reads are one MGET per request with a timeout of a few ms; an error, a timeout or a value
//   that is not a well-formed embedding is a miss;
// - writes go to a bounded queue that one thread sends from (dropped when full or down);
// - after a failure the tier is down: misses at once, one warning, reconnection attempts with
//   exponential backoff, one line when it is back.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tinybert/error.hpp"
#include "tinybert/tasks/label_cache.hpp"

namespace tinybert::server {

struct RedisAddress {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string text() const { return host + ":" + std::to_string(port) + "/" + std::to_string(db); }
};

// redis://host[:port][/db]
inline RedisAddress parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  const auto bad = [&](const std::string& why) {
    return Error("--label-cache-redis '" + url + "': " + why + " (expected redis://host:port/db)");
  };
  if (url.rfind(scheme, 0) != 0) throw bad("not a redis:// URL");
  std::string rest = url.substr(scheme.size());
  RedisAddress a;
  const auto parse_number = [&](const std::string& s, const char* what, int max) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
      throw bad(std::string("bad ") + what + " '" + s + "'");
    const int v = std::stoi(s);
    if (v > max) throw bad(std::string(what) + " " + s + " is out of range");
    return v;
  };
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    a.db = parse_number(rest.substr(slash + 1), "database", 1 << 20);
    rest.resize(slash);
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    a.port = parse_number(rest.substr(colon + 1), "port", 65535);
    rest.resize(colon);
  }
  if (rest.empty()) throw bad("no host");
  a.host = rest;
  return a;
}

struct RedisTierOptions {
  RedisAddress address;
  std::chrono::milliseconds timeout{5};  // connect and each command
  int64_t ttl_seconds = 7 * 24 * 3600;   // 0: entries never expire
  size_t write_queue = 1024;
};

class RedisLabelTier final : public RemoteLabelTier {
 public:
  using Reporter = std::function<void(const std::string&)>;
  static constexpr const char* kKeyPrefix = "tinybert:label:";

  explicit RedisLabelTier(RedisTierOptions options, Reporter report = {})
      : options_(std::move(options)),
        report_(report ? std::move(report) : [](const std::string& line) {
          std::cerr << "tinybert-server: " << line << std::endl;
        }) {
    writer_ = std::thread([this] { write_loop(); });
  }
  ~RedisLabelTier() override {
    {
      std::lock_guard lock(queue_mutex_);
      stopping_ = true;
    }
    queue_wake_.notify_all();
    writer_.join();
  }
  RedisLabelTier(const RedisLabelTier&) = delete;
  RedisLabelTier& operator=(const RedisLabelTier&) = delete;

  // Value: "TBL1", the element count (uint32), the floats (this machine's byte order: the
  // replicas of one deployment share it).
  static std::string encode(const std::vector<float>& v) {
    std::string s = "TBL1";
    const auto n = static_cast<uint32_t>(v.size());
    s.append(reinterpret_cast<const char*>(&n), 4);
    s.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    return s;
  }
  static std::optional<std::vector<float>> decode(const char* data, size_t size) {
    uint32_t n = 0;
    if (size < 8 || std::memcmp(data, "TBL1", 4) != 0) return std::nullopt;
    std::memcpy(&n, data + 4, 4);
    if (n == 0 || size != 8 + size_t{n} * sizeof(float)) return std::nullopt;
    std::vector<float> v(n);
    std::memcpy(v.data(), data + 8, size_t{n} * sizeof(float));
    for (float x : v)
      if (!std::isfinite(x)) return std::nullopt;
    return v;
  }

  std::vector<std::optional<std::vector<float>>> get(
      const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::vector<float>>> out(keys.size());
    std::lock_guard lock(read_mutex_);
    if (!connected(read_)) return out;
    std::vector<std::string> args{"MGET"};
    for (const auto& k : keys) args.push_back(kKeyPrefix + k);
    redisReply* reply = command(read_, args);
    if (!reply) return out;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == keys.size()) {
      for (size_t i = 0; i < keys.size(); ++i) {
        const redisReply* e = reply->element[i];
        if (e->type == REDIS_REPLY_NIL) continue;
        if (e->type == REDIS_REPLY_STRING) out[i] = decode(e->str, e->len);
        if (!out[i]) count(&RemoteTierStatus::garbage);
      }
    } else {
      failed(read_, "unexpected reply to MGET");
    }
    freeReplyObject(reply);
    return out;
  }

  void put(const std::string& key, const std::vector<float>& value) override {
    {
      std::lock_guard lock(queue_mutex_);
      if (queue_.size() >= options_.write_queue) {
        count(&RemoteTierStatus::dropped_writes);
        return;
      }
      queue_.emplace_back(kKeyPrefix + key, encode(value));
    }
    queue_wake_.notify_one();
  }

  RemoteTierStatus status() const override {
    std::lock_guard lock(state_mutex_);
    return status_;
  }

 private:
  using SteadyClock = std::chrono::steady_clock;
  struct Connection {
    redisContext* context = nullptr;
    SteadyClock::time_point retry_at{};
    std::chrono::milliseconds backoff{0};
  };

  void write_loop() {
    while (true) {
      std::pair<std::string, std::string> item;
      {
        std::unique_lock lock(queue_mutex_);
        queue_wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) break;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      if (!connected(write_)) {
        count(&RemoteTierStatus::dropped_writes);
        continue;
      }
      std::vector<std::string> args{"SET", item.first, item.second};
      if (options_.ttl_seconds > 0) {
        args.push_back("EX");
        args.push_back(std::to_string(options_.ttl_seconds));
      }
      if (redisReply* reply = command(write_, args)) freeReplyObject(reply);
    }
    disconnect(write_);
    std::lock_guard lock(read_mutex_);
    disconnect(read_);
  }

  // Connects if the backoff allows; false (at once) while down.
  bool connected(Connection& c) {
    if (c.context) return true;
    const auto now = SteadyClock::now();
    if (now < c.retry_at) return false;
    const timeval tv = timeval_of(options_.timeout);
    redisContext* context =
        redisConnectWithTimeout(options_.address.host.c_str(), options_.address.port, tv);
    std::string error;
    if (!context) {
      error = "cannot allocate a connection";
    } else if (context->err) {
      error = context->errstr;
    } else if (redisSetTimeout(context, tv) != REDIS_OK) {
      error = "cannot set the timeout";
    }
    if (!error.empty()) {
      if (context) redisFree(context);
      down(c, "connect: " + error);
      return false;
    }
    c.context = context;
    if (options_.address.db != 0) {
      redisReply* reply = command(c, {"SELECT", std::to_string(options_.address.db)});
      if (!reply) return false;
      const bool ok = reply->type != REDIS_REPLY_ERROR;
      freeReplyObject(reply);
      if (!ok) {
        failed(c, "SELECT " + std::to_string(options_.address.db) + " refused");
        return false;
      }
    }
    c.backoff = std::chrono::milliseconds(0);
    return true;
  }

  // The reply, or null after marking the connection failed (error, timeout, lost connection).
  redisReply* command(Connection& c, const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(c.context, static_cast<int>(args.size()), argv.data(), lengths.data()));
    if (!reply) {
      failed(c, c.context->errstr[0] ? c.context->errstr : "no reply");
      return nullptr;
    }
    if (reply->type == REDIS_REPLY_ERROR && args[0] != "SELECT") {
      const std::string error(reply->str, reply->len);
      freeReplyObject(reply);
      failed(c, args[0] + ": " + error);
      return nullptr;
    }
    std::lock_guard lock(state_mutex_);
    if (!status_.up) {
      if (status_.outages > 0)
        report_("label cache Redis at " + options_.address.text() + " is back: using it again");
      status_.up = true;
    }
    return reply;
  }

  // A timed-out or failed connection has an unknown reply pending: it is dropped, not reused.
  void failed(Connection& c, const std::string& why) {
    disconnect(c);
    down(c, why);
  }

  void down(Connection& c, const std::string& why) {
    c.backoff = std::min(std::chrono::milliseconds(5000),
                         std::max(std::chrono::milliseconds(50), c.backoff * 2));
    c.retry_at = SteadyClock::now() + c.backoff;
    std::lock_guard lock(state_mutex_);
    ++status_.errors;
    if (status_.up || status_.outages == 0) {
      ++status_.outages;
      report_("label cache Redis at " + options_.address.text() + " unavailable (" + why +
              "): using the local tier, reconnecting with backoff");
    }
    status_.up = false;
  }

  static void disconnect(Connection& c) {
    if (c.context) redisFree(c.context);
    c.context = nullptr;
  }

  void count(uint64_t RemoteTierStatus::*counter) {
    std::lock_guard lock(state_mutex_);
    ++(status_.*counter);
  }

  static timeval timeval_of(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
    return tv;
  }

  RedisTierOptions options_;
  Reporter report_;
  std::mutex read_mutex_;  // read_ (request threads take turns: one MGET each)
  Connection read_, write_;
  mutable std::mutex state_mutex_;
  RemoteTierStatus status_;
  std::mutex queue_mutex_;
  std::condition_variable queue_wake_;
  std::deque<std::pair<std::string, std::string>> queue_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace tinybert::server
