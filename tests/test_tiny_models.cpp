// Exactness of converter + fp32 forward pass + heads on tiny random models, against goldens from
// an independent PyTorch reference (tools/make_tiny_models.py, float64).
#include <catch2/catch.hpp>
#include <cmath>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/backend/trace.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

struct TinyRun {
  std::unique_ptr<Model> model;
  json golden;
  Batch batch;
};

TinyRun convert_and_open(const std::string& name, const std::string& dtype = "auto") {
  const auto folder = test::test_data_dir() / "tiny" / name;
  TinyRun run{
      test::convert_model(folder, name, dtype), test::read_json(folder / "golden.json"), {}};
  for (const auto& seq : run.golden["sequences"]) {
    const auto ids = seq["input_ids"].get<std::vector<int32_t>>();
    const auto types = seq["token_type_ids"].get<std::vector<int32_t>>();
    const auto tasks = seq.value("task_type_ids", std::vector<int32_t>{});
    run.batch.add(ids, types, tasks);
  }
  return run;
}

// Largest |a - b| over a flat vector and the golden's nested arrays, sequence by sequence.
double max_abs_diff(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  return worst;
}

std::vector<double> flatten(const json& j) {
  std::vector<double> out;
  if (j.is_array()) {
    for (const auto& x : j) {
      const auto part = flatten(x);
      out.insert(out.end(), part.begin(), part.end());
    }
  } else {
    out.push_back(j.get<double>());
  }
  return out;
}

