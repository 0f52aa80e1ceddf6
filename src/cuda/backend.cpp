// CudaBackend: weights prepared once into device memory, activations in growing device matrices,
// every op enqueued on one stream; the only host waits are to_host(), attention probabilities and
// the reuse of a pinned upload buffer.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>

#include "gemm.hpp"
#include "kernels.hpp"
#include "tinybert/backend/cuda.hpp"
#include "tinybert/quantize.hpp"
#include "tinybert/weights_f32.hpp"

namespace tinybert {

struct CudaMemoryCounter {
  std::atomic<int64_t> weights{0}, activations{0}, scratch{0};
  int64_t limit = 0;
  int64_t total() const { return weights + activations + scratch; }
};

namespace {

namespace kernels = cuda_kernels;
using cuda_detail::check_cuda;
using cuda_detail::LtGemm;

enum class Pool { weights, activations, scratch };

std::atomic<int64_t>& bytes_of(CudaMemoryCounter& counter, Pool pool) {
  return pool == Pool::weights       ? counter.weights
         : pool == Pool::activations ? counter.activations
                                     : counter.scratch;
}

// cudaMalloc with our accounting, the optional limit and the optional NaN poisoning (ordered on
// `stream`, before anything that writes the buffer).
void* device_allocate(CudaMemoryCounter& counter, Pool pool, int64_t bytes, bool poison,
                      cudaStream_t stream, const std::string& what) {
  if (bytes <= 0) return nullptr;
  if (counter.limit > 0 && counter.total() + bytes > counter.limit)
    throw CudaError("CUDA: allocating " + std::to_string(bytes) + " bytes for " + what +
                    " would pass the memory limit of " + std::to_string(counter.limit) +
                    " bytes (" + std::to_string(counter.total()) + " in use)");
  void* data = nullptr;
  check_cuda(cudaMalloc(&data, static_cast<size_t>(bytes)),
             "cudaMalloc of " + std::to_string(bytes) + " bytes for " + what);
  bytes_of(counter, pool) += bytes;
  if (poison) {
    const cudaError_t error = cudaMemsetAsync(data, 0xff, static_cast<size_t>(bytes), stream);
    if (error != cudaSuccess) {
      cudaFree(data);
      bytes_of(counter, pool) -= bytes;
      check_cuda(error, "poisoning " + what);
    }
  }
  return data;
}

// A device allocation owned by the backend (weights, scratch).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(CudaMemoryCounter& counter, Pool pool, int64_t bytes, bool poison,
               cudaStream_t stream, const std::string& what)
      : counter_(&counter),
        pool_(pool),
        bytes_(bytes),
        data_(device_allocate(counter, pool, bytes, poison, stream, what)) {}
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      counter_ = other.counter_;
      pool_ = other.pool_;
      bytes_ = other.bytes_;
      data_ = other.data_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  void release() noexcept {
    if (data_) {
      cudaFree(data_);
      bytes_of(*counter_, pool_) -= bytes_;
    }
    data_ = nullptr;
    bytes_ = 0;
  }
  CudaMemoryCounter* counter_ = nullptr;
  Pool pool_ = Pool::scratch;
  int64_t bytes_ = 0;
  void* data_ = nullptr;
};

// Page-locked host memory, for asynchronous copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  // The caller has made sure no copy still reads or writes the old memory.
  void grow(int64_t bytes, const std::string& what) {
    if (bytes <= bytes_) return;
    if (data_) cudaFreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
    check_cuda(cudaHostAlloc(&data_, static_cast<size_t>(bytes), cudaHostAllocDefault),
               "cudaHostAlloc of " + std::to_string(bytes) + " bytes for " + what);
    bytes_ = bytes;
  }
  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

int64_t element_size(DType element) { return element == DType::f32 ? 4 : 2; }

kernels::Act act_of(Activation act) {
  switch (act) {
    case Activation::gelu:
      return kernels::Act::gelu;
    case Activation::tanh:
      return kernels::Act::tanh;
    case Activation::sigmoid:
      return kernels::Act::sigmoid;
    case Activation::none:
      break;
  }
  return kernels::Act::none;
}

int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

std::string shape(int64_t rows, int64_t cols) {
  std::string text = "[";  // appended piecewise: GCC 12 reports a false -Wrestrict for "[" + string
  text += std::to_string(rows) + "," + std::to_string(cols);
  return text + "]";
}

