// CudaRunner (encoder + heads on the GPU, CUDA Graphs for batch-1 requests) and FallbackRunner.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "gemm.hpp"
#include "tinybert/backend/cuda_runner.hpp"

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

  int64_t reserved_tokens = 0, reserved_sequences = 0;

  Impl(const Model& m, const CudaOptions& o)
      : model(m), options(o), backend(o), encoder(m, backend), heads(m, backend) {
    reserve(std::max<int64_t>(options.max_batch_tokens, 1),
            std::max<int64_t>(options.max_batch_sequences, 1));
  }

  // The workspace, once, for batches up to `tokens` tokens. qkv and intermediate share one
  // buffer: in encoder.hpp's order qkv is dead once attention has read it, and intermediate is
  // dead once the FFN's second GEMM has read it, before the next layer writes qkv (7 instead of
  // 10 x hidden values per token; the end-to-end tests compare with the reference).
  void reserve(int64_t tokens, int64_t sequences) {
    const ModelConfig& c = model.config();
    backend.reserve(ws.hidden, tokens, c.hidden_size);
    backend.reserve(ws.qkv, tokens, std::max(3 * c.hidden_size, c.intermediate_size));
    backend.share_storage(ws.intermediate, ws.qkv);
    backend.reserve(ws.context, tokens, c.hidden_size);
    backend.reserve(ws.projected, tokens, c.hidden_size);
    backend.reserve_batch(tokens, sequences, std::max(3 * c.hidden_size, c.intermediate_size));
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
    for (const CudaBackend::Matrix* m :
         {&ws.hidden, &ws.qkv, &ws.context, &ws.projected, &ws.intermediate})
      b.push_back(m->device_data());
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
  void forward(const ForwardRequest& request) {
    const Batch& batch = request.batch;
    ensure_workspace(batch);
    const bool graphable = options.cuda_graphs && stats.disabled_reason.empty() &&
                           !request.record_attention && batch.num_sequences() == 1 &&
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
      validate_batch(batch, model.config());
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
      validate_batch(batch, model.config());
      backend.stage_batch_for_replay(batch);
    }
    ++stats.replayed;
    check_cuda(cudaGraphLaunch(it->second, stream()), "cudaGraphLaunch");
  }

  ForwardResult run(const ForwardRequest& request) {
    ForwardResult result;
    ws.record_last_attention = request.record_attention;
    try {
      forward(request);
    } catch (...) {
      ws.record_last_attention = false;
      throw;
    }
    ws.record_last_attention = false;
    if (request.record_attention) result.attention = std::move(ws.last_attention);
    ws.last_attention.clear();
    switch (request.head.kind) {
      case HeadKind::pooled:
        result.values =
            heads.pool(ws.hidden, request.batch, request.head.pooling, request.head.normalize);
        break;
      case HeadKind::classifier_logits:
        result.values = heads.classifier_logits(ws.hidden, request.batch);
        break;
      case HeadKind::mlm_logits:
        result.values = heads.mlm_logits(ws.hidden, request.rows);
        break;
      case HeadKind::uie_spans: {
        auto p = heads.uie_probabilities(ws.hidden);
        result.start = std::move(p.start);
        result.end = std::move(p.end);
        break;
      }
    }
    return result;
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
CudaBackend& CudaRunner::backend() { return impl_->backend; }
CudaMemoryReport CudaRunner::memory_report() const { return impl_->backend.memory_report(); }

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
