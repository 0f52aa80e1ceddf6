// Zero-shot classification: label cache, scoring, validation, NLI mode against a PyTorch golden
// (tests/tools/make_nli_golden.py), embedding mode end to end on bge-small-zh, and one classifier
// shared by several threads.
#include <catch2/catch.hpp>
#include <cmath>
#include <exception>
#include <thread>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/runner.hpp"
#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/embed.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

const LabelScore& find_label(const ClassifyResult& r, const std::string& label) {
  for (const auto& s : r.labels)
    if (s.label == label) return s;
  FAIL("label " << label << " missing from the result");
  throw std::logic_error("unreachable");
}

// Counts the forward passes and the sequences in them.
class CountingRunner : public Runner {
 public:
  explicit CountingRunner(Runner& inner) : inner_(inner) {}
  ForwardResult run(ForwardRequest request) override {
    ++passes;
    sequences += request.batch.num_sequences();
    return inner_.run(std::move(request));
  }
  const Model& model() const override { return inner_.model(); }
  std::string backend_name() const override { return inner_.backend_name(); }
  int64_t passes = 0, sequences = 0;

 private:
  Runner& inner_;
};

double hand_cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return dot / std::sqrt(aa * bb);
}

std::vector<float> unit(const std::vector<float>& v) {
  double norm = 0;
  for (float x : v) norm += double(x) * x;
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i] / std::sqrt(norm));
  return out;
}

const std::vector<std::string> kContentFree(std::begin(kContentFreeInputs),
                                            std::end(kContentFreeInputs));

}  // namespace

TEST_CASE("label cache: LRU eviction order, counters, keys", "[classify][cache]") {
  LabelCache cache(2);
  cache.put("a", {1});
  cache.put("b", {2});
  REQUIRE(cache.get("a"));  // a is now the most recently used
  cache.put("c", {3});      // evicts b, the least recently used
  CHECK(cache.contains("a"));
  CHECK_FALSE(cache.contains("b"));
  CHECK(cache.contains("c"));
  CHECK_FALSE(cache.get("b"));
  CHECK(cache.get("c")->at(0) == 3.0f);
  LabelCacheStats s = cache.stats();
  CHECK(s.hits == 2);
  CHECK(s.misses == 1);
  CHECK(s.evictions == 1);
  CHECK(s.size == 2);
  CHECK(s.capacity == 2);

  cache.put("a", {10});  // refresh: a becomes most recent, c is next out
  cache.put("d", {4});
  CHECK(cache.contains("a"));
  CHECK_FALSE(cache.contains("c"));
  CHECK(cache.get("a")->at(0) == 10.0f);
  cache.set_capacity(1);
  CHECK(cache.stats().size == 1);
  CHECK(cache.contains("a"));

  LabelCache none(0);
  none.put("x", {1});
  CHECK_FALSE(none.contains("x"));

  // Keys separate model, template and label, and cannot be confused by shifting characters.
  CHECK(LabelCache::key("m1", "{}", "体育") != LabelCache::key("m2", "{}", "体育"));
  CHECK(LabelCache::key("m", "关于{}", "体育") != LabelCache::key("m", "{}", "体育"));
  CHECK(LabelCache::key("m", "ab", "c") != LabelCache::key("m", "a", "bc"));
  CHECK(LabelCache::key("m", "{}", "体育") == LabelCache::key("m", "{}", "体育"));
}

