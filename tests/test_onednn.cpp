// The oneDNN backend against the fp32 reference and the PyTorch goldens, per precision.
// Tolerances: f32 1e-4 abs on hidden states (other summation order); bf16 and int8 by cosine
// (CLS of bge >= 0.999 bf16, >= 0.99 int8, as issue 6 states), tiny models per token.
#include <catch2/catch.hpp>
#include <cmath>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/backend/onednn.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

Batch golden_batch(const json& golden) {
  Batch batch;
  for (const auto& seq : golden["sequences"])
    batch.add(seq["input_ids"].get<std::vector<int32_t>>(), seq["token_type_ids"].get<std::vector<int32_t>>(),
              seq.value("task_type_ids", std::vector<int32_t>{}));
  return batch;
}

std::vector<double> golden_hidden(const json& golden) {
  std::vector<double> out;
  for (const auto& seq : golden["sequences"])
    for (const auto& row : seq["last_hidden_state"])
      for (double x : row) out.push_back(x);
  return out;
}

double cosine(const float* a, const double* b, int64_t n) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    dot += a[i] * b[i];
    na += double(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

// Worst per-token cosine and max-abs difference of hidden states against the golden.
std::pair<double, double> compare(const HostMatrix& hidden, const std::vector<double>& want) {
  double worst_cosine = 1, worst_abs = 0;
  for (int64_t t = 0; t < hidden.rows(); ++t) {
    worst_cosine = std::min(worst_cosine, cosine(hidden.row(t), want.data() + t * hidden.cols(), hidden.cols()));
    for (int64_t c = 0; c < hidden.cols(); ++c)
      worst_abs = std::max(worst_abs, std::fabs(hidden.row(t)[c] - want[t * hidden.cols() + c]));
  }
  return {worst_cosine, worst_abs};
}

}  // namespace

TEST_CASE("oneDNN backend matches the PyTorch goldens on the tiny models", "[onednn][tiny]") {
  for (const std::string name : {"tiny-bert", "tiny-ernie", "tiny-uie", "tiny-bert-onnx-int8"}) {
    const auto folder = test::test_data_dir() / "tiny" / name;
    const auto model = test::convert_model(folder, name);
    const json golden = test::read_json(folder / "golden.json");
    const Batch batch = golden_batch(golden);
    const auto want = golden_hidden(golden);
    for (Precision p : {Precision::f32, Precision::bf16, Precision::int8}) {
      INFO(name << " " << precision_name(p));
      OneDnnBackend backend(p);
      const Encoder encoder(*model, backend);
      Workspace<OneDnnBackend> ws;
      encoder.forward(batch, ws);
      const auto [worst_cosine, worst_abs] = compare(ws.hidden, want);
      INFO("worst cosine " << worst_cosine << ", max abs " << worst_abs);
      if (p == Precision::f32) CHECK(worst_abs < 1e-4);
      if (p == Precision::bf16) CHECK(worst_cosine > 0.999);
      if (p == Precision::int8) CHECK(worst_cosine > 0.99);
    }
  }
}

TEST_CASE("oneDNN attention probabilities equal the reference's", "[onednn][attention]") {
  const auto folder = test::test_data_dir() / "tiny/tiny-bert";
  const auto model = test::convert_model(folder, "tiny-bert-probs");
  Batch batch;
  std::vector<int32_t> long_ids(60);  // several query blocks of 16, the last one partial
  for (size_t i = 0; i < long_ids.size(); ++i) long_ids[i] = static_cast<int32_t>(101 + i % 27);
  batch.add(long_ids);
  batch.add(std::vector<int32_t>{101, 110, 102});
  CpuRefBackend ref;
  OneDnnBackend fast(Precision::f32, 16);
  Workspace<CpuRefBackend> ref_ws;
  Workspace<OneDnnBackend> fast_ws;
  ref_ws.record_last_attention = fast_ws.record_last_attention = true;
  Encoder(*model, ref).forward(batch, ref_ws);
  Encoder(*model, fast).forward(batch, fast_ws);
  REQUIRE(fast_ws.last_attention.size() == ref_ws.last_attention.size());
  double worst = 0;
  for (size_t i = 0; i < ref_ws.last_attention.size(); ++i)
    worst = std::max(worst, double(std::fabs(fast_ws.last_attention[i] - ref_ws.last_attention[i])));
  CHECK(worst < 1e-5);
  Workspace<OneDnnBackend> quiet;
  Encoder(*model, fast).forward(batch, quiet);
  CHECK(quiet.last_attention.empty());  // not recorded unless asked for
}

TEST_CASE("oneDNN backend on bge-small-zh: CLS embeddings per precision", "[onednn][bge]") {
  const auto folder = test::shared_path_or_skip("models/bge-small-zh-v1.5");
  const auto model = test::convert_model(folder, "bge");
  const json ref = test::read_json(folder / "reference_outputs.json");
  Batch batch;
  for (const auto& entry : ref["entries"]) batch.add(entry["input_ids"].get<std::vector<int32_t>>());
  for (Precision p : {Precision::f32, Precision::bf16, Precision::int8}) {
    OneDnnBackend backend(p);
    const Encoder encoder(*model, backend);
    Heads heads(*model, backend);
    Workspace<OneDnnBackend> ws;
    encoder.forward(batch, ws);
    const auto cls = heads.pool(ws.hidden, batch, Pooling::cls, false);
    double worst = 1;
    for (size_t i = 0; i < ref["entries"].size(); ++i) {
      const auto want = ref["entries"][i]["cls_fp32_activations"].get<std::vector<double>>();
      worst = std::min(worst, cosine(cls.data() + i * want.size(), want.data(), static_cast<int64_t>(want.size())));
    }
    INFO(precision_name(p) << ": worst CLS cosine " << worst);
    const double bound = p == Precision::f32 ? 0.99999 : p == Precision::bf16 ? 0.999 : 0.99;
    CHECK(worst >= bound);
  }
}
