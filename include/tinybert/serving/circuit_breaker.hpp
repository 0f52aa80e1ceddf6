// CircuitBreakerRunner: a Runner that moves a model's passes off a failing primary backend (a GPU
// that keeps erroring or timing out) onto a fallback runner (the CPU), and back once a probe pass
// succeeds. No request is lost on the way: a pass that fails on the primary runs again on the
// fallback, and only its caller's own mistakes (an invalid request) are errors.
//
//   closed --(N failed or late primary passes in a row)--> open --(cool-down)--> half_open
//   half_open: the next pass probes the primary: success -> closed, failure -> open again
#pragma once

#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "tinybert/runner.hpp"

namespace tinybert {

struct BreakerOptions {
  int failures_to_trip = 3;  // primary passes in a row that failed or passed the deadline
  std::chrono::milliseconds pass_deadline{10000};  // a slower primary pass counts as failed
  std::chrono::milliseconds cool_down{30000};      // time on the fallback before a probe
};

enum class BreakerState { closed, open, half_open };

inline const char* breaker_state_name(BreakerState s) {
  switch (s) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
  }
  return "?";
}

struct BreakerStatus {
  BreakerState state = BreakerState::closed;
  uint64_t trips = 0;  // closed -> open transitions since start
  int consecutive_failures = 0;
  std::string reason;  // the failure that opened the breaker (empty while closed)
  std::string primary, fallback;
};

class CircuitBreakerRunner final : public Runner {
 public:
  using Clock = std::chrono::steady_clock;
  using Factory = std::function<std::unique_ptr<Runner>()>;
  using Reporter = std::function<void(const std::string&)>;

  // make_fallback runs at the first failure (the fallback's weights are prepared then, not at
  // start). report defaults to one line on stderr per transition.
  CircuitBreakerRunner(std::unique_ptr<Runner> primary, Factory make_fallback,
                       std::string fallback_name, BreakerOptions options = {}, Reporter report = {})
      : primary_(std::move(primary)),
        make_fallback_(std::move(make_fallback)),
        options_(options),
        report_(report ? std::move(report) : [](const std::string& line) {
          std::cerr << "tinybert: " << line << std::endl;
        }) {
    if (options_.failures_to_trip < 1) throw Error("failures to trip must be at least 1");
    status_.primary = primary_->backend_name();
    status_.fallback = std::move(fallback_name);
  }

  const Model& model() const override { return primary_->model(); }
  std::string backend_name() const override {
    std::lock_guard lock(mutex_);
    return status_.state == BreakerState::open ? status_.fallback : status_.primary;
  }
  // The primary's: /health says when the fallback serves instead.
  std::string backend_note() const override { return primary_->backend_note(); }
  std::string attention_kernel() const override { return primary_->attention_kernel(); }
  std::optional<DeviceMemory> device_memory() const override { return primary_->device_memory(); }

  BreakerStatus status() const {
    std::lock_guard lock(mutex_);
    return status_;
  }

  ForwardResult run(ForwardRequest request) override {
    validate_request(request, model().config());  // the caller's mistake, not the backend's
    if (take_primary()) {
      const auto started = Clock::now();
      try {
        ForwardResult result = primary_->run(request);
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
        if (took <= options_.pass_deadline) {
          succeeded();
        } else {
          failed("a pass took " + std::to_string(took.count()) + " ms, over the deadline of " +
                 std::to_string(options_.pass_deadline.count()) + " ms");
        }
        return result;  // a late result is still right
      } catch (const std::exception& e) {
        failed(e.what());
      }
    }
    return fallback().run(std::move(request));
  }

 private:
  // Whether this pass goes to the primary: while closed, or as the probe once the cool-down is
  // over.
  bool take_primary() {
    std::lock_guard lock(mutex_);
    if (status_.state == BreakerState::closed) return true;
    if (Clock::now() - opened_at_ < options_.cool_down) return false;
    status_.state = BreakerState::half_open;
    return true;
  }

  void succeeded() {
    std::lock_guard lock(mutex_);
    if (status_.state == BreakerState::half_open) {
      report_("backend " + status_.primary + " passed its probe: serving on it again");
      status_.reason.clear();
    }
    status_.state = BreakerState::closed;
    status_.consecutive_failures = 0;
  }

  void failed(const std::string& why) {
    std::lock_guard lock(mutex_);
    ++status_.consecutive_failures;
    if (status_.state == BreakerState::half_open) {
      status_.state = BreakerState::open;
      opened_at_ = Clock::now();
      status_.reason = why;
      return;  // still broken: another cool-down, no new trip
    }
    if (status_.consecutive_failures < options_.failures_to_trip) return;
    status_.state = BreakerState::open;
    opened_at_ = Clock::now();
    status_.reason = why;
    ++status_.trips;
    report_("backend " + status_.primary + " failed " +
            std::to_string(status_.consecutive_failures) + " passes in a row (" + why +
            "): serving on " + status_.fallback + ", probing again in " +
            std::to_string(options_.cool_down.count()) + " ms");
  }

  Runner& fallback() {
    std::lock_guard lock(fallback_mutex_);
    if (!fallback_) fallback_ = make_fallback_();
    return *fallback_;
  }

  std::unique_ptr<Runner> primary_, fallback_;
  Factory make_fallback_;
  BreakerOptions options_;
  Reporter report_;
  std::mutex fallback_mutex_;  // fallback_, made once
  mutable std::mutex mutex_;   // status_ and opened_at_ (read by /health and /metrics)
  BreakerStatus status_;
  Clock::time_point opened_at_;
};

}  // namespace tinybert
