// Each op of the CUDA backend against the fp32 reference backend (CpuRefBackend) on random inputs
// of odd sizes: sequence lengths 1, 7, 129, 512 alone and in mixed packed batches, f16 and bf16.
// The reference gets the inputs rounded as the device stores them, so what is measured is the
// kernel's own error. Every device buffer starts poisoned (NaN), so an element a kernel forgets to
// write fails the finiteness check. Tagged [cuda]: needs a GPU (the run skips without one).
#include <catch2/catch.hpp>

#include "cuda_test_support.hpp"
#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/quantize.hpp"

using namespace tinybert;
using Element = CudaBackend::Element;

namespace {

const std::vector<std::vector<int64_t>> kLengthSets = {
    {1}, {7}, {129}, {512}, {1, 7, 129, 512}, {3, 64, 65, 1, 200}};

CudaOptions poisoned(CudaPrecision precision) {
  CudaOptions options;
  options.precision = precision;
  options.poison_allocations = true;
  return options;
}

// About twice what storing an fp32 result of magnitude `scale` in `element` costs.
double storage_tolerance(Element element, double scale) {
  return (element == Element::bf16 ? 8e-3 : 1e-3) * std::max(1.0, scale);
}

HostMatrix host_matrix(const std::vector<float>& values, int64_t rows, int64_t cols) {
  HostMatrix m;
  m.resize(rows, cols);
  std::copy(values.begin(), values.end(), m.data());
  return m;
}

const char* name(Element e) {
  return e == Element::f16 ? "f16" : e == Element::bf16 ? "bf16" : "f32";
}

const char* name(Activation a) {
  switch (a) {
    case Activation::none:
      return "none";
    case Activation::gelu:
      return "gelu";
    case Activation::tanh:
      return "tanh";
    case Activation::sigmoid:
      return "sigmoid";
  }
  return "?";
}

#define CHECK_CLOSE(errors, tolerance)                                                      \
  do {                                                                                      \
    const test::Errors e_ = (errors);                                                       \
    INFO("max-abs " << e_.max_abs << ", nmse " << e_.nmse << ", max |ref| " << e_.max_ref); \
    CHECK(e_.finite);                                                                       \
    CHECK(e_.max_abs <= (tolerance));                                                       \
  } while (0)

}  // namespace

TEST_CASE("CUDA embed: gather of 3-4 tables + LayerNorm", "[cuda][ops]") {
  test::require_gpu();
  for (CudaPrecision precision : {CudaPrecision::f16, CudaPrecision::bf16}) {
    for (int64_t hidden : {200, 768}) {
      CudaBackend gpu(poisoned(precision));
      const Element element = gpu.activation_element();
      INFO(name(element) << " hidden " << hidden);
      std::mt19937 rng(1);
      const int64_t vocab = 50, positions = 600, types = 2, tasks = 3;
      const auto word = test::random_normal(static_cast<size_t>(vocab * hidden), rng);
      const auto position = test::random_normal(static_cast<size_t>(positions * hidden), rng, 0.5f);
      const auto type = test::random_normal(static_cast<size_t>(types * hidden), rng, 0.5f);
      const auto task = test::random_normal(static_cast<size_t>(tasks * hidden), rng, 0.5f);
      const auto gamma = test::random_normal(static_cast<size_t>(hidden), rng, 0.1f, 1.0f);
      const auto beta = test::random_normal(static_cast<size_t>(hidden), rng, 0.1f);
      const auto r_word = test::rounded(word, element),
                 r_position = test::rounded(position, element),
                 r_type = test::rounded(type, element), r_task = test::rounded(task, element);
      const NormWeights norm{test::f32_weight(gamma, {hidden}), test::f32_weight(beta, {hidden})};
      const EmbeddingWeights device_weights{
          test::f32_weight(word, {vocab, hidden}), test::f32_weight(position, {positions, hidden}),
          test::f32_weight(type, {types, hidden}), test::f32_weight(task, {tasks, hidden}), norm};
      const EmbeddingWeights reference_weights{test::f32_weight(r_word, {vocab, hidden}),
                                               test::f32_weight(r_position, {positions, hidden}),
                                               test::f32_weight(r_type, {types, hidden}),
                                               test::f32_weight(r_task, {tasks, hidden}), norm};
      CpuRefBackend ref;
      const auto ref_embeddings = ref.prepare(reference_weights, 1e-12f);
      const auto gpu_embeddings = gpu.prepare(device_weights, 1e-12f);
      for (const auto& lengths : kLengthSets) {
        INFO("sequences " << lengths.size() << ", first length " << lengths[0]);
        const Batch batch = test::random_batch(lengths, vocab, types, tasks, rng);
        HostMatrix want;
        ref.embed(ref_embeddings, batch, want);
        CudaBackend::Matrix got;
        gpu.embed(gpu_embeddings, batch, got);
        const auto errors = test::compare(gpu.to_host(got), want.to_vector());
        CHECK_CLOSE(errors, storage_tolerance(element, errors.max_ref));
      }
    }
  }
}