// The int8 GEMM runs over at most this many tokens at once, which bounds its int32 scratch.
constexpr int64_t kInt8ChunkRows = 4096;
// Projections with fewer outputs stay fp32 (classifiers, UIE start/end): only accuracy to lose.
constexpr int64_t kSmallLinearOutputs = 16;

}  // namespace

// ---- Matrix ---------------------------------------------------------------------------------

CudaBackend::Matrix::Matrix(Matrix&& other) noexcept { *this = std::move(other); }

CudaBackend::Matrix& CudaBackend::Matrix::operator=(Matrix&& other) noexcept {
  if (this != &other) {
    release();
    data_ = other.data_;
    capacity_ = other.capacity_;
    rows_ = other.rows_;
    cols_ = other.cols_;
    element_ = other.element_;
    owns_ = other.owns_;
    lent_ = other.lent_;
    counter_ = std::move(other.counter_);
    other.data_ = nullptr;
    other.capacity_ = other.rows_ = other.cols_ = 0;
    other.owns_ = true;
    other.lent_ = false;
  }
  return *this;
}

CudaBackend::Matrix::~Matrix() { release(); }

void CudaBackend::Matrix::release() noexcept {
  if (data_ && owns_) {
    cudaFree(data_);
    if (counter_) counter_->activations -= capacity_;
  }
  data_ = nullptr;
  capacity_ = 0;
  owns_ = true;
  counter_.reset();
}

// ---- Impl -----------------------------------------------------------------------------------

struct CudaBackend::Impl {
  CudaOptions options;
  DType activation = DType::f16;
  std::string device_name;
  cudaStream_t stream = nullptr;
  std::shared_ptr<CudaMemoryCounter> counter = std::make_shared<CudaMemoryCounter>();
  int64_t context_used = 0, device_total = 0;

  DeviceBuffer gemm_workspace;
  std::unique_ptr<LtGemm> gemm;
  std::vector<DeviceBuffer> weights;
  // Word embedding tables by their host data, for an MLM decoder tied to them: one device copy.
  struct Table {
    const void* device;
    int64_t rows, cols;
    DType dtype;
  };
  std::map<const void*, Table> word_tables;

  // Batch upload: [ids | type ids | task ids | positions] per token, then cu_seqlens.
  PinnedBuffer staging;
  DeviceBuffer batch_device;
  std::vector<int32_t> uploaded_cu_seqlens;
  kernels::BatchView view;

  PinnedBuffer rows_staging;
  DeviceBuffer rows_device;
  DeviceBuffer quantized, token_scales, accumulators;  // int8 GEMM scratch
  DeviceBuffer probs, prob_offsets;
  PinnedBuffer download;

  ~Impl() {
    if (stream) cudaStreamSynchronize(stream);
    gemm.reset();
    if (stream) cudaStreamDestroy(stream);
  }

  kernels::Element kernel_element() const {
    return activation == DType::bf16 ? kernels::Element::bf16 : kernels::Element::f16;
  }
  cudaDataType_t cuda_type() const { return activation == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F; }