TEST_CASE("scoring: templates, softmax with temperature, multi-label threshold, HF NLI rules",
          "[classify]") {
  CHECK(apply_label_template("这是一条关于{}的新闻", "体育") ==  //
        "这是一条关于体育的新闻");
  CHECK(apply_label_template("{}：{}", "好") == "好：好");

  const std::vector<float> cosines = {0.50f, 0.45f, 0.30f};
  const auto p = embedding_scores(cosines, false, 0.05f, 0.5f);
  CHECK(p[0] + p[1] + p[2] == Approx(1.0f));
  CHECK(p[0] / p[1] == Approx(std::exp(0.05 / 0.05)).epsilon(1e-5));  // ratio e^{(c0-c1)/T}
  const auto sharper = embedding_scores(cosines, false, 0.01f, 0.5f);
  CHECK(sharper[0] > p[0]);
  const auto m = embedding_scores(cosines, true, 0.05f, 0.45f);
  CHECK(m[0] == Approx(1.0 / (1.0 + std::exp(-1.0))));
  CHECK(m[1] == Approx(0.5f));
  CHECK(m[2] < 0.5f);

  // logits [labels=2, classes=3], entailment at 1: single = softmax of column 1 across labels,
  // multi = softmax over (class 0, class 1) per label.
  const std::vector<float> logits = {0.0f, 2.0f, 5.0f, 1.0f, 0.0f, -3.0f};
  const auto single = nli_scores(logits, 2, 3, 1, false);
  CHECK(single[0] == Approx(1.0 / (1.0 + std::exp(-2.0))));
  const auto multi = nli_scores(logits, 2, 3, 1, true);
  CHECK(multi[0] == Approx(1.0 / (1.0 + std::exp(-2.0))));
  CHECK(multi[1] == Approx(1.0 / (1.0 + std::exp(1.0))));
  // entailment at 0: contradiction is the last class (HF: contradiction_id = -1)
  const auto last = nli_scores(logits, 2, 3, 0, true);
  CHECK(last[0] == Approx(1.0 / (1.0 + std::exp(5.0))));
  // one label always takes the per-label path
  CHECK(nli_scores(std::span(logits).first(3), 1, 3, 1, false)[0] == Approx(multi[0]));

  CHECK(find_entailment_index({"contradiction", "ENTAILMENT", "neutral"}) == 1);
  CHECK(find_entailment_index({"Entailment", "not_entailment"}) == 0);
  CHECK(find_entailment_index({"negative", "positive"}) == -1);
}

TEST_CASE("validation errors", "[classify]") {
  const ClassifyOptions o;
  CHECK_THROWS_WITH(validate_classify_request({}, "{}", o), Catch::Contains("no candidate labels"));
  CHECK_THROWS_WITH(validate_classify_request({"体育", " "}, "{}", o),
                    Catch::Contains("label 1 is empty"));
  CHECK_THROWS_WITH(validate_classify_request({"体育", ""}, "{}", o),
                    Catch::Contains("label 1 is empty"));
  CHECK_THROWS_WITH(validate_classify_request({"体育", "财经", "体育"}, "{}", o),
                    Catch::Contains("duplicate label '体育'"));
  CHECK_THROWS_WITH(validate_classify_request({"体育"}, "关于体育", o),
                    Catch::Contains("has no {}"));
  ClassifyOptions few;
  few.max_labels = 2;
  CHECK_THROWS_WITH(validate_classify_request({"a", "b", "c"}, "{}", few),
                    Catch::Contains("3 labels, at most 2"));
  ClassifyOptions cold;
  cold.temperature = 0;
  CHECK_THROWS_WITH(validate_classify_request({"a"}, "{}", cold), Catch::Contains("temperature"));
  CHECK_NOTHROW(validate_classify_request({"a", "b"}, "{}", o));
}