TEST_CASE("CUDA add_layernorm and layernorm", "[cuda][ops]") {
  test::require_gpu();
  for (CudaPrecision precision : {CudaPrecision::f16, CudaPrecision::bf16}) {
    CudaBackend gpu(poisoned(precision));
    const Element element = gpu.activation_element();
    for (int64_t cols : {200, 768, 1024}) {
      for (int64_t rows : {1, 7, 129, 649}) {
        INFO(name(element) << " [" << rows << "," << cols << "]");
        std::mt19937 rng(static_cast<unsigned>(rows * 31 + cols));
        const auto x = test::rounded(
            test::random_normal(static_cast<size_t>(rows * cols), rng, 1.0f, 0.5f), element);
        const auto residual = test::rounded(
            test::random_normal(static_cast<size_t>(rows * cols), rng, 2.0f), element);
        const auto gamma = test::random_normal(static_cast<size_t>(cols), rng, 0.1f, 1.0f);
        const auto beta = test::random_normal(static_cast<size_t>(cols), rng, 0.1f);
        const NormWeights weights{test::f32_weight(gamma, {cols}), test::f32_weight(beta, {cols})};
        CpuRefBackend ref;
        const auto ref_norm = ref.prepare(weights, 1e-5f);
        const auto gpu_norm = gpu.prepare(weights, 1e-5f);

        HostMatrix want = host_matrix(x, rows, cols);
        ref.add_layernorm(ref_norm, host_matrix(residual, rows, cols), want);
        CudaBackend::Matrix got, gpu_residual;
        gpu.from_host(x, rows, cols, got);
        gpu.from_host(residual, rows, cols, gpu_residual);
        gpu.add_layernorm(gpu_norm, gpu_residual, got);
        auto errors = test::compare(gpu.to_host(got), want.to_vector());
        CHECK_CLOSE(errors, storage_tolerance(element, errors.max_ref));

        want = host_matrix(x, rows, cols);
        ref.layernorm(ref_norm, want);
        gpu.from_host(x, rows, cols, got);
        gpu.layernorm(gpu_norm, got);
        errors = test::compare(gpu.to_host(got), want.to_vector());
        CHECK_CLOSE(errors, storage_tolerance(element, errors.max_ref));
      }
    }
  }
}

TEST_CASE("CUDA linear f16/bf16: cuBLASLt with bias and GELU epilogues, tanh and sigmoid",
          "[cuda][ops]") {
  test::require_gpu();
  struct Shape {
    int64_t in, out;
  };
  for (CudaPrecision precision : {CudaPrecision::f16, CudaPrecision::bf16}) {
    for (bool exact_gelu : {false, true}) {
      CudaOptions options = poisoned(precision);
      options.exact_gelu = exact_gelu;
      CudaBackend gpu(options);
      const Element element = gpu.activation_element();
      for (const Shape shape : {Shape{96, 200}, Shape{768, 3072}, Shape{3072, 768}}) {
        std::mt19937 rng(static_cast<unsigned>(shape.in + shape.out));
        const auto weight = test::random_normal(static_cast<size_t>(shape.in * shape.out), rng,
                                                1.0f / std::sqrt(static_cast<float>(shape.in)));
        const auto bias = test::random_normal(static_cast<size_t>(shape.out), rng, 0.5f);
        const auto r_weight = test::rounded(weight, element), r_bias = test::rounded(bias, element);
        CpuRefBackend ref;
        const auto ref_linear =
            ref.prepare(LinearWeights{test::f32_weight(r_weight, {shape.out, shape.in}),
                                      test::f32_weight(r_bias, {shape.out})});
        const auto gpu_linear = gpu.prepare(LinearWeights{
            test::f32_weight(weight, {shape.out, shape.in}), test::f32_weight(bias, {shape.out})});
        REQUIRE(gpu_linear.kind == CudaBackend::Linear::Kind::gemm16);
        for (int64_t rows : {1, 7, 129, 512}) {
          const auto x = test::rounded(
              test::random_normal(static_cast<size_t>(rows * shape.in), rng), element);
          CudaBackend::Matrix in, out;
          gpu.from_host(x, rows, shape.in, in);
          for (Activation act :
               {Activation::none, Activation::gelu, Activation::tanh, Activation::sigmoid}) {
            INFO(name(element) << " exact_gelu " << exact_gelu << " [" << rows << "," << shape.in
                               << "] x [" << shape.out << "," << shape.in << "]^T, " << name(act));
            HostMatrix want;
            ref.linear(ref_linear, host_matrix(x, rows, shape.in), want, act);
            gpu.linear(gpu_linear, in, out, act);
            const auto errors = test::compare(gpu.to_host(out), want.to_vector());
            // cuBLASLt's fused GELU is the tanh form: up to 4.8e-4 from the erf GELU
            const double approximation = act == Activation::gelu && !exact_gelu ? 5e-4 : 0.0;
            CHECK_CLOSE(errors, storage_tolerance(element, errors.max_ref) + approximation);
          }
        }
      }
    }
  }
}

