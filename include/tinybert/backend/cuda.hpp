// The CUDA backend, declared without any CUDA header: fp16/bf16 activations, GEMMs through
// cuBLASLt (int8 IMMA when asked), our own kernels for embeddings + LayerNorm, flash-style
// attention over packed variable-length batches, residual + LayerNorm and the heads. The
// definitions live in src/cuda (link tinybert::cuda). Design: docs/cuda.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tinybert/backend/backend.hpp"
#include "tinybert/backend/host_matrix.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/error.hpp"
#include "tinybert/model.hpp"
#include "tinybert/precision.hpp"

namespace tinybert {

// A failure of the GPU itself (no driver, no device, out of memory, a kernel or cuBLAS error), as
// opposed to bad input, which stays a plain Error. A caller that catches CudaError can go on
// on the CPU (FallbackRunner in cuda_runner.hpp does).
class CudaError : public Error {
 public:
  using Error::Error;
};

// Why the CUDA backend cannot run on `device` here (no driver, no device, compute capability
// below 8.0, no kernel image for it, context creation failed), or nothing when it can. Makes
// `device` the calling thread's current device. Never throws.
std::optional<std::string> cuda_unavailable_reason(int device = 0);

// GEMM weights and activations: f16 or bf16 everywhere, or int8 GEMMs (int8 weights with one
// scale per output channel, activations quantised per token) with fp16 attention and LayerNorm.
// Precision::f16, bf16 or int8 (precision.hpp); the constructor refuses f32.

enum class CudaAttentionKernel {
  automatic,    // tensor cores (WMMA) for head_dim 64 and 128, the simple kernel otherwise
  simple,       // fp32 CUDA-core kernel, any head_dim up to 256 (the readable one)
  tensor_core,  // WMMA kernel; head_dim must be 64 or 128
};

struct CudaOptions {
  int device = 0;
  Precision precision = Precision::f16;
  // cuBLASLt's fused bias+GELU epilogue is the tanh approximation (|difference| <= 4.8e-4, below
  // fp16's resolution at 1); true runs the bias epilogue and then our exact erf GELU kernel.
  bool exact_gelu = false;
  CudaAttentionKernel attention = CudaAttentionKernel::automatic;
  // 0: none. Our own device allocations beyond this many bytes fail like a cudaMalloc would.
  int64_t memory_limit_bytes = 0;
  // Fill every new device buffer with 0xFF bytes (NaN in f16/bf16/f32), so that a kernel that
  // leaves an element unwritten shows up as a NaN in the tests.
  bool poison_allocations = false;
  int64_t gemm_workspace_bytes = 32ll << 20;  // cuBLASLt workspace (NVIDIA's advice for Hopper)

  // CudaRunner only: the workspace is allocated once for this many tokens / sequences, and
  // batch-1 requests are replayed from CUDA Graphs (one per length, at most max_graphs).
  int64_t max_batch_tokens = 16384;
  int64_t max_batch_sequences = 1024;
  bool cuda_graphs = true;
  int64_t max_graphs = 128;
};

// Device memory: what we allocated (weights, activations, scratch) and what the device reports.
struct CudaMemoryReport {
  int64_t weight_bytes = 0;  // prepared weights (fp16/bf16/int8 + scales, biases, norms, tables)
  int64_t activation_bytes = 0;  // CudaBackend::Matrix storage (workspace and heads)
  int64_t scratch_bytes =
      0;  // cuBLASLt workspace, batch upload, int8 quantised inputs, probabilities
  int64_t device_used_bytes =
      0;  // total used on the device now (all processes, CUDA context included)
  int64_t context_used_bytes =
      0;  // used on the device when this backend started (context included)
  int64_t device_total_bytes = 0;
  int64_t ours() const { return weight_bytes + activation_bytes + scratch_bytes; }
};

struct CudaMemoryCounter;  // src/cuda: the backend's byte counts, shared with its matrices

class CudaBackend {
 public:
  // Row-major activations in device memory. Storage only grows, so a workspace sized once does
  // no allocation on the hot path; contents are undefined after a growing resize. Move-only.
  class Matrix {
   public:
    Matrix() = default;
    Matrix(Matrix&& other) noexcept;
    Matrix& operator=(Matrix&& other) noexcept;
    Matrix(const Matrix&) = delete;
    Matrix& operator=(const Matrix&) = delete;
    ~Matrix();

    int64_t rows() const { return rows_; }
    int64_t cols() const { return cols_; }
    DType element() const { return element_; }
    void* device_data() { return data_; }
    const void* device_data() const { return data_; }
    int64_t capacity_bytes() const { return capacity_; }

