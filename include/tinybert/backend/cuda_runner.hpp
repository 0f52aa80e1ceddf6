// Whole-model runners on the GPU: CudaRunner (encoder + heads on one CudaBackend, workspace
// allocated once, batch-1 requests replayed from CUDA Graphs) and FallbackRunner (the GPU while
// it works, the CPU after the first CUDA failure or when there is no usable GPU at all).
// Link tinybert::cuda.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "tinybert/backend/cuda.hpp"
#include "tinybert/runner.hpp"

namespace tinybert {

// Encoder + heads of a model on the GPU. Only the heads' results are copied back. Calls from
// several threads are serialised. Throws CudaError when the GPU fails (construction included).
class CudaRunner final : public Runner {
 public:
  explicit CudaRunner(const Model& model, CudaOptions options = {});
  ~CudaRunner() override;

  ForwardResult run(ForwardRequest request) override;
  const Model& model() const override;
  std::string backend_name() const override;
  std::optional<DeviceMemory> device_memory() const override;

  CudaBackend& backend();
  CudaMemoryReport memory_report() const;
  struct GraphStats {
    int64_t captured = 0, replayed = 0, eager = 0;
    std::string disabled_reason;  // set when capture failed and graphs were switched off
  };
  GraphStats graph_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs on the GPU while it can. When no GPU is usable at construction, or the GPU fails later (a
// CudaError: allocation, kernel, driver), it reports why once through `report` and runs this and
// every later request on the runner make_cpu() builds (e.g. an OwningRunner<CpuRefBackend>). Bad
// input still throws Error as usual.
class FallbackRunner final : public Runner {
 public:
  using CpuFactory = std::function<std::unique_ptr<Runner>()>;
  using Reporter = std::function<void(const std::string&)>;

  // report defaults to one line on stderr: "tinybert: CUDA unavailable, running on the CPU: <why>".
  FallbackRunner(const Model& model, CudaOptions options, CpuFactory make_cpu,
                 Reporter report = {});
  ~FallbackRunner() override;

  ForwardResult run(ForwardRequest request) override;
  const Model& model() const override { return model_; }
  // The GPU backend's name while on the GPU, else the CPU runner's.
  std::string backend_name() const override;
  std::optional<DeviceMemory> device_memory() const override;

  bool on_gpu() const;
  std::string fallback_reason() const;  // empty while on the GPU
  CudaRunner* gpu();                    // null once on the CPU

 private:
  void fall_back(const std::string& reason);  // mutex_ held

  const Model& model_;
  CpuFactory make_cpu_;
  Reporter report_;
  std::unique_ptr<CudaRunner> gpu_;
  std::unique_ptr<Runner> cpu_;
  std::string reason_;
  mutable std::mutex mutex_;
};

}  // namespace tinybert