  // Ops may come from any thread: make our device the current one (a no-op when it is).
  void enter() const {
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != options.device)
      check_cuda(cudaSetDevice(options.device), "cudaSetDevice");
  }

  bool capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing");
    return status != cudaStreamCaptureStatusNone;
  }

  // Grows a scratch buffer; never while a graph is being captured (the runner warms up first).
  void grow(DeviceBuffer& buffer, int64_t bytes, const std::string& what) {
    if (bytes <= buffer.bytes()) return;
    if (capturing()) throw CudaError("CUDA: " + what + " would grow during graph capture");
    buffer = DeviceBuffer();  // cudaFree waits for the work that may still use it
    buffer = DeviceBuffer(*counter, Pool::scratch, bytes, options.poison_allocations, stream, what);
  }

  const void* upload(const void* host, int64_t bytes, const std::string& what) {
    DeviceBuffer buffer(*counter, Pool::weights, bytes, false, stream, what);
    check_cuda(cudaMemcpy(buffer.data(), host, static_cast<size_t>(bytes), cudaMemcpyHostToDevice),
               "uploading " + what);
    weights.push_back(std::move(buffer));
    return weights.back().data();
  }
  const float* upload_f32(const std::vector<float>& values, const std::string& what) {
    return static_cast<const float*>(
        upload(values.data(), static_cast<int64_t>(values.size() * sizeof(float)), what));
  }
  std::vector<uint16_t> to_16bit(const std::vector<float>& values) const {
    std::vector<uint16_t> out(values.size());
    const bool bf16 = activation == DType::bf16;
    for (size_t i = 0; i < values.size(); ++i)
      out[i] = bf16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
    return out;
  }
  // A matrix or table in the activation type.
  const void* upload16(const Weight& w, const std::string& what) {
    const std::vector<uint16_t> values = to_16bit(dequantize(w));
    return upload(values.data(), static_cast<int64_t>(values.size() * 2), what);
  }
  // The word table's device copy when `w` is that same stored tensor (a tied MLM decoder).
  const void* tied_word_table(const Weight& w) const {
    auto it = word_tables.find(w.values.data);
    if (it == word_tables.end()) return nullptr;
    const Table& t = it->second;
    return t.rows == w.rows() && t.cols == w.cols() && t.dtype == w.values.dtype ? t.device
                                                                                 : nullptr;
  }

  void stage(const Batch& batch) {
    const int64_t n = batch.num_tokens(), b = batch.num_sequences();
    const int64_t count = 4 * n + b + 1;
    if (!capturing()) {
      check_cuda(cudaStreamSynchronize(stream), "waiting for the previous batch upload");
      staging.grow(count * 4, "the batch upload");
      grow(batch_device, count * 4, "the batch on the device");
    } else if (count * 4 > staging.bytes() || count * 4 > batch_device.bytes()) {
      throw CudaError("CUDA: the batch upload buffer would grow during graph capture");
    }
    auto* host = static_cast<int32_t*>(staging.data());
    const auto put = [&](const std::vector<int32_t>& values, int64_t offset) {
      if (static_cast<int64_t>(values.size()) == n)
        std::memcpy(host + offset, values.data(), static_cast<size_t>(n) * 4);
      else
        std::fill(host + offset, host + offset + n, 0);  // absent type / task ids: all zero
    };
    put(batch.input_ids, 0);
    put(batch.token_type_ids, n);
    put(batch.task_type_ids, 2 * n);
    for (int64_t s = 0; s < b; ++s)
      for (int64_t p = 0; p < batch.seq_len(s); ++p)
        host[3 * n + batch.seq_begin(s) + p] = static_cast<int32_t>(batch.position(s, p));
    std::memcpy(host + 4 * n, batch.cu_seqlens.data(), static_cast<size_t>(b + 1) * 4);
    const auto* device = static_cast<const int32_t*>(batch_device.data());
    view = {device,
            device + n,
            device + 2 * n,
            device + 3 * n,
            device + 4 * n,
            static_cast<int32_t>(n),
            static_cast<int32_t>(b),
            static_cast<int32_t>(batch.max_seq_len())};
    uploaded_cu_seqlens = batch.cu_seqlens;
  }

  void upload_batch(const Batch& batch) {
    if (batch.num_tokens() > INT32_MAX / 8)
      throw Error("batch: too many tokens for the CUDA backend");
    stage(batch);
    const int64_t bytes = (4 * batch.num_tokens() + batch.num_sequences() + 1) * 4;
    check_cuda(cudaMemcpyAsync(batch_device.data(), staging.data(), static_cast<size_t>(bytes),
                               cudaMemcpyHostToDevice, stream),
               "uploading the batch");
  }

  // attention() and pool() use the batch embed() uploaded; another batch is uploaded first.
  void ensure_batch(const Batch& batch) {
    if (batch.cu_seqlens != uploaded_cu_seqlens || !batch_device.data()) upload_batch(batch);
  }

  void ensure_int8_scratch(int64_t rows, int64_t in, int64_t out) {
    grow(quantized, rows * in, "int8 activations");
    grow(token_scales, rows * 4, "int8 token scales");
    grow(accumulators, rows * out * 4, "int8 GEMM accumulators");
  }
};

// ---- construction ---------------------------------------------------------------------------

