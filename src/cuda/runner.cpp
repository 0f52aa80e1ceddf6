// CudaRunner (encoder + heads on the GPU, CUDA Graphs for batch-1 requests) and FallbackRunner.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "gemm.hpp"
#include "tinybert/backend/cuda_runner.hpp"
#include "tinybert/backend/trace.hpp"

namespace tinybert {

using cuda_detail::check_cuda;

// ---- CudaRunner -----------------------------------------------------------------------------

struct CudaRunner::Impl {
  const Model& model;
  CudaOptions options;
  CudaBackend backend;
  Encoder<CudaBackend> encoder;
  Heads<CudaBackend> heads;
  Workspace<CudaBackend> ws;
  std::mutex mutex;

  // One instantiated graph per batch-1 length: the encoder's forward pass (upload of the batch
  // included), captured on the second request of that length, after the first one has warmed
  // up every buffer and cuBLASLt plan it uses. The heads run eagerly after it.
  std::map<int64_t, cudaGraphExec_t> graphs;
  std::map<int64_t, int64_t> seen;
  std::vector<const void*> captured_with;  // the buffers the graphs have baked in
  GraphStats stats;

  // Which workspace buffers share storage, from the encoder's own order of operations (a
  // group's members are never live at once; e.g. qkv and intermediate, 7 instead of 10 x hidden
  // values per token for bert-base).
  WorkspacePlan plan;
  int64_t reserved_tokens = 0, reserved_sequences = 0;

  Impl(const Model& m, const CudaOptions& o)
      : model(m),
        options(o),
        backend(o),
        encoder(m, backend),
        heads(m, backend),
        plan(workspace_plan(m)) {
    reserve(std::max<int64_t>(options.max_batch_tokens, 1),
            std::max<int64_t>(options.max_batch_sequences, 1));
  }

  // The workspace, once, for batches up to `tokens` tokens: each storage group's widest buffer
  // owns the allocation, the others are views of it.
  void reserve(int64_t tokens, int64_t sequences) {
    int64_t widest = 0;
    for (int group = 0; group < plan.groups; ++group) {
      const WorkspacePlan::Entry& owner = plan.at(plan.owner(group));
      backend.reserve(ws.buffer(owner.buffer), tokens, owner.cols);
      widest = std::max(widest, owner.cols);
    }
    for (const WorkspacePlan::Entry& e : plan.entries)
      if (e.buffer != plan.owner(e.group))
        backend.share_storage(ws.buffer(e.buffer), ws.buffer(plan.owner(e.group)));
    backend.reserve_batch(tokens, sequences, widest);
    reserved_tokens = tokens;
    reserved_sequences = sequences;
  }

  // A batch larger than the workspace grows it first (the shared buffer must grow with both of its
  // users re-pointed, never behind the intermediate matrix's back).
  void ensure_workspace(const Batch& batch) {
    if (batch.num_tokens() > reserved_tokens || batch.num_sequences() > reserved_sequences)
      reserve(std::max(batch.num_tokens(), reserved_tokens),
              std::max(batch.num_sequences(), reserved_sequences));
  }

  ~Impl() { drop_graphs(); }

  void drop_graphs() {
    for (auto& [length, exec] : graphs) cudaGraphExecDestroy(exec);
    graphs.clear();
  }

  std::vector<const void*> buffers() const {
    std::vector<const void*> b = backend.internal_buffers();
    for (WorkspaceBuffer buffer : kWorkspaceBuffers) b.push_back(ws.buffer(buffer).device_data());
    return b;
  }

  cudaStream_t stream() const { return static_cast<cudaStream_t>(backend.native_stream()); }

