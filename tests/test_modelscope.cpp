// ModelScope's published layouts (tests/data/modelscope: tiny random checkpoints written by
// tools/modelscope from a line-by-line PyTorch re-implementation of ModelScope's code, with float64
// goldens): converted as downloaded, and tinybert's answers against ModelScope's. Tolerances: the
// reference backend 1e-5 on logits and scores (float32 against float64); the oneDNN backends as
// the other parity tests: f32 1e-4, bf16 / int8 by cosine >= 0.99 per logit vector.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>

#include "test_support.hpp"
#include "tinybert/tasks/siamese_uie.hpp"
#include "tinybert/tinybert.hpp"
#ifdef TINYBERT_HAVE_ONEDNN
#include "tinybert/backend/onednn.hpp"
#endif

using namespace tinybert;
using nlohmann::json;

namespace {

std::filesystem::path folder(const std::string& name) {
  return test::test_data_dir() / "modelscope" / name;
}
json golden(const std::string& name) { return test::read_json(folder(name) / "golden.json"); }

double max_abs_difference(const std::vector<float>& got, const json& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(got[i] - want[i].get<double>()));
  return worst;
}

double cosine(const std::vector<float>& a, const json& b) {
  double dot = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double y = b[i].get<double>();
    dot += a[i] * y;
    aa += double(a[i]) * a[i];
    bb += y * y;
  }
  return dot / std::sqrt(aa * bb);
}

// A runner that counts the passes of each head kind (the SiameseUIE reuse test).
class CountingRunner final : public Runner {
 public:
  explicit CountingRunner(Runner& inner) : inner_(inner) {}
  ForwardResult run(ForwardRequest request) override {
    ++passes[request.head.kind];
    sequences[request.head.kind] += request.batch.num_sequences();
    return inner_.run(std::move(request));
  }
  const Model& model() const override { return inner_.model(); }
  std::string backend_name() const override { return inner_.backend_name(); }
  std::map<HeadKind, int64_t> passes, sequences;

 private:
  Runner& inner_;
};

// Every runner the build has: the reference, and oneDNN in each precision.
std::vector<std::pair<std::string, std::unique_ptr<Runner>>> all_runners(const Model& model) {
  std::vector<std::pair<std::string, std::unique_ptr<Runner>>> runners;
  runners.emplace_back("ref", make_runner(model, "ref"));
#ifdef TINYBERT_HAVE_ONEDNN
  for (const char* precision : {"f32", "bf16", "int8"})
    runners.emplace_back(precision, make_runner(model, precision));
#endif
  return runners;
}

}  // namespace

TEST_CASE("ModelScope folders convert as downloaded", "[modelscope][convert]") {
  const auto zero_shot = test::convert_model(folder("structbert-zero-shot"), "ms-zero-shot");
  CHECK(zero_shot->config().architecture == Architecture::sequence_classification);
  CHECK(zero_shot->config().modelscope_nli);
  CHECK(zero_shot->config().has_pooler);
  const auto siamese = test::convert_model(folder("siamese-uie"), "ms-siamese");
  CHECK(siamese->config().architecture == Architecture::siamese_uie);
  CHECK(siamese->config().num_layers == 4);
  CHECK(siamese->config().cross_layers == 2);  // from the tensor names, not N - 6
  for (const char* name : {"structbert-fill-mask", "structbert-fill-mask-st"}) {
    const auto mlm = test::convert_model(folder(name), std::string("ms-") + name);
    CHECK(mlm->config().architecture == Architecture::masked_lm);
    CHECK(!mlm->config().modelscope_nli);
  }
}

