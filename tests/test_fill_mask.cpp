// Fill-mask: mask validation with line/character positions, top-k, joint (whole-phrase)
// filling, and attribution against a PyTorch golden (tests/data/fill_mask_attention_golden.json).
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

// A DirectRunner that also keeps what each forward pass asked for and got back, without the
// logits (the passes of the last fill_mask call; clear() before a call).
class RecordingRunner final : public Runner {
 public:
  struct Pass {
    ForwardRequest request;
    std::vector<float> attention;
  };
  RecordingRunner(const Model& model, CpuRefBackend& backend) : direct_(model, backend) {}
  const Model& model() const override { return direct_.model(); }
  std::string backend_name() const override { return direct_.backend_name(); }
  ForwardResult run(ForwardRequest request) override {
    ForwardResult result = direct_.run(request);
    passes.push_back({std::move(request), result.attention});
    return result;
  }
  std::vector<Pass> passes;

 private:
  DirectRunner<CpuRefBackend> direct_;
};

// Everything one fill-mask call needs, for one model.
struct MlmFixture {
  std::unique_ptr<Model> model;
  CpuRefBackend backend;
  RecordingRunner runner;

  explicit MlmFixture(std::unique_ptr<Model> m) : model(std::move(m)), runner(*model, backend) {}
  std::vector<FillMaskResult> run(const std::vector<std::string>& texts,
                                  const FillMaskOptions& options = {}) {
    runner.passes.clear();
    return fill_mask(runner, texts, options);
  }
};

MlmFixture& tiny() {
  static MlmFixture fixture(
      test::convert_model(test::test_data_dir() / "tiny" / "tiny-mlm", "tiny-mlm"));
  return fixture;
}

MlmFixture& demo() {
  static MlmFixture fixture(
      test::convert_model(test::shared_path_or_skip("models/demo-mlm"), "demo-mlm"));
  return fixture;
}

std::string repeat(const std::string& piece, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += piece;
  return s;
}

}  // namespace

TEST_CASE("fill-mask validation names the line and the character", "[fill_mask]") {
  MlmFixture& r = tiny();
  const Tokenizer& tok = r.model->tokenizer();
  using Catch::Contains;
  CHECK(validate_mask_text(tok, "中[MASK]国[MASK]", 1, 16) == 2);
  CHECK_THROWS_WITH(validate_mask_text(tok, "", 3, 16),
                    Contains("line 3, character 1: empty line"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "中国", 2, 16),
                    Contains("text 2: no [MASK] in line 2"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "中国[MASK", 1, 16),
                    Contains("line 1, character 3: unbalanced '[MASK' without ']'"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "中[MASK ]国", 1, 16),
                    Contains("line 1, character 2: unbalanced '[MASK' without ']'"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "[MASK]中MASK]", 4, 16),
                    Contains("line 4, character 8: unbalanced 'MASK]' without '['"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "我[mask]", 1, 16),
                    Contains("line 1, character 2: '[mask]' is not a mask token"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "[MASK][Mask]", 1, 16),
                    Contains("line 1, character 7: '[Mask]' is not a mask token"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "中[MASK][MASK]国[MASK]", 1, 2),
                    Contains("line 1, character 15: too many masks (at most 2 per text)"));
  CHECK_THROWS_WITH(validate_mask_text(tok, "a\xff[MASK]", 5, 16),
                    Contains("line 5: invalid UTF-8 at byte 1"));

  // through fill_mask: the line is the index in the batch, 1-based
  CHECK_THROWS_WITH(r.run({"中[MASK]", "国"}), Contains("text 2: no [MASK] in line 2"));
  FillMaskOptions few;
  few.max_masks = 1;
  CHECK_THROWS_WITH(r.run({"中[MASK]", "中[MASK]国[MASK]"}, few),
                    Contains("line 2, character 9: too many masks"));
  // tiny-mlm takes 64 tokens: [MASK] + 69 characters + [CLS]/[SEP] = 72; token 63 (where [SEP]
  // would go) is the first that does not fit: 中 number 62, code point 6 + 61 = 67 (0-based)
  CHECK_THROWS_WITH(r.run({"[MASK]" + repeat("中", 69)}),
                    Contains("line 1, character 68: text too long: 72 tokens with [CLS] and [SEP], "
                             "the model takes at most 64"));
  CHECK_NOTHROW(r.run({"[MASK]" + repeat("中", 61)}));  // 64 tokens exactly
}