CudaBackend::CudaBackend(CudaOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.options = options;
  s.counter->limit = options.memory_limit_bytes;
  if (options.precision == Precision::f32)
    throw Error("the CUDA backend computes in f16, bf16 or int8, not f32 (f32 is a CPU precision)");
  s.activation = options.precision == Precision::bf16 ? DType::bf16 : DType::f16;
  if (auto reason = cuda_unavailable_reason(options.device)) throw CudaError(*reason);
  s.enter();
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, options.device), "cudaGetDeviceProperties");
  s.device_name = prop.name;
  size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  s.context_used = static_cast<int64_t>(total_bytes - free_bytes);
  s.device_total = static_cast<int64_t>(total_bytes);
  check_cuda(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  s.gemm_workspace = DeviceBuffer(*s.counter, Pool::scratch, options.gemm_workspace_bytes, false,
                                  s.stream, "the cuBLASLt workspace");
  s.gemm = std::make_unique<LtGemm>(s.gemm_workspace.data(),
                                    static_cast<size_t>(s.gemm_workspace.bytes()));
}

CudaBackend::~CudaBackend() = default;

const CudaOptions& CudaBackend::options() const { return impl_->options; }
DType CudaBackend::activation_element() const { return impl_->activation; }
std::string CudaBackend::device_name() const { return impl_->device_name; }
std::string CudaBackend::name() const {
  return std::string("cuda-") + precision_name(impl_->options.precision);
}
void* CudaBackend::native_stream() const { return impl_->stream; }

// ---- weights --------------------------------------------------------------------------------

CudaBackend::Linear CudaBackend::prepare(const LinearWeights& w) {
  Impl& s = *impl_;
  s.enter();
  Linear l;
  l.in = w.weight.cols();
  l.out = w.weight.rows();
  const std::vector<float> bias = dequantize(w.bias);
  if (static_cast<int64_t>(bias.size()) != l.out)
    throw Error("CUDA linear: " + std::to_string(bias.size()) + " biases for " +
                std::to_string(l.out) + " outputs");
  const std::string what = "a " + shape(l.out, l.in) + " linear layer";
  if (l.out < kSmallLinearOutputs) {
    l.kind = Linear::Kind::small_f32;
    l.weight = s.upload_f32(dequantize(w.weight), what);
    l.bias = s.upload_f32(bias, what);
  } else if (s.options.precision == Precision::int8 && l.in % 4 == 0 && l.out % 4 == 0) {
    // int8 as stored when the file has it (e.g. the bge ONNX), else quantised per output channel
    l.kind = Linear::Kind::gemm_int8;
    std::vector<int8_t> q(static_cast<size_t>(l.out * l.in));
    std::vector<float> scales(static_cast<size_t>(l.out));
    if (w.weight.values.dtype == DType::i8 && w.weight.row_scales) {
      std::memcpy(q.data(), w.weight.values.data, q.size());
      std::copy(w.weight.row_scales, w.weight.row_scales + l.out, scales.begin());
    } else {
      const std::vector<float> f32 = dequantize(w.weight);
      quantize_rows_symmetric(f32.data(), l.out, l.in, q.data(), scales.data(), 127);
    }
    l.weight = s.upload(q.data(), static_cast<int64_t>(q.size()), what);
    l.weight_scales = s.upload_f32(scales, what);
    l.bias = s.upload_f32(bias, what);
  } else {
    l.kind = Linear::Kind::gemm16;
    l.weight = s.tied_word_table(w.weight);
    if (!l.weight) l.weight = s.upload16(w.weight, what);
    const std::vector<uint16_t> bias16 = s.to_16bit(bias);
    l.bias = s.upload(bias16.data(), static_cast<int64_t>(bias16.size() * 2), what);
  }
  return l;
}

CudaBackend::Norm CudaBackend::prepare(const NormWeights& w, float eps) {
  Impl& s = *impl_;
  s.enter();
  const std::vector<float> gamma = dequantize(w.gamma), beta = dequantize(w.beta);
  if (gamma.size() != beta.size() ||
      static_cast<int64_t>(gamma.size()) > kernels::kMaxLayerNormCols)
    throw Error("CUDA LayerNorm: " + std::to_string(gamma.size()) + " weights and " +
                std::to_string(beta.size()) + " biases (at most " +
                std::to_string(kernels::kMaxLayerNormCols) + ", equal)");
  return {s.upload_f32(gamma, "LayerNorm weights"), s.upload_f32(beta, "LayerNorm biases"),
          static_cast<int64_t>(gamma.size()), eps};
}