TEST_CASE("ModelScope fill-mask: ids and logits at the masks, both layouts",
          "[modelscope][fill-mask]") {
  for (const char* name : {"structbert-fill-mask", "structbert-fill-mask-st"}) {
    INFO(name);
    const json want = golden(name);
    const auto model = test::convert_model(folder(name), std::string("ms-fm-") + name);
    for (auto& [backend, runner] : all_runners(*model)) {
      INFO("backend " << backend);
      for (const json& sentence : want["sentences"]) {
        const Encoding e = model->tokenizer().encode(sentence["text"].get<std::string>(), 0);
        REQUIRE(e.ids == sentence["input_ids"].get<std::vector<int32_t>>());
        ForwardRequest request;
        request.head.kind = HeadKind::mlm_logits;
        request.batch.add(e.ids, e.type_ids);
        request.rows = sentence["mask_positions"].get<std::vector<int64_t>>();
        const std::vector<float> logits = runner->run(request).values;
        const auto vocab = static_cast<size_t>(model->config().vocab_size);
        for (size_t m = 0; m < request.rows.size(); ++m) {
          const std::vector<float> row(logits.begin() + m * vocab,
                                       logits.begin() + (m + 1) * vocab);
          if (backend == "ref")
            CHECK(max_abs_difference(row, sentence["mask_logits"][m]) < 1e-5);
          else if (backend == "f32")
            CHECK(max_abs_difference(row, sentence["mask_logits"][m]) < 1e-4);
          else
            CHECK(cosine(row, sentence["mask_logits"][m]) > 0.99);
        }
        FillMaskOptions options;
        options.top_k = 5;
        if (backend != "ref") continue;
        const auto result = fill_mask(*runner, {sentence["text"].get<std::string>()}, options);
        for (size_t m = 0; m < request.rows.size(); ++m)
          for (size_t k = 0; k < 5; ++k) {
            CHECK(result[0].masks[m].candidates[k].id ==
                  sentence["top5"][m]["ids"][k].get<int32_t>());
            CHECK(std::fabs(result[0].masks[m].candidates[k].probability -
                            sentence["top5"][m]["probs"][k].get<double>()) < 1e-5);
          }
      }
    }
  }
}