// Concatenates golden[key] over all sequences.
std::vector<double> golden_all(const json& golden, const std::string& key) {
  std::vector<double> out;
  for (const auto& seq : golden["sequences"]) {
    const auto part = flatten(seq.at(key));
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

double cosine(const std::vector<float>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += double(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

constexpr double kFp32Tolerance = 1e-5;  // fp32 activations vs the float64 reference

}  // namespace

TEST_CASE("tiny models: hidden states and pooling match PyTorch in one packed batch",
          "[tiny][exact]") {
  for (const std::string name :
       {"tiny-bert", "tiny-ernie", "tiny-mlm", "tiny-nli", "tiny-uie", "tiny-bert-onnx-int8"}) {
    INFO(name);
    TinyRun run = convert_and_open(name);
    CpuRefBackend backend;
    const Encoder encoder(*run.model, backend);
    Heads heads(*run.model, backend);
    Workspace<CpuRefBackend> ws;
    encoder.forward(run.batch, ws);
    CHECK(max_abs_diff(ws.hidden.to_vector(), golden_all(run.golden, "last_hidden_state")) <
          kFp32Tolerance);
    CHECK(max_abs_diff(heads.pool(ws.hidden, run.batch, Pooling::cls, false),
                       golden_all(run.golden, "pooled_cls")) < kFp32Tolerance);
    CHECK(max_abs_diff(heads.pool(ws.hidden, run.batch, Pooling::mean, false),
                       golden_all(run.golden, "pooled_mean")) < kFp32Tolerance);
    if (run.golden["sequences"][0].contains("pooler_output")) {
      REQUIRE(run.model->config().has_pooler);
      CHECK(max_abs_diff(heads.pooler_output(ws.hidden, run.batch),
                         golden_all(run.golden, "pooler_output")) < kFp32Tolerance);
    }
  }
}

TEST_CASE("tiny models: task heads match PyTorch", "[tiny][exact]") {
  CpuRefBackend backend;
  Workspace<CpuRefBackend> ws;
  SECTION("masked LM logits (pytorch_model.bin, fp16, tied decoder)") {
    TinyRun run = convert_and_open("tiny-mlm");
    CHECK(run.model->config().architecture == Architecture::masked_lm);
    CHECK(run.model->file().find("mlm.decoder.weight") == nullptr);  // tied: stored once
    const Encoder encoder(*run.model, backend);
    Heads heads(*run.model, backend);
    encoder.forward(run.batch, ws);
    std::vector<int64_t> all_rows(static_cast<size_t>(run.batch.num_tokens()));
    std::iota(all_rows.begin(), all_rows.end(), 0);
    CHECK(max_abs_diff(heads.mlm_logits(ws.hidden, all_rows),
                       golden_all(run.golden, "mlm_logits")) < kFp32Tolerance);
  }
  SECTION("sequence classification logits (NLI, entailment not at index 0)") {
    TinyRun run = convert_and_open("tiny-nli");
    CHECK(run.model->config().labels ==
          std::vector<std::string>{"contradiction", "entailment", "neutral"});
    const Encoder encoder(*run.model, backend);
    Heads heads(*run.model, backend);
    encoder.forward(run.batch, ws);
    CHECK(max_abs_diff(heads.classifier_logits(ws.hidden, run.batch),
                       golden_all(run.golden, "classifier_logits")) < kFp32Tolerance);
  }
  SECTION("UIE start/end probabilities (Paddle layout, task-type embeddings)") {
    TinyRun run = convert_and_open("tiny-uie");
    CHECK(run.model->config().task_type_vocab_size == 3);
    const Encoder encoder(*run.model, backend);
    Heads heads(*run.model, backend);
    encoder.forward(run.batch, ws);
    const auto probs = heads.uie_probabilities(ws.hidden);
    CHECK(max_abs_diff(probs.start, golden_all(run.golden, "uie_start_prob")) < kFp32Tolerance);
    CHECK(max_abs_diff(probs.end, golden_all(run.golden, "uie_end_prob")) < kFp32Tolerance);
  }
}

TEST_CASE("tiny models: stored dtypes stay close to fp32", "[tiny][dtype]") {
  // The fp32 engine on weights rounded to a lower precision: the error is the weights' rounding.
  // Tolerances per dtype (hidden states, values of order 1): f16 1e-2, bf16 5e-2, int8 per-row
  // cosine >= 0.999 for every token.
  TinyRun reference = convert_and_open("tiny-bert", "f32");
  for (const std::string dtype : {"f16", "bf16", "int8"}) {
    INFO(dtype);
    TinyRun run = convert_and_open("tiny-bert", dtype);
    CpuRefBackend backend;
    const Encoder encoder(*run.model, backend);
    Workspace<CpuRefBackend> ws;
    encoder.forward(run.batch, ws);
    const auto want = golden_all(reference.golden, "last_hidden_state");
    const auto got = ws.hidden.to_vector();
    if (dtype == "f16") CHECK(max_abs_diff(got, want) < 1e-2);
    if (dtype == "bf16") CHECK(max_abs_diff(got, want) < 5e-2);
    const int64_t hidden = run.model->config().hidden_size;
    double worst_cosine = 1;
    for (int64_t t = 0; t < run.batch.num_tokens(); ++t) {
      std::vector<float> row(got.begin() + t * hidden, got.begin() + (t + 1) * hidden);
      std::vector<double> ref(want.begin() + t * hidden, want.begin() + (t + 1) * hidden);
      worst_cosine = std::min(worst_cosine, cosine(row, ref));
    }
    CHECK(worst_cosine >= 0.999);
  }
}

TEST_CASE("packed batches give the same result as one sequence at a time", "[tiny][batch]") {
  TinyRun run = convert_and_open("tiny-ernie");
  CpuRefBackend backend;
  const Encoder encoder(*run.model, backend);
  Workspace<CpuRefBackend> packed, single;
  encoder.forward(run.batch, packed);
  for (int64_t s = 0; s < run.batch.num_sequences(); ++s) {
    Batch one;
    const auto b = run.batch.seq_begin(s), n = run.batch.seq_len(s);
    one.add(std::span(run.batch.input_ids).subspan(b, n),
            std::span(run.batch.token_type_ids).subspan(b, n),
            std::span(run.batch.task_type_ids).subspan(b, n));
    encoder.forward(one, single);
    for (int64_t i = 0; i < n * run.model->config().hidden_size; ++i)
      REQUIRE(single.hidden.data()[i] == Approx(packed.hidden.row(b)[i]).margin(1e-6));
  }
}

// The MLM head gathers the requested rows on the host (host_matrix.hpp gather_rows, unchecked):
// a row outside the batch must be refused before it is read (issue 16, 2d).
TEST_CASE("a masked-LM pass refuses rows outside its batch", "[tiny][errors]") {
  TinyRun run = convert_and_open("tiny-mlm");
  CpuRefBackend backend;
  DirectRunner runner(*run.model, backend);
  ForwardRequest request;
  request.batch.add(std::vector<int32_t>{101, 103, 102});
  request.head.kind = HeadKind::mlm_logits;
  for (int64_t row : {int64_t{3}, int64_t{-1}, int64_t{1} << 40}) {
    request.rows = {1, row};
    CHECK_THROWS_WITH(runner.run(request), Catch::Contains("is outside"));
  }
  request.rows = {0, 2};
  CHECK(runner.run(request).values.size() ==
        static_cast<size_t>(2 * run.model->config().vocab_size));
}

TEST_CASE("bad requests are rejected before any kernel runs", "[tiny][errors]") {
  TinyRun run = convert_and_open("tiny-bert");
  CpuRefBackend backend;
  DirectRunner runner(*run.model, backend);
  const auto expect_error = [&](const ForwardRequest& request, const std::string& fragment) {
    try {
      validate_request(request, run.model->config());
      FAIL("validate_request let through: " << fragment);
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
    CHECK_THROWS_WITH(runner.run(request), Catch::Contains(fragment));  // every runner validates
  };
  const auto with_batch = [](Batch batch) {
    ForwardRequest request;
    request.batch = std::move(batch);
    return request;
  };
  Batch too_big_id;
  too_big_id.add(std::vector<int32_t>{101, 100000, 102});
  expect_error(with_batch(too_big_id), "token id 100000");
  Batch bad_type;
  bad_type.add(std::vector<int32_t>{101, 102}, std::vector<int32_t>{0, 7});
  expect_error(with_batch(bad_type), "token type id 7");
  Batch too_long;
  too_long.add(std::vector<int32_t>(
      static_cast<size_t>(run.model->config().max_position_embeddings + 1), 101));
  expect_error(with_batch(too_long), "takes at most");
  expect_error(with_batch(Batch{}), "no sequences");
  CHECK_THROWS_AS(Batch{}.add(std::vector<int32_t>{}), Error);

  Batch ok;
  ok.add(std::vector<int32_t>{101, 102});
  Batch broken_packing = ok;
  broken_packing.cu_seqlens.back() = 5;
  expect_error(with_batch(broken_packing), "cu_seqlens ends at 5");
  Batch empty_sequence = ok;
  empty_sequence.cu_seqlens.push_back(2);
  empty_sequence.position_offsets.push_back(0);
  expect_error(with_batch(empty_sequence), "sequence 1 is empty");
  Batch missing_types = ok;
  missing_types.token_type_ids.pop_back();
  expect_error(with_batch(missing_types), "1 token type ids");
  ForwardRequest row_outside = with_batch(ok);
  row_outside.head.kind = HeadKind::mlm_logits;
  row_outside.rows = {2};
  expect_error(row_outside, "row 2 is outside");
  ForwardRequest wrong_head = with_batch(ok);
  wrong_head.head.kind = HeadKind::uie_spans;
  expect_error(wrong_head, "has no uie_spans head");
  ForwardRequest fine = with_batch(ok);
  CHECK_NOTHROW(validate_request(fine, run.model->config()));
  CHECK(runner.run(fine).values.size() == static_cast<size_t>(run.model->config().hidden_size));
}

TEST_CASE("the workspace plan follows the encoder's order of operations", "[tiny]") {
  TinyRun run = convert_and_open("tiny-bert");
  const ModelConfig& c = run.model->config();
  const WorkspacePlan plan = workspace_plan(*run.model);
  CHECK(plan.at(WorkspaceBuffer::qkv).cols == 3 * c.hidden_size);
  CHECK(plan.at(WorkspaceBuffer::intermediate).cols == c.intermediate_size);
  CHECK(plan.at(WorkspaceBuffer::hidden).cols == c.hidden_size);
  // qkv is dead once attention has read it, intermediate once the second FFN GEMM has: one storage
  CHECK(plan.at(WorkspaceBuffer::qkv).group == plan.at(WorkspaceBuffer::intermediate).group);
  // the residual stream is live all through; a GEMM's input and output never share
  for (WorkspaceBuffer b :
       {WorkspaceBuffer::qkv, WorkspaceBuffer::context, WorkspaceBuffer::projected})
    CHECK(plan.at(b).group != plan.at(WorkspaceBuffer::hidden).group);
  CHECK(plan.at(WorkspaceBuffer::context).group != plan.at(WorkspaceBuffer::projected).group);
  CHECK(plan.at(WorkspaceBuffer::context).group != plan.at(WorkspaceBuffer::qkv).group);
  CHECK(plan.at(WorkspaceBuffer::projected).group != plan.at(WorkspaceBuffer::intermediate).group);
  CHECK(plan.groups == 4);
}