TEST_CASE("fill-mask top-k: ordered, probabilities sum to at most 1, spans of the masks",
          "[fill_mask]") {
  MlmFixture& r = tiny();
  FillMaskOptions options;
  options.top_k = 10;
  const auto results = r.run({"我爱北[MASK]。", "[MASK]天气[MASK]好"}, options);
  REQUIRE(results.size() == 2);
  REQUIRE(results[0].masks.size() == 1);
  REQUIRE(results[1].masks.size() == 2);
  CHECK(results[0].masks[0].chars == Offset{3, 9});
  CHECK(results[1].masks[0].chars == Offset{0, 6});
  CHECK(results[1].masks[1].chars == Offset{8, 14});
  CHECK(results[1].masks[1].token_index == 4);
  for (const auto& result : results) {
    CHECK(result.phrases.empty());
    for (const auto& m : result.masks) {
      REQUIRE(m.candidates.size() == 10);
      CHECK(m.attribution.empty());
      double sum = 0;
      for (size_t k = 0; k < m.candidates.size(); ++k) {
        sum += m.candidates[k].probability;
        if (k > 0) CHECK(m.candidates[k - 1].probability >= m.candidates[k].probability);
      }
      CHECK(sum <= 1.0 + 1e-6);
    }
  }
  options.top_k = r.model->config().vocab_size;  // the whole vocabulary sums to 1
  double sum = 0;
  // keep the result alive: the loop reads into it
  const auto whole = r.run({"我爱北[MASK]。"}, options);
  for (const auto& c : whole[0].masks[0].candidates) sum += c.probability;
  CHECK(sum == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("fill-mask records attention only when attribution is asked for", "[fill_mask]") {
  MlmFixture& r = tiny();
  FillMaskOptions with;
  with.attribution = 3;
  const std::vector<std::string> texts = {"我爱北[MASK]。", "[MASK]天气好"};
  r.run(texts, with);
  const int64_t heads = r.model->config().num_heads;
  REQUIRE(r.runner.passes.size() == 1);  // both texts in one forward pass
  CHECK(r.runner.passes[0].request.record_attention);
  CHECK(r.runner.passes[0].request.rows == std::vector<int64_t>{4, 7 + 1});
  CHECK(static_cast<int64_t>(r.runner.passes[0].attention.size()) == heads * (7 * 7 + 6 * 6));
  r.run(texts);  // fast path: nothing recorded
  REQUIRE(r.runner.passes.size() == 1);
  CHECK_FALSE(r.runner.passes[0].request.record_attention);
  CHECK(r.runner.passes[0].attention.empty());
  // joint filling: one more pass per further mask, and only the first pass records
  with.joint = true;
  r.run({"我[MASK][MASK]", "中[MASK]"}, with);
  REQUIRE(r.runner.passes.size() == 2);
  CHECK(r.runner.passes[0].request.record_attention);
  CHECK_FALSE(r.runner.passes[1].request.record_attention);
  CHECK(r.runner.passes[1].attention.empty());
}

TEST_CASE("fill-mask attribution: top-n context tokens with weights and character spans",
          "[fill_mask]") {
  MlmFixture& r = tiny();
  FillMaskOptions options;
  options.attribution = 3;
  const std::string text = "我爱[MASK]北京，[MASK]天气好。";
  const auto result = r.run({"中[MASK]", text}, options)[1];
  const Encoding e = r.model->tokenizer().encode(text);
  REQUIRE(result.masks.size() == 2);
  for (const auto& m : result.masks) {
    REQUIRE(m.attribution.size() == 3);
    for (size_t k = 0; k < m.attribution.size(); ++k) {
      const auto& a = m.attribution[k];
      const int32_t id = e.ids[static_cast<size_t>(a.token_index)];
      CHECK(id != r.model->tokenizer().cls_id());
      CHECK(id != r.model->tokenizer().sep_id());
      CHECK(id != r.model->tokenizer().mask_id());
      CHECK(a.token == e.tokens[static_cast<size_t>(a.token_index)]);
      CHECK(a.chars == e.offsets[static_cast<size_t>(a.token_index)]);
      CHECK(a.weight > 0);
      CHECK(a.weight < 1);
      if (k > 0) CHECK(m.attribution[k - 1].weight >= a.weight);
    }
  }
  // n larger than the context: every context token once, weights sum to at most 1
  options.attribution = 1000;
  const auto all = r.run({text}, options)[0].masks[0].attribution;
  CHECK(all.size() == e.ids.size() - 4);  // minus [CLS], [SEP] and the 2 masks
  double sum = 0;
  std::set<int64_t> seen;
  for (const auto& a : all) sum += a.weight, seen.insert(a.token_index);
  CHECK(seen.size() == all.size());
  CHECK(sum < 1.0);
}

TEST_CASE("joint filling: phrase structure, one mask equals plain top-k, packing does not matter",
          "[fill_mask]") {
  MlmFixture& r = tiny();
  FillMaskOptions plain, joint;
  plain.top_k = joint.top_k = 4;
  joint.joint = true;
  const auto single_plain = r.run({"我爱北[MASK]。"}, plain)[0].masks[0].candidates;
  const auto single_joint = r.run({"我爱北[MASK]。"}, joint)[0];
  REQUIRE(single_joint.phrases.size() == single_plain.size());
  for (size_t k = 0; k < single_plain.size(); ++k) {
    REQUIRE(single_joint.phrases[k].tokens.size() == 1);
    CHECK(single_joint.phrases[k].tokens[0].id == single_plain[k].id);
    CHECK(single_joint.phrases[k].probability == Approx(single_plain[k].probability).epsilon(1e-6));
    CHECK(single_joint.phrases[k].fill_order == std::vector<size_t>{0});
  }

  const std::vector<std::string> texts = {"[MASK]爱北[MASK]，[MASK]天气好。", "中[MASK]",
                                          "我[MASK][MASK]"};
  const auto results = r.run(texts, joint);
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& phrases = results[i].phrases;
    const size_t masks = results[i].masks.size();
    REQUIRE(!phrases.empty());
    CHECK(phrases.size() <= 4);
    std::set<std::vector<int32_t>> assignments;
    for (size_t p = 0; p < phrases.size(); ++p) {
      const auto& phrase = phrases[p];
      REQUIRE(phrase.tokens.size() == masks);
      double product = 1;
      std::vector<int32_t> ids;
      for (const auto& t : phrase.tokens) product *= t.probability, ids.push_back(t.id);
      assignments.insert(ids);
      CHECK(phrase.probability == Approx(product).epsilon(1e-5));
      std::vector<size_t> order = phrase.fill_order;
      std::sort(order.begin(), order.end());
      std::vector<size_t> all(masks);
      std::iota(all.begin(), all.end(), size_t{0});
      CHECK(order == all);
      CHECK(phrase.text.find("[MASK]") == std::string::npos);
      if (p > 0) CHECK(phrases[p - 1].probability >= phrase.probability);
    }
    CHECK(assignments.size() == phrases.size());
    // the first step fills the most confident mask: its best token is the best of all masks
    float best = 0;
    for (const auto& m : results[i].masks) best = std::max(best, m.candidates[0].probability);
    CHECK(phrases[0].tokens[phrases[0].fill_order[0]].probability == Approx(best).epsilon(1e-6));
    // the same text alone gives the same phrases
    const auto alone = r.run({texts[i]}, joint)[0].phrases;
    REQUIRE(alone.size() == phrases.size());
    for (size_t p = 0; p < phrases.size(); ++p) {
      CHECK(alone[p].text == phrases[p].text);
      CHECK(alone[p].probability == Approx(phrases[p].probability).epsilon(1e-4));
    }
  }
  // the filled text replaces each mask's characters by its token
  const auto& first = results[0].phrases[0];
  std::string expected = first.tokens[0].token;
  expected += "爱北";
  expected += first.tokens[1].token;
  expected += "，";
  expected += first.tokens[2].token;
  expected += "天气好。";
  if (expected.find("##") == std::string::npos) CHECK(first.text == expected);
}

TEST_CASE("demo-mlm joint filling of 中国的首都是[MASK][MASK]。", "[fill_mask][real]") {
  MlmFixture& r = demo();
  FillMaskOptions options;
  options.top_k = 5;
  options.joint = true;
  const std::vector<std::string> texts = {"中国的首都是[MASK][MASK]。",
                                          "床前明月光，疑是地[MASK]霜。"};
  const auto result = r.run(texts, options);
  const auto& phrases = result[0].phrases;
  REQUIRE(phrases.size() == 5);
  bool beijing = false;
  for (const auto& p : phrases) {
    INFO(p.text << " " << p.probability);
    REQUIRE(p.tokens.size() == 2);
    CHECK(p.text.size() == std::string("中国的首都是。").size() + p.tokens[0].token.size() +
                               p.tokens[1].token.size());
    beijing |= p.text == "中国的首都是北京。";
  }
  CHECK(beijing);
  // one mask: joint equals plain top-k
  REQUIRE(result[1].phrases.size() == 5);
  for (size_t k = 0; k < 5; ++k) {
    CHECK(result[1].phrases[k].tokens[0].id == result[1].masks[0].candidates[k].id);
    CHECK(result[1].phrases[k].probability ==
          Approx(result[1].masks[0].candidates[k].probability).epsilon(1e-6));
  }
}

TEST_CASE("demo-mlm attribution matches the PyTorch last-layer attention within 1e-5",
          "[fill_mask][real]") {
  MlmFixture& r = demo();
  const json golden = test::read_json(test::test_data_dir() / "fill_mask_attention_golden.json");
  std::vector<std::string> texts;
  for (const auto& c : golden["cases"]) texts.push_back(c["text"].get<std::string>());
  FillMaskOptions options;
  options.attribution = 1000;                  // every context token
  const auto results = r.run(texts, options);  // one packed batch
  double worst = 0;
  size_t checked = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& c = golden["cases"][i];
    const auto ids = c["input_ids"].get<std::vector<int32_t>>();
    REQUIRE(r.model->tokenizer().encode(texts[i]).ids == ids);
    REQUIRE(results[i].masks.size() == c["masks"].size());
    for (size_t m = 0; m < c["masks"].size(); ++m) {
      const auto want = c["masks"][m]["attention"].get<std::vector<double>>();
      const auto& got = results[i].masks[m].attribution;
      CHECK(results[i].masks[m].token_index == c["masks"][m]["position"].get<int64_t>());
      // the context tokens: not [CLS] (first), not [SEP] (last), not a mask
      std::vector<size_t> context;
      for (size_t j = 1; j + 1 < ids.size(); ++j)
        if (ids[j] != r.model->tokenizer().mask_id()) context.push_back(j);
      REQUIRE(got.size() == context.size());
      for (size_t k = 0; k < got.size(); ++k) {
        const double w = want[static_cast<size_t>(got[k].token_index)];
        worst = std::max(worst, std::fabs(got[k].weight - w));
        ++checked;
        if (k > 0) {  // the golden order, unless two weights tie within 1e-5
          const double prev = want[static_cast<size_t>(got[k - 1].token_index)];
          CHECK(prev >= w - 1e-5);
        }
      }
    }
  }
  INFO("worst |weight diff| " << worst << " over " << checked << " weights");
  CHECK(checked > 20);
  CHECK(worst < 1e-5);
}