TEST_CASE("SiameseUIE: tokens, offsets, hint logits and ModelScope's output",
          "[modelscope][siamese]") {
  const json want = golden("siamese-uie");
  // the schemas as written: SiameseUIE's output follows the order of their keys
  std::ifstream golden_file(folder("siamese-uie") / "golden.json");
  const auto ordered = nlohmann::ordered_json::parse(golden_file);
  const auto model = test::convert_model(folder("siamese-uie"), "ms-siamese-pipeline");
  for (auto& [backend, runner] : all_runners(*model)) {
    INFO("backend " << backend);
    for (size_t case_index = 0; case_index < want["cases"].size(); ++case_index) {
      const json& c = want["cases"][case_index];
      INFO("case " << c["name"].get<std::string>());
      const std::string text = c["text"].get<std::string>();
      const Encoding e = model->tokenizer().encode(text, 0);
      REQUIRE(e.ids == c["text_input_ids"].get<std::vector<int32_t>>());
      for (size_t t = 0; t < e.size(); ++t) {
        CHECK(e.offsets[t].start == c["text_offsets"][t][0].get<int32_t>());
        CHECK(e.offsets[t].end == c["text_offsets"][t][1].get<int32_t>());
      }

      // The windows through the shared layers, then every hint of every call against them.
      ForwardRequest text_pass;
      text_pass.head.kind = HeadKind::siamese_text_states;
      std::vector<int32_t> cu{0};
      for (const json& w : c["windows"]) {
        const int64_t shift = w["shift"].get<int64_t>(), valid = w["valid"].get<int64_t>();
        text_pass.batch.add(
            std::span<const int32_t>(e.ids.data() + shift, static_cast<size_t>(valid)));
        cu.push_back(cu.back() + static_cast<int32_t>(valid));
      }
      const std::vector<float> states = runner->run(text_pass).values;
      double worst = 0, worst_cosine = 1;
      for (const json& call : c["calls"])
        for (const json& h : call["hints"]) {
          CHECK(model->tokenizer().encode(h["hint"].get<std::string>(), 128).ids ==
                h["input_ids"].get<std::vector<int32_t>>());
          ForwardRequest hint_pass;
          hint_pass.head.kind = HeadKind::siamese_logits;
          hint_pass.text_states = states;
          hint_pass.text_cu_seqlens = cu;
          const auto ids = h["input_ids"].get<std::vector<int32_t>>();
          // the hint once: the pass pairs it with every window
          hint_pass.batch.add(ids, std::vector<int32_t>(ids.size(), 1), {},
                              h["position_start"].get<int32_t>());
          const ForwardResult logits = runner->run(hint_pass);
          std::vector<double> head(e.size(), -1.0), tail(e.size(), -1.0);
          size_t offset = 0;
          for (size_t w = 0; w + 1 < cu.size(); ++w) {
            const int64_t len = cu[w + 1] - cu[w];
            detail::merge_window_logits(head, logits.start.data() + offset,
                                        c["windows"][w]["shift"].get<int64_t>(), len);
            detail::merge_window_logits(tail, logits.end.data() + offset,
                                        c["windows"][w]["shift"].get<int64_t>(), len);
            offset += static_cast<size_t>(len);
          }
          const std::vector<float> head_f(head.begin(), head.end()),
              tail_f(tail.begin(), tail.end());
          worst = std::max({worst, max_abs_difference(head_f, h["head_logits"]),
                            max_abs_difference(tail_f, h["tail_logits"])});
          worst_cosine = std::min(
              {worst_cosine, cosine(head_f, h["head_logits"]), cosine(tail_f, h["tail_logits"])});
        }
      INFO("worst |logit difference| " << worst << ", worst cosine " << worst_cosine);
      if (backend == "ref")
        CHECK(worst < 1e-5);
      else if (backend == "f32")
        CHECK(worst < 1e-4);
      else
        CHECK(worst_cosine > 0.99);

      // The pipeline: spans and offsets exactly ModelScope's (the goldens keep every logit at
      // least 1.3e-3 from the threshold, so f32 decides alike).
      if (backend != "ref" && backend != "f32") continue;
      const Schema schema = parse_schema(ordered["cases"][case_index]["schema"]);
      CountingRunner counting(*runner);
      const SiameseExtractor extractor(counting);
      const auto chains = extractor.run({text}, schema).front();
      json output = json::array();
      for (const SiameseChain& chain : chains) {
        json links = json::array();
        for (const SiameseSpan& s : chain)
          links.push_back({{"type", s.type}, {"span", s.span}, {"offset", {s.begin, s.end}}});
        output.push_back(links);
      }
      CHECK(output == c["output"]["output"]);
      // The text's windows went through the shared layers once for the whole schema; every hint
      // of every level went once against each window.
      CHECK(counting.passes[HeadKind::siamese_text_states] == 1);
      CHECK(counting.sequences[HeadKind::siamese_text_states] ==
            static_cast<int64_t>(c["windows"].size()));
      size_t hints = 0;
      for (const json& call : c["calls"]) hints += call["hints"].size();
      // each hint through the shared layers once, whatever the number of windows
      CHECK(counting.sequences[HeadKind::siamese_logits] == static_cast<int64_t>(hints));
      // Without the reuse (what the benchmark compares with): the same answers, and the text's
      // shared layers once per hint.
      SiameseOptions no_reuse;
      no_reuse.reuse_text_states = false;
      CountingRunner counting_again(*runner);
      CHECK(SiameseExtractor(counting_again, no_reuse).run({text}, schema).front().size() ==
            chains.size());
      CHECK(counting_again.passes[HeadKind::siamese_text_states] == static_cast<int64_t>(hints));
      // A small token budget splits a level into several passes: the same answers.
      SiameseOptions small_passes;
      small_passes.max_pass_tokens = 200;
      CountingRunner counting_split(*runner);
      const auto split = SiameseExtractor(counting_split, small_passes).run({text}, schema).front();
      CHECK(split.size() == chains.size());
      CHECK(counting_split.passes[HeadKind::siamese_logits] >
            counting.passes[HeadKind::siamese_logits]);
    }
  }
}