CudaBackend::Embeddings CudaBackend::prepare(const EmbeddingWeights& w, float eps) {
  Impl& s = *impl_;
  s.enter();
  Embeddings e;
  e.hidden = w.word.cols();
  const auto check = [&](const Weight& table, const char* name) {
    if (table.cols() != e.hidden)
      throw Error(std::string("CUDA embeddings: ") + name + " table has " +
                  std::to_string(table.cols()) + " columns, the word table " +
                  std::to_string(e.hidden));
  };
  check(w.position, "position");
  check(w.token_type, "token type");
  e.word = s.upload16(w.word, "word embeddings");
  s.word_tables[w.word.values.data] = {e.word, w.word.rows(), w.word.cols(), w.word.values.dtype};
  e.position = s.upload16(w.position, "position embeddings");
  e.token_type = s.upload16(w.token_type, "token type embeddings");
  e.word_rows = w.word.rows();
  e.position_rows = w.position.rows();
  e.token_type_rows = w.token_type.rows();
  if (w.task_type) {
    check(*w.task_type, "task type");
    e.task_type = s.upload16(*w.task_type, "task type embeddings");
    e.task_type_rows = w.task_type->rows();
  }
  e.norm = prepare(w.norm, eps);
  if (e.norm.size != e.hidden)
    throw Error("CUDA embeddings: LayerNorm size differs from the hidden size");
  return e;
}

// ---- storage --------------------------------------------------------------------------------

void CudaBackend::resize(Matrix& m, int64_t rows, int64_t cols, DType element, bool reserving) {
  if (rows < 0 || cols < 0) throw Error("CUDA matrix: negative shape " + shape(rows, cols));
  const int64_t bytes = rows * cols * element_size(element);
  if (bytes > m.capacity_) {
    Impl& s = *impl_;
    if (m.lent_ && !reserving)
      throw CudaError("CUDA: a workspace matrix whose storage is shared would grow in an op (" +
                      shape(rows, cols) + "); the runner must reserve the workspace first");
    if (s.capturing()) throw CudaError("CUDA: a matrix would grow during graph capture");
    m.release();
    m.data_ = device_allocate(*s.counter, Pool::activations, bytes, s.options.poison_allocations,
                              s.stream, "a " + shape(rows, cols) + " matrix");
    m.capacity_ = bytes;
    m.counter_ = s.counter;
  }
  m.rows_ = rows;
  m.cols_ = cols;
  m.element_ = element;
}

void CudaBackend::reserve(Matrix& m, int64_t rows, int64_t cols) {
  const int64_t old_rows = m.rows_, old_cols = m.cols_;
  const DType old_element = m.element_;
  resize(m, rows, cols, impl_->activation, /*reserving=*/true);
  m.rows_ = old_rows;
  m.cols_ = old_cols;
  m.element_ = old_element;
}

void CudaBackend::reserve_batch(int64_t max_tokens, int64_t max_sequences, int64_t max_features) {
  Impl& s = *impl_;
  s.enter();
  synchronize();
  const int64_t bytes = (4 * max_tokens + max_sequences + 1) * 4;
  s.staging.grow(bytes, "the batch upload");
  s.grow(s.batch_device, bytes, "the batch on the device");
  if (s.options.precision == Precision::int8) {
    const int64_t rows = round_up(std::min(max_tokens, kInt8ChunkRows), 16);
    s.ensure_int8_scratch(rows, max_features, max_features);
  }
}

void CudaBackend::share_storage(Matrix& view, Matrix& owner) {
  if (&view == &owner) return;
  owner.lent_ = true;
  view.release();
  view.data_ = owner.data_;
  view.capacity_ = owner.capacity_;
  view.owns_ = false;
}

void CudaBackend::poison(Matrix& m) {
  if (m.data_)
    check_cuda(cudaMemsetAsync(m.data_, 0xff, static_cast<size_t>(m.capacity_), impl_->stream),
               "poisoning a matrix");
}