TEST_CASE("classify: models of the wrong architecture or without an entailment label",
          "[classify]") {
  const auto mlm = test::convert_model(test::test_data_dir() / "tiny" / "tiny-mlm", "tiny-mlm");
  CpuRefBackend backend;
  DirectRunner mlm_runner(*mlm, backend);
  CHECK_THROWS_WITH(ZeroShotClassifier(mlm_runner), Catch::Contains("is a masked_lm model"));

  // tiny-nli with its labels renamed: a sequence classifier that is not an NLI model.
  const auto folder = test::scratch_dir("classify") / "tiny-sentiment";
  std::filesystem::create_directories(folder);
  const auto source = test::test_data_dir() / "tiny" / "tiny-nli";
  for (const auto& entry : std::filesystem::directory_iterator(source))
    if (entry.path().filename() != "config.json" && entry.path().filename() != "golden.json" &&
        entry.path().filename() != "pairs_golden.json")
      std::filesystem::copy_file(entry.path(), folder / entry.path().filename(),
                                 std::filesystem::copy_options::overwrite_existing);
  json config = test::read_json(source / "config.json");
  config["id2label"] = {{"0", "negative"}, {"1", "positive"}, {"2", "neutral"}};
  config["label2id"] = {{"negative", 0}, {"positive", 1}, {"neutral", 2}};
  std::ofstream(folder / "config.json") << config.dump();
  const auto sentiment = test::convert_model(folder, "tiny-sentiment");
  DirectRunner sentiment_runner(*sentiment, backend);
  CHECK_THROWS_WITH(ZeroShotClassifier(sentiment_runner), Catch::Contains("no entailment label"));
}

TEST_CASE("classify NLI mode matches PyTorch (tiny-nli, HF pipeline scoring)", "[classify][nli]") {
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-nli", "tiny-nli");
  const json golden =
      test::read_json(test::test_data_dir() / "tiny" / "tiny-nli" / "pairs_golden.json");
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ZeroShotClassifier classifier(runner);
  REQUIRE(classifier.mode() == ClassifyMode::nli);
  constexpr double kTolerance = 1e-5;
  for (const json& c : golden["cases"]) {
    const auto texts = c["texts"].get<std::vector<std::string>>();
    const auto labels = c["labels"].get<std::vector<std::string>>();
    // tokenization of every pair, as the reference tokenizer does it
    size_t pair = 0;
    for (const auto& text : texts)
      for (const auto& label : labels) {
        const Encoding e = model->tokenizer().encode_pair(
            text, apply_label_template(c["template"].get<std::string>(), label), 512,
            Truncation::only_first);
        CHECK(e.ids == c["pairs"][pair]["input_ids"].get<std::vector<int32_t>>());
        CHECK(e.type_ids == c["pairs"][pair]["token_type_ids"].get<std::vector<int32_t>>());
        ++pair;
      }
    for (const bool multi : {false, true}) {
      ClassifyOptions options;
      options.label_template = c["template"].get<std::string>();
      options.multi_label = multi;
      const auto results = classifier.classify(texts, labels, options);
      REQUIRE(results.size() == texts.size());
      const char* scores_key = multi ? "multi_label_scores" : "single_label_scores";
      double worst_logit = 0, worst_score = 0;
      for (size_t t = 0; t < texts.size(); ++t) {
        REQUIRE(results[t].labels.size() == labels.size());
        for (size_t i = 1; i < labels.size(); ++i)
          CHECK(results[t].labels[i - 1].score >= results[t].labels[i].score);
        for (size_t l = 0; l < labels.size(); ++l) {
          const LabelScore& s = find_label(results[t], labels[l]);
          const auto want = c["logits"][t][l].get<std::vector<double>>();
          REQUIRE(s.logits.size() == want.size());
          for (size_t k = 0; k < want.size(); ++k)
            worst_logit = std::max(worst_logit, std::abs(s.logits[k] - want[k]));
          worst_score =
              std::max(worst_score, std::abs(s.score - c[scores_key][t][l].get<double>()));
        }
      }
      INFO("case '" << c["template"].get<std::string>() << "', multi_label " << multi);
      CHECK(worst_logit < kTolerance);
      CHECK(worst_score < kTolerance);
    }
  }
}