TEST_CASE("SiameseUIE: bad requests", "[modelscope][siamese][errors]") {
  const auto model = test::convert_model(folder("siamese-uie"), "ms-siamese-errors");
  CpuRefBackend backend;
  DirectRunner<CpuRefBackend> runner(*model, backend);
  const SiameseExtractor extractor(runner);
  const Schema schema = parse_schema(json{{"人物", nullptr}});
  CHECK_THROWS_WITH(extractor.run({"好", ""}, schema), Catch::Contains("text 2: empty text"));
  CHECK_THROWS_WITH(extractor.run({std::string("a\xff")}, schema),
                    Catch::Contains("text 1: invalid UTF-8"));
  ForwardRequest bad;
  bad.head.kind = HeadKind::siamese_logits;
  bad.batch.add(std::vector<int32_t>{101, 102}, {}, {}, 0);
  CHECK_THROWS_WITH(runner.run(bad), Catch::Contains("no text windows"));
  bad.text_cu_seqlens = {0, 2};
  bad.text_states.assign(2 * 32 - 1, 0.0f);
  CHECK_THROWS_WITH(runner.run(bad), Catch::Contains("63 text state values for 2 tokens"));
  bad.text_states.assign(2 * 32, 0.0f);
  CHECK_NOTHROW(runner.run(bad));
  bad.text_cu_seqlens = {0, 2, 2};
  CHECK_THROWS_WITH(runner.run(bad), Catch::Contains("text window 1 has 0 tokens"));
  bad.text_cu_seqlens = {0, 600};
  bad.text_states.assign(600 * 32, 0.0f);
  CHECK_THROWS_WITH(runner.run(bad),
                    Catch::Contains("text window 0 has 600 tokens (expected 1..512)"));
  bad.text_cu_seqlens = {0, 2};
  bad.text_states.assign(2 * 32, 0.0f);
  bad.batch.position_offsets[0] = 511;
  CHECK_THROWS_WITH(runner.run(bad), Catch::Contains("from position 511"));
  bad.batch.position_offsets[0] = 0;
  bad.record_attention = true;
  CHECK_THROWS_WITH(runner.run(bad), Catch::Contains("attention is not recorded"));
  ForwardRequest pooled;
  pooled.batch.add(std::vector<int32_t>{101, 102});
  CHECK_THROWS_WITH(runner.run(pooled), Catch::Contains("siamese_uie model has no pooled head"));
  const auto mlm = test::convert_model(folder("structbert-fill-mask"), "ms-not-siamese");
  DirectRunner<CpuRefBackend> mlm_runner(*mlm, backend);
  CHECK_THROWS_WITH(SiameseExtractor(mlm_runner), Catch::Contains("needs a siamese_uie model"));
}

