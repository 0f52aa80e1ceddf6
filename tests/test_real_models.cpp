// End-to-end exactness on the real models in ../shared/models: converter -> tokenizer -> fp32
// forward -> heads, against each model's reference_outputs.json (PyTorch / Transformers.js).
#include <catch2/catch.hpp>
#include <cmath>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

std::unique_ptr<Model> convert_shared_model(const std::string& name) {
  return test::convert_model(test::shared_path_or_skip("models/" + name), name);
}

double cosine(const float* a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    dot += a[i] * b[i];
    na += double(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

}  // namespace

TEST_CASE("bge-small-zh from ONNX int8: tokens and CLS embeddings match the fp32 reference",
          "[real][bge]") {
  const auto model = convert_shared_model("bge-small-zh-v1.5");
  const json ref =
      test::read_json(test::shared_dir() / "models/bge-small-zh-v1.5/reference_outputs.json");
  CHECK(model->config().num_layers == 4);
  CHECK(model->file().at("layers.0.attention.qkv.weight").view.dtype == DType::i8);  // kept int8

  Batch batch;
  for (const auto& entry : ref["entries"]) {
    const Encoding e = model->tokenizer().encode(entry["sentence"].get<std::string>(), 512);
    INFO(entry["sentence"].get<std::string>());
    REQUIRE(e.ids == entry["input_ids"].get<std::vector<int32_t>>());
    batch.add(e.ids, e.type_ids);
  }
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ForwardRequest request;
  request.batch = batch;  // all 13 sentences (8..188 tokens) in one packed batch
  request.head = {HeadKind::pooled, Pooling::cls, false};
  const auto cls = runner.run(request).values;
  const int64_t hidden = model->config().hidden_size;
  double worst_cosine = 1, worst_abs = 0;
  for (size_t i = 0; i < ref["entries"].size(); ++i) {
    const auto want = ref["entries"][i]["cls_fp32_activations"].get<std::vector<double>>();
    REQUIRE(static_cast<int64_t>(want.size()) == hidden);
    worst_cosine = std::min(worst_cosine, cosine(cls.data() + i * hidden, want));
    for (int64_t c = 0; c < hidden; ++c)
      worst_abs = std::max(worst_abs, std::fabs(cls[i * hidden + c] - want[c]));
  }
  INFO("worst cosine " << worst_cosine << ", worst max-abs " << worst_abs);
  CHECK(worst_cosine >= 0.99999);
  CHECK(worst_abs <= 1e-3);
}

TEST_CASE("demo MLM from pytorch_model.bin: top-5 tokens and probabilities match PyTorch",
          "[real][mlm]") {
  const auto model = convert_shared_model("demo-mlm");
  const json ref = test::read_json(test::shared_dir() / "models/demo-mlm/reference_outputs.json");
  std::vector<std::string> texts;
  for (const auto& c : ref["cases"]) texts.push_back(c["text"].get<std::string>());
  for (size_t i = 0; i < texts.size(); ++i)
    REQUIRE(model->tokenizer().encode(texts[i], 512).ids ==
            ref["cases"][i]["input_ids"].get<std::vector<int32_t>>());

  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  FillMaskOptions top5;
  top5.top_k = 5;
  const auto results = fill_mask(runner, texts, top5);  // one packed batch
  double worst = 0;
  size_t masks = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& want_masks = ref["cases"][i]["masks"];
    REQUIRE(results[i].masks.size() == want_masks.size());
    for (size_t m = 0; m < want_masks.size(); ++m, ++masks) {
      const auto& got = results[i].masks[m];
      const auto& want = want_masks[m]["top5"];
      CHECK(got.token_index == want_masks[m]["position"].get<int64_t>());
      for (size_t k = 0; k < 5; ++k) {
        worst = std::max(worst,
                         std::fabs(got.candidates[k].probability - want[k]["prob"].get<double>()));
        // the same token at each rank, unless two neighbours tie within 1e-4
        if (got.candidates[k].id != want[k]["id"].get<int32_t>()) {
          bool tie = false;
          for (size_t j : {k - 1, k + 1})
            if (j < 5)
              tie |=
                  std::fabs(want[k]["prob"].get<double>() - want[j]["prob"].get<double>()) < 1e-4;
          CHECK(tie);
        }
      }
    }
  }
  INFO("worst |prob diff| " << worst);
  CHECK(masks == 20);
  CHECK(worst < 1e-4);
}

TEST_CASE("demo UIE from Paddle-layout safetensors: probabilities, spans and offsets match PyTorch",
          "[real][uie]") {
  const auto model = convert_shared_model("demo-uie");
  const json ref = test::read_json(test::shared_dir() / "models/demo-uie/reference_outputs.json");
  Batch batch;
  std::vector<Encoding> encodings;
  for (const auto& c : ref["cases"]) {
    Encoding e = model->tokenizer().encode_pair(c["prompt"].get<std::string>(),
                                                c["text"].get<std::string>(), 128);
    INFO(c["text"].get<std::string>());
    REQUIRE(e.ids == c["input_ids"].get<std::vector<int32_t>>());
    REQUIRE(e.type_ids == c["token_type_ids"].get<std::vector<int32_t>>());
    batch.add(e.ids, e.type_ids);
    encodings.push_back(std::move(e));
  }
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ForwardRequest request;
  request.batch = batch;
  request.head.kind = HeadKind::uie_spans;
  const ForwardResult probs = runner.run(request);
  double worst = 0;
  for (size_t i = 0; i < ref["cases"].size(); ++i) {
    const auto& c = ref["cases"][i];
    const Encoding& e = encodings[i];
    const int64_t text_start = c["text_token_start"].get<int64_t>(),
                  count = c["text_token_count"].get<int64_t>();
    const int64_t row = batch.seq_begin(static_cast<int64_t>(i)) + text_start;
    std::vector<float> start(probs.start.begin() + row, probs.start.begin() + row + count);
    std::vector<float> end(probs.end.begin() + row, probs.end.begin() + row + count);
    const auto want_start = c["start_prob_text"].get<std::vector<double>>();
    const auto want_end = c["end_prob_text"].get<std::vector<double>>();
    const auto want_offsets = c["text_offsets"].get<std::vector<std::vector<int32_t>>>();
    for (int64_t t = 0; t < count; ++t) {
      worst =
          std::max({worst, std::fabs(start[t] - want_start[t]), std::fabs(end[t] - want_end[t])});
      CHECK(e.offsets[text_start + t].start == want_offsets[t][0]);
      CHECK(e.offsets[text_start + t].end == want_offsets[t][1]);
    }
    const auto spans = decode_spans(start, end);
    REQUIRE(spans.size() == c["spans"].size());
    for (size_t s = 0; s < spans.size(); ++s) {
      const auto& want = c["spans"][s];
      CHECK(spans[s].start_token + text_start == want["start_token"].get<int64_t>());
      CHECK(spans[s].end_token + text_start == want["end_token"].get<int64_t>());
      CHECK(e.offsets[text_start + spans[s].start_token].start == want["start"].get<int32_t>());
      CHECK(e.offsets[text_start + spans[s].end_token].end == want["end"].get<int32_t>());
      CHECK(spans[s].probability == Approx(want["probability"].get<double>()).margin(1e-4));
    }
  }
  INFO("worst |prob diff| " << worst);
  CHECK(worst < 1e-4);
}