  cudaGraphExec_t capture(const Batch& batch) {
    backend.synchronize();
    check_cuda(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
    try {
      encoder.forward(batch, ws);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream(), &broken);
      if (broken) cudaGraphDestroy(broken);
      cudaGetLastError();
      throw;
    }
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamEndCapture(stream(), &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t error = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check_cuda(error, "cudaGraphInstantiate");
    return exec;
  }

  // The encoder's forward pass, from a graph when there is (or now can be) one for this request.
  void forward(const Batch& batch) {
    ensure_workspace(batch);
    const bool graphable = options.cuda_graphs && stats.disabled_reason.empty() &&
                           !ws.record_last_attention && batch.num_sequences() == 1 &&
                           batch.num_tokens() <= options.max_batch_tokens;
    if (!graphable) {
      ++stats.eager;
      encoder.forward(batch, ws);
      return;
    }
    if (!graphs.empty() && buffers() != captured_with)
      drop_graphs();  // a buffer moved: graphs are stale
    const int64_t length = batch.num_tokens();
    auto it = graphs.find(length);
    if (it == graphs.end()) {
      if (seen[length]++ == 0 || static_cast<int64_t>(graphs.size()) >= options.max_graphs) {
        ++stats.eager;
        encoder.forward(batch, ws);  // also the warm-up of this shape
        return;
      }
      try {
        it = graphs.emplace(length, capture(batch)).first;
        captured_with = buffers();
        ++stats.captured;
      } catch (const CudaError& e) {
        stats.disabled_reason = e.what();  // e.g. a driver without graph support: stay eager
        ++stats.eager;
        encoder.forward(batch, ws);
        return;
      }
    } else {
      backend.stage_batch_for_replay(batch);
    }
    ++stats.replayed;
    check_cuda(cudaGraphLaunch(it->second, stream()), "cudaGraphLaunch");
  }

  ForwardResult run(const ForwardRequest& request) {
    // SiameseUIE's passes run the encoder's layers outside forward(): the workspace must be
    // sized for their batches first, or a buffer that owns shared storage would grow alone and
    // leave its views pointing at freed memory.
    if (request.head.kind == HeadKind::siamese_text_states ||
        request.head.kind == HeadKind::siamese_logits) {
      validate_request(request, model.config());
      ensure_workspace(request.batch);
      if (request.head.kind == HeadKind::siamese_logits) ensure_workspace(siamese_pairs(request));
    }
    return run_request(encoder, heads, ws, request,
                       [this](const Batch& batch, Workspace<CudaBackend>&) { forward(batch); });
  }
};

CudaRunner::CudaRunner(const Model& model, CudaOptions options)
    : impl_(std::make_unique<Impl>(model, options)) {}
CudaRunner::~CudaRunner() = default;

ForwardResult CudaRunner::run(ForwardRequest request) {
  std::lock_guard lock(impl_->mutex);
  return impl_->run(request);
}

const Model& CudaRunner::model() const { return impl_->model; }
std::string CudaRunner::backend_name() const { return impl_->backend.name(); }
CudaBackend& CudaRunner::backend() { return impl_->backend; }
CudaMemoryReport CudaRunner::memory_report() const { return impl_->backend.memory_report(); }
std::optional<DeviceMemory> CudaRunner::device_memory() const {
  const CudaMemoryReport r = memory_report();
  return DeviceMemory{r.ours(), r.device_used_bytes, r.device_total_bytes};
}

CudaRunner::GraphStats CudaRunner::graph_stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

// ---- FallbackRunner -------------------------------------------------------------------------

FallbackRunner::FallbackRunner(const Model& model, CudaOptions options, CpuFactory make_cpu,
                               Reporter report)
    : model_(model), make_cpu_(std::move(make_cpu)), report_(std::move(report)) {
  if (!report_)
    report_ = [](const std::string& why) {
      std::fprintf(stderr, "tinybert: CUDA unavailable, running on the CPU: %s\n", why.c_str());
    };
  std::lock_guard lock(mutex_);
  if (auto reason = cuda_unavailable_reason(options.device)) {
    fall_back(*reason);
    return;
  }
  try {
    gpu_ = std::make_unique<CudaRunner>(model, options);
  } catch (const CudaError& e) {
    fall_back(e.what());
  }
}

FallbackRunner::~FallbackRunner() = default;

void FallbackRunner::fall_back(const std::string& reason) {
  gpu_.reset();
  reason_ = reason;
  report_(reason);
  cpu_ = make_cpu_();
}

ForwardResult FallbackRunner::run(ForwardRequest request) {
  std::lock_guard lock(mutex_);
  if (gpu_) {
    try {
      return gpu_->run(request);
    } catch (const CudaError& e) {
      fall_back(e.what());
    }
  }
  return cpu_->run(std::move(request));
}

std::string FallbackRunner::backend_name() const {
  std::lock_guard lock(mutex_);
  return gpu_ ? gpu_->backend_name() : cpu_->backend_name();
}

std::optional<DeviceMemory> FallbackRunner::device_memory() const {
  std::lock_guard lock(mutex_);
  return gpu_ ? gpu_->device_memory() : std::nullopt;
}

bool FallbackRunner::on_gpu() const {
  std::lock_guard lock(mutex_);
  return gpu_ != nullptr;
}

std::string FallbackRunner::fallback_reason() const {
  std::lock_guard lock(mutex_);
  return reason_;
}

CudaRunner* FallbackRunner::gpu() {
  std::lock_guard lock(mutex_);
  return gpu_.get();
}

}  // namespace tinybert