TEST_CASE("ModelScope zero-shot: pairs, logits and the pipeline's scores",
          "[modelscope][zero-shot]") {
  const json want = golden("structbert-zero-shot");
  REQUIRE(want["entailment_id"] == 0);
  REQUIRE(want["contradiction_id"] == 2);
  const auto model = test::convert_model(folder("structbert-zero-shot"), "ms-zero-shot-scores");
  for (auto& [backend, runner] : all_runners(*model)) {
    INFO("backend " << backend);
    ZeroShotClassifier classifier(*runner);
    CHECK(classifier.mode() == ClassifyMode::modelscope_nli);
    CHECK(classifier.default_template() == "{}");
    for (const json& c : want["cases"]) {
      INFO("case " << c["name"].get<std::string>());
      const std::vector<std::string> labels =
          c["candidate_labels"].is_string()
              ? parse_label_list(c["candidate_labels"].get<std::string>())
              : c["candidate_labels"].get<std::vector<std::string>>();
      REQUIRE(labels == c["parsed_labels"].get<std::vector<std::string>>());
      const std::string text = c["text"].get<std::string>();
      const auto max_length = c["max_length"].get<size_t>();
      // Each (text, hypothesis) pair as ModelScope tokenizes it (longest-first truncation), and
      // its logits.
      ForwardRequest pairs;
      pairs.head.kind = HeadKind::classifier_logits;
      for (const json& pair : c["pairs"]) {
        const Encoding e = model->tokenizer().encode_pair(
            text, pair["hypothesis"].get<std::string>(), max_length, Truncation::longest_first);
        CHECK(e.ids == pair["input_ids"].get<std::vector<int32_t>>());
        CHECK(e.type_ids == pair["token_type_ids"].get<std::vector<int32_t>>());
        pairs.batch.add(e.ids, e.type_ids);
      }
      const std::vector<float> logits = runner->run(pairs).values;
      for (size_t p = 0; p < c["pairs"].size(); ++p) {
        const std::vector<float> row(logits.begin() + 3 * p, logits.begin() + 3 * (p + 1));
        if (backend == "ref")
          CHECK(max_abs_difference(row, c["pairs"][p]["logits"]) < 1e-5);
        else if (backend == "f32")
          CHECK(max_abs_difference(row, c["pairs"][p]["logits"]) < 1e-4);
      }
      // The pipeline's scores, through the classifier (its texts fit the model's 128 positions:
      // only the 32-token case needs its own truncation, checked above).
      if (max_length < 128 || (backend != "ref" && backend != "f32")) continue;
      ClassifyOptions options;
      options.multi_label = c["multi_label"].get<bool>();
      if (c.contains("hypothesis_template"))
        options.label_template = c["hypothesis_template"].get<std::string>();
      const ClassifyResult result = classifier.classify({text}, labels, options).front();
      REQUIRE(result.labels.size() == labels.size());
      for (size_t l = 0; l < labels.size(); ++l) {
        CHECK(result.labels[l].label == c["output"]["labels"][l].get<std::string>());
        CHECK(std::fabs(result.labels[l].score - c["output"]["scores"][l].get<double>()) <
              (backend == "ref" ? 1e-5 : 1e-4));
      }
    }
  }
  // A request larger than max_pass_tokens runs in several passes with the same scores.
  {
    CpuRefBackend backend;
    DirectRunner<CpuRefBackend> direct(*model, backend);
    CountingRunner counting(direct);
    ZeroShotClassifier classifier(counting);
    const std::vector<std::string> labels = {"家居", "旅游", "科技",  //
                                             "军事", "游戏", "故事"};
    const std::vector<std::string> texts = {"世界那么大，我想去看看", "今天的比赛"};
    ClassifyOptions one_pass, small_passes;
    small_passes.max_pass_tokens = 40;
    const auto whole = classifier.classify(texts, labels, one_pass);
    CHECK(counting.passes[HeadKind::classifier_logits] == 1);
    const auto split = classifier.classify(texts, labels, small_passes);
    CHECK(counting.passes[HeadKind::classifier_logits] > 2);
    for (size_t t = 0; t < 2; ++t)
      for (size_t l = 0; l < labels.size(); ++l) {
        CHECK(split[t].labels[l].label == whole[t].labels[l].label);
        CHECK(split[t].labels[l].score == Approx(whole[t].labels[l].score).margin(1e-6));
      }
  }
  CHECK(parse_label_list("文化， 体育，军事,科技,,汽车 ") ==
        std::vector<std::string>{"文化", "体育", "军事", "科技", "汽车"});
  CHECK(parse_label_list(" , ，").empty());
  const std::vector<std::string> two = {"体育", "财经"};
  CHECK(parse_label_list("体育，\u3000财经\u00a0") == two);
}

TEST_CASE("SiameseUIE: a level's hint x window pairs are bounded",
          "[modelscope][siamese][errors]") {
  const auto model = test::convert_model(folder("siamese-uie"), "ms-siamese-limits");
  CpuRefBackend backend;
  DirectRunner<CpuRefBackend> runner(*model, backend);
  SiameseOptions few;
  few.max_pairs = 5;
  const SiameseExtractor extractor(runner, few);
  const Schema two_types = parse_schema(json{{"人物", nullptr}, {"地点", nullptr}});
  CHECK_NOTHROW(extractor.run({"谷爱凌在北京"}, two_types));
  // 3 windows of a long text x 2 types = 6 pairs
  const std::string long_text = golden("siamese-uie")["cases"][2]["text"].get<std::string>();
  CHECK_THROWS_WITH(extractor.run({long_text}, two_types),
                    Catch::Contains("2 hints x 3 windows in one level (limit 5 pairs)"));
}