TEST_CASE("classify embedding mode on bge-small-zh: sports text, cache hits",
          "[classify][real][bge]") {
  const auto model =
      test::convert_model(test::shared_path_or_skip("models/bge-small-zh-v1.5"), "bge-small-zh");
  CpuRefBackend backend;
  auto cache = std::make_shared<LabelCache>(16);
  DirectRunner runner(*model, backend);
  ZeroShotClassifier classifier(runner, cache);
  REQUIRE(classifier.mode() == ClassifyMode::embedding);
  const std::vector<std::string> labels = {"体育", "财经", "科技", "娱乐"};
  const std::vector<std::string> texts = {"今天的足球比赛非常精彩",  //
                                          "央行宣布下调存款准备金率"};

  const auto first = classifier.classify(texts, labels);
  REQUIRE(first.size() == 2);
  CHECK(first[0].labels[0].label == "体育");
  CHECK(first[1].labels[0].label == "财经");
  CHECK(first[0].labels[0].selected);
  CHECK_FALSE(first[0].labels[1].selected);
  double sum = 0;
  for (const auto& s : first[0].labels) sum += s.score;
  CHECK(sum == Approx(1.0));
  LabelCacheStats s = classifier.cache_stats();
  CHECK(s.misses == 4);
  CHECK(s.hits == 0);
  CHECK(s.size == 4);

  // Same labels again: all four come from the cache, and the scores do not change.
  const auto second = classifier.classify(texts, labels);
  s = classifier.cache_stats();
  CHECK(s.hits == 4);
  CHECK(s.misses == 4);
  for (size_t i = 0; i < labels.size(); ++i) {
    CHECK(second[0].labels[i].label == first[0].labels[i].label);
    CHECK(second[0].labels[i].score == Approx(first[0].labels[i].score).margin(1e-6));
  }

  // Another template is another key: four new misses.
  ClassifyOptions other;
  other.label_template = "{}";
  classifier.classify({texts[0]}, labels, other);
  CHECK(classifier.cache_stats().misses == 8);
  CHECK(classifier.cache_stats().size == 8);

  // Multi-label: independent scores, selected exactly when cosine >= threshold.
  ClassifyOptions multi;
  multi.multi_label = true;
  multi.threshold = first[0].labels[0].cosine - 1e-4f;  // just below the best label's cosine
  const auto m = classifier.classify({texts[0]}, labels, multi);
  CHECK(m[0].labels[0].label == "体育");
  CHECK(m[0].labels[0].selected);
  CHECK(m[0].labels[0].score > 0.5f);
  for (size_t i = 1; i < m[0].labels.size(); ++i)
    CHECK(m[0].labels[i].selected == (m[0].labels[i].cosine >= *multi.threshold));
}

TEST_CASE("classify from 4 threads on one runner and one classifier equals serial calls",
          "[classify][threads]") {
  struct Request {
    std::vector<std::string> texts, labels;
    ClassifyOptions options;
  };
  ClassifyOptions multi, plain_template;
  multi.multi_label = true;
  plain_template.label_template = "{}";
  const std::vector<Request> requests = {
      {{"北京天气好", "我爱中国"}, {"体育", "财经", "科技"}, {}},
      {{"2024 中国"}, {"好", "不好"}, multi},
      {{"北京", "天气", "我爱北京"}, {"体育", "财经", "科技", "好"}, plain_template},
      {{"中国的首都是北京。"}, {"财经", "体育"}, multi},
  };
  for (const char* name : {"tiny-bert", "tiny-nli"}) {
    INFO(name);
    const auto model = test::convert_model(test::test_data_dir() / "tiny" / name, name);
    CpuRefBackend backend;
    DirectRunner runner(*model, backend);
    ZeroShotClassifier classifier(runner);
    const auto classify = [&](size_t i) {
      return classifier.classify(requests[i].texts, requests[i].labels, requests[i].options);
    };
    // Embedding mode: a label embedded beside other texts may differ in the last bit, so the serial
    // reference is taken with every label cached, as the threads then find them.
    for (size_t i = 0; i < requests.size(); ++i) classify(i);
    std::vector<std::vector<ClassifyResult>> serial;
    for (size_t i = 0; i < requests.size(); ++i) serial.push_back(classify(i));
    const auto threaded = test::results_from_threads(requests.size(), classify);
    for (const auto& per_thread : threaded)
      for (size_t i = 0; i < requests.size(); ++i) CHECK(per_thread[i] == serial[i]);
    CHECK(serial[0][0].labels.size() == 3);
  }
}

