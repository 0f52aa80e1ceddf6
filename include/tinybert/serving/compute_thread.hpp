// ComputeThread: the one thread that runs every forward pass (and weight preparation) of a
// process that serves from many threads: the server's and the C API's batching schedulers hand
// their passes to it.
//
// Why: libgomp gives every thread that starts an OpenMP parallel region its own pool of worker
// threads. With two such "master" threads on a 2-core machine (weights prepared on the main
// thread, passes run on a scheduler thread), the idle pool's workers keep the cores busy: a
// 16-token int8 bge-small pass took 5.7 ms instead of 0.64 ms (bench/RESULTS.md). One master for
// the whole process keeps one pool.
#pragma once

#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

namespace tinybert {

class ComputeThread {
 public:
  // The process's compute thread, started on first use and never stopped (it waits, idle, until
  // the process exits; stopping it at exit would race with other static destructors). A child
  // process made by fork() has no copy of the parent's thread: it starts its own.
  static ComputeThread& instance() {
    static std::mutex guard;
    static ComputeThread* thread = nullptr;
    static pid_t owner = 0;
    std::lock_guard lock(guard);
    if (!thread || owner != ::getpid()) {
      thread = new ComputeThread;  // a parent's (after fork) is left as it is: not running here
      owner = ::getpid();
    }
    return *thread;
  }

  // Runs work() on the compute thread and returns its result (or throws its exception). Called
  // on the compute thread itself, it just runs it.
  template <class Work>
  auto run(Work&& work) -> std::invoke_result_t<Work&> {
    using Result = std::invoke_result_t<Work&>;
    if (std::this_thread::get_id() == thread_.get_id()) return work();
    std::packaged_task<Result()> task(std::forward<Work>(work));
    std::future<Result> result = task.get_future();
    {
      std::lock_guard lock(mutex_);
      queue_.emplace_back([&task] { task(); });
    }
    wake_.notify_one();
    return result.get();
  }

  ComputeThread(const ComputeThread&) = delete;
  ComputeThread& operator=(const ComputeThread&) = delete;

 private:
  ComputeThread() : thread_([this] { loop(); }) {}

  void loop() {
    while (true) {
      std::function<void()> next;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return !queue_.empty(); });
        next = std::move(queue_.front());
        queue_.pop_front();
      }
      next();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  std::thread thread_;  // last: started once the queue exists
};

}  // namespace tinybert