TEST_CASE("CUDA linear int8: IMMA GEMM with per-token and per-channel scales", "[cuda][ops]") {
  test::require_gpu();
  CudaBackend gpu(poisoned(CudaPrecision::int8));
  struct Shape {
    int64_t in, out, rows;
  };
  for (const Shape shape :
       {Shape{96, 200, 1}, Shape{96, 200, 7}, Shape{768, 3072, 129}, Shape{3072, 768, 512},
        Shape{64, 64, 4100}}) {  // 4100 rows: more than one chunk of 4096
    std::mt19937 rng(static_cast<unsigned>(shape.in * 7 + shape.rows));
    const auto weight = test::random_normal(static_cast<size_t>(shape.in * shape.out), rng,
                                            1.0f / std::sqrt(static_cast<float>(shape.in)));
    const auto bias = test::random_normal(static_cast<size_t>(shape.out), rng, 0.5f);
    const auto x = test::rounded(
        test::random_normal(static_cast<size_t>(shape.rows * shape.in), rng), Element::f16);
    // weights stored as f32 (quantised at load) and as i8 with row scales (used as stored)
    std::vector<int8_t> q_weight(weight.size());
    std::vector<float> weight_scales(static_cast<size_t>(shape.out));
    quantize_rows_symmetric(weight.data(), shape.out, shape.in, q_weight.data(),
                            weight_scales.data(), 127);
    const Weight stored_i8{TensorView{DType::i8, {shape.out, shape.in}, q_weight.data()},
                           weight_scales.data()};
    // the int8 computation, emulated in double: per-token scales from the fp16 input
    std::vector<int8_t> q_x(x.size());
    std::vector<float> x_scales(static_cast<size_t>(shape.rows));
    quantize_rows_symmetric(x.data(), shape.rows, shape.in, q_x.data(), x_scales.data(), 127);
    std::vector<float> exact_int8(static_cast<size_t>(shape.rows * shape.out));
    float max_step = 0;  // one quantisation step of x flipped (rounding ties), in output units
    for (int64_t r = 0; r < shape.rows; ++r)
      for (int64_t o = 0; o < shape.out; ++o) {
        int64_t acc = 0;
        for (int64_t c = 0; c < shape.in; ++c)
          acc += int64_t(q_x[r * shape.in + c]) * q_weight[o * shape.in + c];
        exact_int8[r * shape.out + o] =
            static_cast<float>(double(acc) * x_scales[r] * weight_scales[o] + bias[o]);
        max_step = std::max(max_step, x_scales[r] * weight_scales[o] * 127);
      }
    CpuRefBackend ref;
    const auto ref_linear = ref.prepare(LinearWeights{
        test::f32_weight(weight, {shape.out, shape.in}), test::f32_weight(bias, {shape.out})});
    HostMatrix fp32;
    ref.linear(ref_linear, host_matrix(x, shape.rows, shape.in), fp32);
    for (bool as_stored : {false, true}) {
      INFO("[" << shape.rows << "," << shape.in << "] x [" << shape.out << "," << shape.in
               << "]^T, weights " << (as_stored ? "stored i8" : "quantised at load"));
      const auto gpu_linear = gpu.prepare(
          LinearWeights{as_stored ? stored_i8 : test::f32_weight(weight, {shape.out, shape.in}),
                        test::f32_weight(bias, {shape.out})});
      REQUIRE(gpu_linear.kind == CudaBackend::Linear::Kind::gemm_int8);
      CudaBackend::Matrix in, out;
      gpu.from_host(x, shape.rows, shape.in, in);
      gpu.linear(gpu_linear, in, out);
      const auto got = gpu.to_host(out);
      const auto errors = test::compare(got, exact_int8);
      CHECK_CLOSE(errors, storage_tolerance(Element::f16, errors.max_ref) + 2 * max_step);
      const auto vs_fp32 = test::compare(got, fp32.to_vector());
      INFO("vs fp32: nmse " << vs_fp32.nmse);
      CHECK(vs_fp32.nmse <= 1e-3);
      // GELU through our epilogue (exact erf)
      HostMatrix want;
      ref.linear(ref_linear, host_matrix(x, shape.rows, shape.in), want, Activation::gelu);
      gpu.linear(gpu_linear, in, out, Activation::gelu);
      CHECK(test::compare(gpu.to_host(out), want.to_vector()).nmse <= 1e-3);
    }
  }
}