TEST_CASE("label cache: content-free keys stay apart from label keys",
          "[classify][cache][calibrate]") {
  // A label key starts with a length, a content-free key with a letter, whatever the strings.
  for (const std::string text : {"", "N/A", "1:x", "content-free|"}) {
    const std::string cf = LabelCache::content_free_key("m", text);
    CHECK(cf.rfind("content-free|", 0) == 0);
    CHECK(cf != LabelCache::key("m", "", text));
    CHECK(cf != LabelCache::key("content-free|1:m", "", text));
    CHECK(
        std::isdigit(static_cast<unsigned char>(LabelCache::key("content-free|", text, text)[0])));
  }
  CHECK(LabelCache::content_free_key("m1", "") != LabelCache::content_free_key("m2", ""));
  CHECK(LabelCache::content_free_key("m", "ab") != LabelCache::content_free_key("ma", "b"));
  LabelCache cache(4);
  cache.put(LabelCache::key("m", "{}", ""), {1});
  cache.put(LabelCache::content_free_key("m", ""), {2});
  CHECK(cache.get(LabelCache::key("m", "{}", ""))->at(0) == 1.0f);
  CHECK(cache.get(LabelCache::content_free_key("m", ""))->at(0) == 2.0f);
}

TEST_CASE("calibration: score from cosine minus the mean content-free cosine, checked by hand",
          "[classify][calibrate]") {
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-bert", "tiny-bert");
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ZeroShotClassifier classifier(runner);
  const std::vector<std::string> texts = {"北京天气好", "我是中国人"},
                                 labels = {"好", "天气", "北京"};
  ClassifyOptions options;
  options.label_template = "是{}的";
  options.temperature = 0.5f;  // soft enough that 1e-6 in a cosine is 2e-6 in a score
  options.calibrate = true;
  const auto results = classifier.classify(texts, labels, options);
  REQUIRE(results.size() == texts.size());

  // By hand: every text alone in its own pass, cosines and means in double.
  const auto embed_one = [&](const std::string& s) { return embed_texts(runner, {s})[0]; };
  std::vector<std::vector<float>> label_vectors;
  for (const auto& l : labels)
    label_vectors.push_back(embed_one(apply_label_template("是{}的", l)));
  std::vector<double> content_free(labels.size(), 0.0);
  for (size_t l = 0; l < labels.size(); ++l)
    for (const auto& input : kContentFree)
      content_free[l] += hand_cosine(embed_one(input), label_vectors[l]) /
                         static_cast<double>(kContentFree.size());
  // the check means something only if the labels' content-free cosines differ
  CHECK(*std::max_element(content_free.begin(), content_free.end()) -
            *std::min_element(content_free.begin(), content_free.end()) >
        1e-3);

  ClassifyOptions plain = options, multi = options;
  plain.calibrate = false;
  multi.multi_label = true;
  const auto plain_results = classifier.classify(texts, labels, plain);
  const auto multi_results = classifier.classify(texts, labels, multi);
  for (size_t t = 0; t < texts.size(); ++t) {
    const auto text_vector = embed_one(texts[t]);
    std::vector<double> calibrated(labels.size());
    double z = 0;
    for (size_t l = 0; l < labels.size(); ++l) {
      const double cosine = hand_cosine(text_vector, label_vectors[l]);
      calibrated[l] = cosine - content_free[l];
      z += std::exp(calibrated[l] / options.temperature);
      const LabelScore& s = find_label(results[t], labels[l]);
      CHECK(s.cosine == Approx(cosine).margin(1e-6));
      CHECK(s.content_free == Approx(content_free[l]).margin(1e-6));
      // the plain request: the same cosine, no content-free part
      const LabelScore& p = find_label(plain_results[t], labels[l]);
      CHECK(p.cosine == Approx(s.cosine).margin(1e-6));
      CHECK(p.content_free == 0.0f);
      // multi label: sigmoid((calibrated - threshold) / T), selected at calibrated >= 0
      const LabelScore& m = find_label(multi_results[t], labels[l]);
      CHECK(m.score == Approx(1.0 / (1.0 + std::exp(-(calibrated[l] - kDefaultCalibratedThreshold) /
                                                    options.temperature)))
                           .margin(1e-5));
      if (std::abs(calibrated[l]) > 1e-5)
        CHECK(m.selected == (calibrated[l] >= kDefaultCalibratedThreshold));
    }
    for (size_t l = 0; l < labels.size(); ++l)
      CHECK(find_label(results[t], labels[l]).score ==
            Approx(std::exp(calibrated[l] / options.temperature) / z).margin(1e-5));
    const size_t best = static_cast<size_t>(std::max_element(calibrated.begin(), calibrated.end()) -
                                            calibrated.begin());
    CHECK(results[t].labels[0].label == labels[best]);
    CHECK(results[t].labels[0].selected);
  }
}