void CudaBackend::synchronize() {
  check_cuda(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize");
}

CudaMemoryReport CudaBackend::memory_report() const {
  const Impl& s = *impl_;
  CudaMemoryReport r;
  r.weight_bytes = s.counter->weights;
  r.activation_bytes = s.counter->activations;
  r.scratch_bytes = s.counter->scratch;
  r.context_used_bytes = s.context_used;
  r.device_total_bytes = s.device_total;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(s.options.device) == cudaSuccess &&
      cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
    r.device_used_bytes = static_cast<int64_t>(total_bytes - free_bytes);
  cudaGetLastError();
  return r;
}

void CudaBackend::stage_batch_for_replay(const Batch& batch) {
  impl_->enter();
  impl_->stage(batch);
}

std::vector<const void*> CudaBackend::internal_buffers() const {
  const Impl& s = *impl_;
  return {s.staging.data(),   s.batch_device.data(), s.gemm_workspace.data(),
          s.quantized.data(), s.token_scales.data(), s.accumulators.data()};
}

// ---- ops ------------------------------------------------------------------------------------

void CudaBackend::embed(const Embeddings& e, const Batch& batch, Matrix& out) {
  Impl& s = *impl_;
  s.enter();
  // ids, positions and packing passed validate_request() (request.hpp) before any backend
  s.upload_batch(batch);
  resize(out, batch.num_tokens(), e.hidden, s.activation);
  check_cuda(kernels::embed_layernorm(s.kernel_element(), s.view, e.word, e.position, e.token_type,
                                      e.task_type, e.norm.gamma, e.norm.beta, e.norm.eps, out.data_,
                                      static_cast<int>(e.hidden), s.stream),
             "embeddings kernel");
}

void CudaBackend::linear(const Linear& l, const Matrix& in, Matrix& out, Activation act) {
  Impl& s = *impl_;
  s.enter();
  if (in.cols() != l.in)
    throw Error("CUDA linear: input " + shape(in.rows(), in.cols()) + ", the layer takes " +
                std::to_string(l.in) + " columns");
  if (in.element() != s.activation)
    throw Error("CUDA linear: the input is not in the activation type (a head's f32 output?)");
  if (&in == &out) throw Error("CUDA linear: input and output must differ");
  const int64_t rows = in.rows();
  const kernels::Act kernel_act = act_of(act);
  switch (l.kind) {
    case Linear::Kind::small_f32:
      resize(out, rows, l.out, DType::f32);
      check_cuda(
          kernels::small_linear(s.kernel_element(), in.data_, static_cast<const float*>(l.weight),
                                static_cast<const float*>(l.bias), static_cast<float*>(out.data_),
                                static_cast<int>(rows), static_cast<int>(l.in),
                                static_cast<int>(l.out), kernel_act, s.stream),
          "small linear kernel");
      return;
    case Linear::Kind::gemm16: {
      resize(out, rows, l.out, s.activation);
      const bool fuse_gelu = act == Activation::gelu && !s.options.exact_gelu;
      const bool fused = s.gemm->gemm16(
          s.cuda_type(), l.weight, in.data_, out.data_, l.bias, l.out, rows, l.in,
          fuse_gelu ? LtGemm::Epilogue::gelu_bias : LtGemm::Epilogue::bias, s.stream);
      if (!fuse_gelu || !fused)
        check_cuda(
            kernels::activation(s.kernel_element(), out.data_, rows * l.out, kernel_act, s.stream),
            "activation kernel");
      return;
    }
    case Linear::Kind::gemm_int8: {
      resize(out, rows, l.out, s.activation);
      const auto* input = static_cast<const char*>(in.data_);
      auto* output = static_cast<char*>(out.data_);
      for (int64_t first = 0; first < rows; first += kInt8ChunkRows) {
        const int64_t n = std::min(kInt8ChunkRows, rows - first), padded = round_up(n, 16);
        s.ensure_int8_scratch(padded, l.in, l.out);
        auto* q = static_cast<int8_t*>(s.quantized.data());
        auto* scales = static_cast<float*>(s.token_scales.data());
        auto* acc = static_cast<int32_t*>(s.accumulators.data());
        check_cuda(kernels::quantize_rows(s.kernel_element(), input + first * l.in * 2, q, scales,
                                          static_cast<int>(n), static_cast<int>(padded),
                                          static_cast<int>(l.in), s.stream),
                   "int8 quantisation kernel");
        s.gemm->gemm_int8(static_cast<const int8_t*>(l.weight), q, acc, l.out, padded, l.in,
                          s.stream);
        check_cuda(kernels::dequantize_epilogue(s.kernel_element(), acc, scales, l.weight_scales,
                                                static_cast<const float*>(l.bias),
                                                output + first * l.out * 2, static_cast<int>(n),
                                                static_cast<int>(l.out), kernel_act, s.stream),
                   "int8 epilogue kernel");
      }
      return;
    }
  }
}

void CudaBackend::add_layernorm(const Norm& n, const Matrix& residual, Matrix& x) {
  Impl& s = *impl_;
  s.enter();
  if (residual.rows() != x.rows() || residual.cols() != x.cols() || x.cols() != n.size ||
      residual.element() != s.activation || x.element() != s.activation)
    throw Error("CUDA add_layernorm: x " + shape(x.rows(), x.cols()) + ", residual " +
                shape(residual.rows(), residual.cols()) + ", norm size " + std::to_string(n.size));
  check_cuda(
      kernels::add_layernorm(s.kernel_element(), x.data_, residual.data_, n.gamma, n.beta, n.eps,
                             static_cast<int>(x.rows()), static_cast<int>(x.cols()), s.stream),
      "residual + LayerNorm kernel");
}

void CudaBackend::layernorm(const Norm& n, Matrix& x) {
  Impl& s = *impl_;
  s.enter();
  if (x.cols() != n.size || x.element() != s.activation)
    throw Error("CUDA layernorm: x " + shape(x.rows(), x.cols()) + ", norm size " +
                std::to_string(n.size));
  check_cuda(
      kernels::add_layernorm(s.kernel_element(), x.data_, nullptr, n.gamma, n.beta, n.eps,
                             static_cast<int>(x.rows()), static_cast<int>(x.cols()), s.stream),
      "LayerNorm kernel");
}

void CudaBackend::attention(const Matrix& qkv, const Batch& batch, int64_t num_heads,
                            Matrix& context, std::vector<float>* probs) {
  Impl& s = *impl_;
  s.enter();
  if (num_heads <= 0 || qkv.cols() % 3 != 0 || (qkv.cols() / 3) % num_heads != 0 ||
      qkv.rows() != batch.num_tokens() || qkv.element() != s.activation)
    throw Error("CUDA attention: qkv " + shape(qkv.rows(), qkv.cols()) + " for " +
                std::to_string(batch.num_tokens()) + " tokens and " + std::to_string(num_heads) +
                " heads");
  const int64_t hidden = qkv.cols() / 3, head_dim = hidden / num_heads;
  if (head_dim > kernels::kMaxSimpleHeadDim)
    throw Error("CUDA attention: head_dim " + std::to_string(head_dim) + " (at most " +
                std::to_string(kernels::kMaxSimpleHeadDim) + ")");
  kernels::AttentionKernel kernel =
      kernels::tensor_core_attention_supports(static_cast<int>(head_dim))
          ? kernels::AttentionKernel::tensor_core
          : kernels::AttentionKernel::simple;
  if (s.options.attention == CudaAttentionKernel::simple) kernel = kernels::AttentionKernel::simple;
  if (s.options.attention == CudaAttentionKernel::tensor_core &&
      kernel != kernels::AttentionKernel::tensor_core)
    throw Error("CUDA attention: the tensor-core kernel takes head_dim 64 or 128, not " +
                std::to_string(head_dim));
  s.ensure_batch(batch);
  resize(context, qkv.rows(), hidden, s.activation);
  check_cuda(kernels::attention(s.kernel_element(), kernel, qkv.data_, context.data_,
                                s.view.cu_seqlens, s.view.num_sequences, s.view.max_seq_len,
                                static_cast<int>(num_heads), static_cast<int>(head_dim), s.stream),
             "attention kernel");
  if (!probs) return;
  std::vector<int64_t> offsets(static_cast<size_t>(batch.num_sequences()));
  int64_t total = 0;
  for (int64_t i = 0; i < batch.num_sequences(); ++i) {
    offsets[static_cast<size_t>(i)] = total;
    total += num_heads * batch.seq_len(i) * batch.seq_len(i);
  }
  s.grow(s.probs, total * 4, "attention probabilities");
  s.grow(s.prob_offsets, static_cast<int64_t>(offsets.size() * 8), "attention probability offsets");
  check_cuda(cudaMemcpyAsync(s.prob_offsets.data(), offsets.data(), offsets.size() * 8,
                             cudaMemcpyHostToDevice, s.stream),
             "uploading probability offsets");
  check_cuda(
      kernels::attention_probs(
          s.kernel_element(), qkv.data_, static_cast<float*>(s.probs.data()), s.view.cu_seqlens,
          static_cast<const int64_t*>(s.prob_offsets.data()), s.view.num_sequences,
          s.view.max_seq_len, static_cast<int>(num_heads), static_cast<int>(head_dim), s.stream),
      "attention probabilities kernel");
  probs->resize(static_cast<size_t>(total));
  check_cuda(cudaMemcpyAsync(probs->data(), s.probs.data(), static_cast<size_t>(total) * 4,
                             cudaMemcpyDeviceToHost, s.stream),
             "downloading attention probabilities");
  synchronize();
}

void CudaBackend::pool(const Matrix& hidden, const Batch& batch, Pooling pooling, Matrix& out) {
  Impl& s = *impl_;
  s.enter();
  if (hidden.rows() != batch.num_tokens() || hidden.element() != s.activation)
    throw Error("CUDA pool: hidden " + shape(hidden.rows(), hidden.cols()) + " for " +
                std::to_string(batch.num_tokens()) + " tokens");
  s.ensure_batch(batch);
  resize(out, batch.num_sequences(), hidden.cols(), s.activation);
  check_cuda(kernels::pool(s.kernel_element(), hidden.data_, s.view.cu_seqlens,
                           static_cast<int>(batch.num_sequences()), static_cast<int>(hidden.cols()),
                           pooling == Pooling::mean, out.data_, s.stream),
             "pooling kernel");
}

void CudaBackend::gather_rows(const Matrix& in, std::span<const int64_t> rows, Matrix& out) {
  Impl& s = *impl_;
  s.enter();
  for (const int64_t r : rows)
    if (r < 0 || r >= in.rows())
      throw Error("CUDA gather_rows: row " + std::to_string(r) + " outside 0.." +
                  std::to_string(in.rows() - 1));
  if (in.element() != s.activation)
    throw Error("CUDA gather_rows: the input is not in the activation type");
  resize(out, static_cast<int64_t>(rows.size()), in.cols(), s.activation);
  if (rows.empty()) return;
  const int64_t bytes = static_cast<int64_t>(rows.size() * sizeof(int64_t));
  synchronize();  // the pinned row buffer may still be read by the previous copy
  s.rows_staging.grow(bytes, "row indices");
  s.grow(s.rows_device, bytes, "row indices on the device");
  std::memcpy(s.rows_staging.data(), rows.data(), static_cast<size_t>(bytes));
  check_cuda(cudaMemcpyAsync(s.rows_device.data(), s.rows_staging.data(),
                             static_cast<size_t>(bytes), cudaMemcpyHostToDevice, s.stream),
             "uploading row indices");
  check_cuda(kernels::gather_rows(
                 s.kernel_element(), in.data_, static_cast<const int64_t*>(s.rows_device.data()),
                 static_cast<int>(rows.size()), static_cast<int>(in.cols()), out.data_, s.stream),
             "gather kernel");
}

std::vector<float> CudaBackend::to_host(const Matrix& m) {
  Impl& s = *impl_;
  s.enter();
  const int64_t count = m.rows() * m.cols(), bytes = count * element_size(m.element());
  std::vector<float> out(static_cast<size_t>(count));
  if (count == 0) return out;
  synchronize();  // the pinned download buffer is free (and may grow)
  s.download.grow(bytes, "downloads");
  check_cuda(cudaMemcpyAsync(s.download.data(), m.data_, static_cast<size_t>(bytes),
                             cudaMemcpyDeviceToHost, s.stream),
             "downloading a result");
  synchronize();
  if (m.element() == DType::f32) {
    std::memcpy(out.data(), s.download.data(), static_cast<size_t>(bytes));
  } else {
    const auto* half = static_cast<const uint16_t*>(s.download.data());
    const bool bf16 = m.element() == DType::bf16;
    for (int64_t i = 0; i < count; ++i)
      out[static_cast<size_t>(i)] = bf16 ? bf16_to_f32(half[i]) : f16_to_f32(half[i]);
  }
  return out;
}

void CudaBackend::from_host(std::span<const float> values, int64_t rows, int64_t cols,
                            Matrix& out) {
  Impl& s = *impl_;
  s.enter();
  if (static_cast<int64_t>(values.size()) != rows * cols)
    throw Error("CUDA from_host: " + std::to_string(values.size()) + " values for " +
                shape(rows, cols));
  resize(out, rows, cols, s.activation);
  const std::vector<uint16_t> converted =
      s.to_16bit(std::vector<float>(values.begin(), values.end()));
  check_cuda(cudaMemcpyAsync(out.data_, converted.data(), converted.size() * 2,
                             cudaMemcpyHostToDevice, s.stream),
             "uploading a matrix");
  synchronize();
}

}  // namespace tinybert