TEST_CASE("CUDA small linear (classifier, UIE start/end) in fp32", "[cuda][ops]") {
  test::require_gpu();
  for (CudaPrecision precision : {CudaPrecision::f16, CudaPrecision::bf16, CudaPrecision::int8}) {
    CudaBackend gpu(poisoned(precision));
    const Element element = gpu.activation_element();
    for (int64_t out_features : {1, 3, 15}) {
      std::mt19937 rng(static_cast<unsigned>(out_features));
      const int64_t in_features = 200, rows = 129;
      const auto weight =
          test::random_normal(static_cast<size_t>(in_features * out_features), rng, 0.1f);
      const auto bias = test::random_normal(static_cast<size_t>(out_features), rng);
      const auto x =
          test::rounded(test::random_normal(static_cast<size_t>(rows * in_features), rng), element);
      const LinearWeights weights{test::f32_weight(weight, {out_features, in_features}),
                                  test::f32_weight(bias, {out_features})};
      CpuRefBackend ref;
      const auto gpu_linear = gpu.prepare(weights);
      REQUIRE(gpu_linear.kind == CudaBackend::Linear::Kind::small_f32);
      CudaBackend::Matrix in, out;
      gpu.from_host(x, rows, in_features, in);
      for (Activation act : {Activation::none, Activation::sigmoid}) {
        INFO(name(element) << " outputs " << out_features << " " << name(act));
        HostMatrix want;
        ref.linear(ref.prepare(weights), host_matrix(x, rows, in_features), want, act);
        gpu.linear(gpu_linear, in, out, act);
        CHECK(out.element() == Element::f32);
        const auto errors = test::compare(gpu.to_host(out), want.to_vector());
        CHECK_CLOSE(errors, 1e-5 * std::max(1.0, errors.max_ref));
      }
    }
  }
}