TEST_CASE(
    "calibration and ensembles: content-free inputs embedded once per model, every vector cached",
    "[classify][calibrate][cache]") {
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-bert", "tiny-bert");
  CpuRefBackend backend;
  DirectRunner direct(*model, backend);
  CountingRunner runner(direct);
  auto cache = std::make_shared<LabelCache>(64);
  ZeroShotClassifier classifier(runner, cache);
  const auto content_free = static_cast<int64_t>(kContentFree.size());
  ClassifyOptions calibrated;
  calibrated.calibrate = true;

  // First calibrated request: text + 2 labels + the content-free inputs, in one pass.
  classifier.classify({"北京天气好"}, {"好", "天气"}, calibrated);
  CHECK(runner.passes == 1);
  CHECK(runner.sequences == 1 + 2 + content_free);
  CHECK(cache->stats().misses == static_cast<uint64_t>(2 + content_free));
  const std::string id = model_identity(*model, backend.name());
  for (const auto& input : kContentFree)
    CHECK(cache->contains(LabelCache::content_free_key(id, input)));

  // The same request again: only the text.
  classifier.classify({"北京天气好"}, {"好", "天气"}, calibrated);
  CHECK(runner.passes == 2);
  CHECK(runner.sequences == 1 + 2 + content_free + 1);

  // Another label set: the text and the new label; the content-free inputs come from the cache.
  classifier.classify({"我是中国人"}, {"好", "北京"}, calibrated);
  CHECK(runner.sequences == 1 + 2 + content_free + 1 + 2);
  CHECK(cache->stats().misses == static_cast<uint64_t>(2 + content_free + 1));

  // Without calibration they are not even looked up: 2 label hits.
  auto hits = cache->stats().hits;
  classifier.classify({"我"}, {"好", "北京"});
  CHECK(cache->stats().hits == hits + 2);

  // An ensemble: every template x label once, in the request's one pass; then all cached.
  ClassifyOptions ensemble;
  ensemble.label_templates = {"{}", "是{}的", "{}。"};
  const int64_t before = runner.sequences;
  classifier.classify({"我"}, {"好", "北京"}, ensemble);
  CHECK(runner.sequences == before + 1 + 3 * 2);
  ensemble.calibrate = true;
  hits = cache->stats().hits;
  classifier.classify({"我"}, {"好", "北京"}, ensemble);
  CHECK(runner.sequences == before + 1 + 3 * 2 + 1);
  CHECK(cache->stats().hits == hits + 3 * 2 + static_cast<uint64_t>(content_free));
}