   private:
    friend class CudaBackend;
    void release() noexcept;
    void* data_ = nullptr;
    int64_t capacity_ = 0;
    int64_t rows_ = 0, cols_ = 0;
    DType element_ = DType::f16;  // f16 or bf16 (activations), f32 (the small heads' output)
    bool owns_ = true;            // false: a view of another matrix's storage (share_storage)
    bool lent_ = false;  // other matrices view this one's storage: it must not grow in an op
    std::shared_ptr<CudaMemoryCounter> counter_;
  };

  // Handles to weights the backend owns (valid while it lives); device pointers, plain values.
  struct Linear {
    enum class Kind : uint8_t {
      gemm16,     // f16/bf16 weight, cuBLASLt with fused bias (+ GELU) epilogue
      gemm_int8,  // i8 weight + per-channel scales, cuBLASLt IMMA, our dequantising epilogue
      small_f32,  // fewer than 16 outputs (classifier, UIE start/end): f32 weight, f32 output
    };
    Kind kind = Kind::gemm16;
    int64_t in = 0, out = 0;
    const void* weight = nullptr;          // [out, in]
    const void* bias = nullptr;            // [out]: activation type (gemm16) or f32
    const float* weight_scales = nullptr;  // [out], gemm_int8 only
  };
  struct Norm {
    const float* gamma = nullptr;
    const float* beta = nullptr;
    int64_t size = 0;
    float eps = 1e-12f;
  };
  struct Embeddings {
    const void* word = nullptr;  // tables in the activation type, [rows, hidden]
    const void* position = nullptr;
    const void* token_type = nullptr;
    const void* task_type = nullptr;  // may be null
    int64_t hidden = 0, word_rows = 0, position_rows = 0, token_type_rows = 0, task_type_rows = 0;
    Norm norm;
  };

  // Throws CudaError with CUDA's own message when the device cannot be used.
  explicit CudaBackend(CudaOptions options = {});
  ~CudaBackend();
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const CudaOptions& options() const;
  DType activation_element() const;  // f16, or bf16 for Precision::bf16
  std::string device_name() const;
  std::string name() const;  // "cuda-f16", "cuda-bf16" or "cuda-int8"

  // ---- weight preparation (once, at load) ----
  Linear prepare(const LinearWeights& w);
  Norm prepare(const NormWeights& w, float eps);
  Embeddings prepare(const EmbeddingWeights& w, float eps);

  // ---- ops: the same signatures and meaning as CpuRefBackend ----
  void embed(const Embeddings& e, const Batch& batch, Matrix& out);
  void linear(const Linear& l, const Matrix& in, Matrix& out, Activation act = Activation::none);
  void add_layernorm(const Norm& n, const Matrix& residual, Matrix& x);
  void layernorm(const Norm& n, Matrix& x);
  void attention(const Matrix& qkv, const Batch& batch, int64_t num_heads, Matrix& context,
                 std::vector<float>* probs = nullptr);
  void pool(const Matrix& hidden, const Batch& batch, Pooling pooling, Matrix& out);
  void gather_rows(const Matrix& in, std::span<const int64_t> rows, Matrix& out);
  std::vector<float> to_host(const Matrix& m);  // waits for the GPU

  // ---- beyond the encoder's interface: tests, the runner and benchmarks ----
  // Values rounded to the activation type, shape [rows, cols].
  void from_host(std::span<const float> values, int64_t rows, int64_t cols, Matrix& out);
  // Capacity for [rows, cols] of the activation type without changing the shape.
  void reserve(Matrix& m, int64_t rows, int64_t cols);
  // Capacity for batches of up to this many tokens and sequences, and for the int8 GEMM scratch
  // of linears up to max_features inputs/outputs.
  void reserve_batch(int64_t max_tokens, int64_t max_sequences, int64_t max_features);
  // `view` uses `owner`'s storage from now on (two workspace matrices that are never live at the
  // same time). The owner must outlive the view and must not grow while the view is in use; a
  // view that has to grow gets storage of its own.
  void share_storage(Matrix& view, Matrix& owner);
  void poison(Matrix& m);  // 0xFF bytes over the whole capacity (NaN)
  void synchronize();
  CudaMemoryReport memory_report() const;

  // For CudaRunner's CUDA Graphs: the stream everything runs on (a cudaStream_t), the batch
  // written to the pinned upload buffer without issuing the copy (a replayed graph copies it),
  // and the addresses of the internal buffers a captured graph has baked in.
  void* native_stream() const;
  void stage_batch_for_replay(const Batch& batch);
  std::vector<const void*> internal_buffers() const;

 private:
  struct Impl;
  // `reserving`: an explicit reserve(), after which the caller re-points the views of a lent
  // matrix; an op's growth of a lent matrix would leave them on freed memory and throws instead.
  void resize(Matrix& m, int64_t rows, int64_t cols, DType element, bool reserving = false);
  std::unique_ptr<Impl> impl_;
};

static_assert(Backend<CudaBackend>);

}  // namespace tinybert