TEST_CASE("CUDA attention: simple and tensor-core kernels over packed variable-length batches",
          "[cuda][ops]") {
  test::require_gpu();
  struct Variant {
    CudaAttentionKernel kernel;
    int64_t head_dim;
  };
  const std::vector<Variant> variants = {
      {CudaAttentionKernel::simple, 8},       {CudaAttentionKernel::simple, 32},
      {CudaAttentionKernel::simple, 64},      {CudaAttentionKernel::simple, 96},
      {CudaAttentionKernel::simple, 256},     {CudaAttentionKernel::tensor_core, 64},
      {CudaAttentionKernel::tensor_core, 128}};
  const int64_t num_heads = 3;
  for (CudaPrecision precision : {CudaPrecision::f16, CudaPrecision::bf16}) {
    for (const Variant& variant : variants) {
      CudaOptions options = poisoned(precision);
      options.attention = variant.kernel;
      CudaBackend gpu(options);
      const Element element = gpu.activation_element();
      const int64_t hidden = num_heads * variant.head_dim;
      for (const auto& lengths : kLengthSets) {
        std::mt19937 rng(
            static_cast<unsigned>(variant.head_dim * 1000 + lengths.size() * 10 + lengths[0]));
        const Batch batch = test::random_batch(lengths, 10, 1, 1, rng);
        const int64_t tokens = batch.num_tokens();
        const auto qkv = test::rounded(
            test::random_normal(static_cast<size_t>(tokens * 3 * hidden), rng), element);
        INFO(name(element) << (variant.kernel == CudaAttentionKernel::simple ? " simple"
                                                                             : " tensor-core")
                           << " head_dim " << variant.head_dim << ", sequences " << lengths.size()
                           << ", first length " << lengths[0]);
        CpuRefBackend ref;
        HostMatrix want;
        ref.attention(host_matrix(qkv, tokens, 3 * hidden), batch, num_heads, want);
        CudaBackend::Matrix gpu_qkv, got;
        gpu.from_host(qkv, tokens, 3 * hidden, gpu_qkv);
        gpu.attention(gpu_qkv, batch, num_heads, got);
        const auto errors = test::compare(gpu.to_host(got), want.to_vector());
        // the tensor-core kernel also rounds the probabilities to 16 bits before P V
        CHECK_CLOSE(errors, 2 * storage_tolerance(element, errors.max_ref));
        CHECK(errors.nmse <= (element == Element::bf16 ? 1e-4 : 2e-6));
      }
    }
  }
}

TEST_CASE("CUDA attention probabilities for attribution", "[cuda][ops]") {
  test::require_gpu();
  CudaBackend gpu(poisoned(CudaPrecision::f16));
  const int64_t num_heads = 4, head_dim = 64, hidden = num_heads * head_dim;
  std::mt19937 rng(5);
  const Batch batch = test::random_batch({7, 1, 129, 30}, 10, 1, 1, rng);
  const auto qkv = test::rounded(
      test::random_normal(static_cast<size_t>(batch.num_tokens() * 3 * hidden), rng), Element::f16);
  CpuRefBackend ref;
  HostMatrix want_context;
  std::vector<float> want_probs, got_probs;
  ref.attention(host_matrix(qkv, batch.num_tokens(), 3 * hidden), batch, num_heads, want_context,
                &want_probs);
  CudaBackend::Matrix gpu_qkv, got;
  gpu.from_host(qkv, batch.num_tokens(), 3 * hidden, gpu_qkv);
  gpu.attention(gpu_qkv, batch, num_heads, got, &got_probs);
  const auto errors = test::compare(got_probs, want_probs);
  CHECK_CLOSE(errors, 1e-5);
}

TEST_CASE("CUDA pool (CLS, mean) and gather_rows", "[cuda][ops]") {
  test::require_gpu();
  for (CudaPrecision precision : {CudaPrecision::f16, CudaPrecision::bf16}) {
    CudaBackend gpu(poisoned(precision));
    const Element element = gpu.activation_element();
    std::mt19937 rng(9);
    const Batch batch = test::random_batch({1, 7, 129, 512, 2}, 10, 1, 1, rng);
    const int64_t cols = 200;
    const auto hidden = test::rounded(
        test::random_normal(static_cast<size_t>(batch.num_tokens() * cols), rng), element);
    CpuRefBackend ref;
    CudaBackend::Matrix gpu_hidden, got;
    gpu.from_host(hidden, batch.num_tokens(), cols, gpu_hidden);
    for (Pooling pooling : {Pooling::cls, Pooling::mean}) {
      INFO(name(element) << (pooling == Pooling::cls ? " cls" : " mean"));
      HostMatrix want;
      ref.pool(host_matrix(hidden, batch.num_tokens(), cols), batch, pooling, want);
      gpu.pool(gpu_hidden, batch, pooling, got);
      const auto errors = test::compare(gpu.to_host(got), want.to_vector());
      CHECK_CLOSE(errors, storage_tolerance(element, errors.max_ref));
    }
    const std::vector<int64_t> rows = {0, batch.num_tokens() - 1, 5, 5, 300};
    HostMatrix want;
    ref.gather_rows(host_matrix(hidden, batch.num_tokens(), cols), rows, want);
    gpu.gather_rows(gpu_hidden, rows, got);
    CHECK(test::compare(gpu.to_host(got), want.to_vector()).max_abs == 0);
    const std::vector<int64_t> bad = {batch.num_tokens()};
    CHECK_THROWS_AS(gpu.gather_rows(gpu_hidden, bad, got), Error);
  }
}