TEST_CASE("template ensembles: a label's embedding is the mean of its templates' unit vectors",
          "[classify][ensemble]") {
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-bert", "tiny-bert");
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ZeroShotClassifier classifier(runner);
  const std::vector<std::string> texts = {"北京天气好", "我是中国人"},
                                 labels = {"好", "天气", "北京"};
  const std::vector<std::string> templates = {"{}", "是{}的"};
  ClassifyOptions options;
  options.label_templates = templates;
  options.calibrate = true;
  const auto results = classifier.classify(texts, labels, options);

  const auto embed_one = [&](const std::string& s) { return embed_texts(runner, {s})[0]; };
  double largest_change = 0;
  for (size_t l = 0; l < labels.size(); ++l) {
    const auto a = unit(embed_one(apply_label_template(templates[0], labels[l])));
    const auto b = unit(embed_one(apply_label_template(templates[1], labels[l])));
    std::vector<float> centroid(a.size());
    for (size_t i = 0; i < a.size(); ++i) centroid[i] = (a[i] + b[i]) / 2;
    double content_free = 0;
    for (const auto& input : kContentFree)
      content_free +=
          hand_cosine(embed_one(input), centroid) / static_cast<double>(kContentFree.size());
    for (size_t t = 0; t < texts.size(); ++t) {
      const auto text_vector = embed_one(texts[t]);
      const LabelScore& s = find_label(results[t], labels[l]);
      CHECK(s.cosine == Approx(hand_cosine(text_vector, centroid)).margin(1e-6));
      CHECK(s.content_free == Approx(content_free).margin(1e-6));
      largest_change = std::max(largest_change, std::abs(s.cosine - hand_cosine(text_vector, b)));
    }
  }
  CHECK(largest_change > 1e-3);  // the first template counted

  // A list of one template is that template.
  ClassifyOptions one, list;
  one.label_template = "是{}的";
  list.label_templates = {"是{}的"};
  CHECK(classifier.classify(texts, labels, one) == classifier.classify(texts, labels, list));
  CHECK(classifier.templates(list) == std::vector<std::string>{"是{}的"});
  CHECK(classifier.templates(one) == std::vector<std::string>{"是{}的"});
  CHECK(classifier.templates({}) == std::vector<std::string>{kDefaultEmbeddingTemplate});
}

TEST_CASE("calibration and ensembles: bad template lists, and NLI models refuse them",
          "[classify][calibrate][ensemble]") {
  ClassifyOptions both, no_slot, twice, many;
  both.label_template = "{}";
  both.label_templates = {"{}"};
  CHECK_THROWS_WITH(validate_classify_request({"a"}, "{}", both), Catch::Contains("not both"));
  no_slot.label_templates = {"{}", "关于"};
  CHECK_THROWS_WITH(validate_classify_request({"a"}, "{}", no_slot),
                    Catch::Contains("template 1 '关于' has no {}"));
  twice.label_templates = {"{}", "是{}", "{}"};
  CHECK_THROWS_WITH(validate_classify_request({"a"}, "{}", twice),
                    Catch::Contains("duplicate template '{}'"));
  for (size_t i = 0; i <= kMaxLabelTemplates; ++i)
    many.label_templates.push_back(std::to_string(i) + "{}");
  CHECK_THROWS_WITH(validate_classify_request({"a"}, "{}", many),
                    Catch::Contains("17 templates, at most 16"));
  many.label_templates.pop_back();
  CHECK_NOTHROW(validate_classify_request({"a"}, "{}", many));

  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-nli", "tiny-nli");
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ZeroShotClassifier nli(runner);
  ClassifyOptions calibrated, ensemble, single_list;
  calibrated.calibrate = true;
  ensemble.label_templates = {"{}", "是{}"};
  single_list.label_templates = {"是{}"};
  CHECK_THROWS_WITH(nli.classify({"x"}, {"a", "b"}, calibrated),
                    Catch::Contains("calibration is for embedding mode"));
  CHECK_THROWS_WITH(nli.validate({"a", "b"}, ensemble),
                    Catch::Contains("a list of templates is for embedding mode"));
  ClassifyOptions single;
  single.label_template = "是{}";
  CHECK(nli.classify({"x"}, {"a", "b"}, single_list) == nli.classify({"x"}, {"a", "b"}, single));
}
