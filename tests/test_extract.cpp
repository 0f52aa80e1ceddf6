// UIE extraction: schema parsing, prompts, windows, merging and decoding on small fixtures; the
// Extractor end to end on the tiny UIE model and on ../shared/models/demo-uie's reference cases,
// and one extractor shared by several threads.
#include <catch2/catch.hpp>
#include <exception>
#include <set>
#include <thread>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::string> names(const std::vector<SchemaNode>& nodes) {
  std::vector<std::string> out;
  for (const auto& n : nodes) out.push_back(n.name);
  return out;
}

// "text" code points [start, end) of a UTF-8 string.
std::string substr_chars(const std::string& text, int64_t start, int64_t end) {
  const auto decoded = detail::decode_utf8(text);
  const size_t b = decoded.byte_starts[static_cast<size_t>(start)],
               e = decoded.byte_starts[static_cast<size_t>(end)];
  return text.substr(b, e - b);
}

}  // namespace

TEST_CASE("schema: every PaddleNLP and SiameseUIE form parses to the same tree",
          "[extract][schema]") {
  CHECK(names(parse_schema(json("人名")).roots) == std::vector<std::string>{"人名"});
  CHECK(names(parse_schema(json::parse(R"(["人名","地址"])")).roots) ==
        std::vector<std::string>{"人名", "地址"});

  const Schema relation =
      parse_schema(json::parse(R"([{"竞赛名称": ["主办方", "承办方"]}, "时间"])"));
  REQUIRE(names(relation.roots) == std::vector<std::string>{"竞赛名称", "时间"});
  CHECK(names(relation.roots[0].children) == std::vector<std::string>{"主办方", "承办方"});
  CHECK(relation.depth() == 2);

  const std::string opinion_schema = R"({"评价维度": ["观点词", )"
                                     R"("情感倾向[正向，负向]"]})";
  const Schema opinion = parse_schema(json::parse(opinion_schema));
  CHECK(names(opinion.roots[0].children) ==
        std::vector<std::string>{"观点词", "情感倾向[正向，负向]"});
  CHECK(names(parse_schema(json::parse(R"({"地震触发词": "时间"})")).roots[0].children) ==
        std::vector<std::string>{"时间"});

  // SiameseUIE: nested dicts with null leaves (keys come out in nlohmann's sorted order)
  const Schema siamese =
      parse_schema(json::parse(R"({"产品名称": null, "属性词": {"情感词": null}})"));
  REQUIRE(siamese.roots.size() == 2);
  const bool attribute_first = siamese.roots[0].name == "属性词";
  const auto& attribute = attribute_first ? siamese.roots[0] : siamese.roots[1];
  CHECK(names(attribute.children) == std::vector<std::string>{"情感词"});
  CHECK(siamese.depth() == 2);
  // three levels are allowed
  CHECK(parse_schema(json::parse(R"({"a": {"b": ["c"]}})")).depth() == 3);
}

TEST_CASE("schema: errors say what is wrong and where", "[extract][schema]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(error_of([] { parse_schema(json::parse("42")); }),
             Contains("schema $") && Contains("number"));
  CHECK_THAT(error_of([] { parse_schema(json::parse("null")); }), Contains("found null"));
  CHECK_THAT(error_of([] { parse_schema(json::parse("[]")); }), Contains("no names"));
  CHECK_THAT(error_of([] { parse_schema(json::parse(R"(["人名", ""])")); }),
             Contains("$[1]") && Contains("empty name"));
  CHECK_THAT(error_of([] { parse_schema(json::parse(R"([{"竞赛名称": ["主办方", 3]}])")); }),
             Contains("$[0].竞赛名称[1]") && Contains("number"));
  CHECK_THAT(error_of([] { parse_schema(json::parse(R"([["人名"]])")); }),
             Contains("$[0]") && Contains("array"));
  CHECK_THAT(error_of([] { parse_schema(json::parse(R"({"a": {}})")); }),
             Contains("$.a") && Contains("empty object"));
  CHECK_THAT(error_of([] { parse_schema(json::parse(R"({"a": {"b": {"c": ["d"]}}})")); }),
             Contains("$.a.b.c[0]") && Contains("4 levels"));
  CHECK_THAT(error_of([] {
               parse_schema(json::parse(R"(["a", "b", "c"])"), SchemaLimits{3, 2, 64});
             }),
             Contains("more than 2 names"));
  CHECK_THAT(error_of([] { parse_schema(json(std::string(65, 'x'))); }),
             Contains("longer than 64"));
  CHECK_THAT(error_of([] { parse_schema(json(std::string("\xff"))); }), Contains("invalid UTF-8"));
}

TEST_CASE("prompts: full-width normalisation, Chinese and English child prompts",
          "[extract][prompt]") {
  CHECK(to_half_width("情感倾向[正向，负向]") == "情感倾向[正向,负向]");
  CHECK(to_half_width("ＡＢＣ　２０２４！") == "ABC 2024!");
  CHECK(to_half_width("中文，。") == "中文,。");  // 。(U+3002) has no half-width ASCII form
  CHECK(is_classification("情感倾向[正向，负向]"));
  CHECK(is_classification("Sentiment classification [negative, positive]"));
  CHECK_FALSE(is_classification("人名"));
  CHECK_FALSE(is_classification("[x"));

  CHECK(build_prompt("人名", nullptr, false) == "人名");
  CHECK(build_prompt("ＣＥＯ", nullptr, false) == "CEO");
  const std::string parent = "ＡＢＣ公司";
  CHECK(build_prompt("主办方", &parent, false) == "ABC公司的主办方");
  CHECK(build_prompt("情感倾向[正向，负向]", &parent, false) ==  //
        "ABC公司的情感倾向[正向,负向]");
  const std::string steve = "Steve";
  CHECK(build_prompt("Company", &steve, true) == "Company of Steve");
  CHECK(build_prompt("Sentiment classification [negative, positive]", &steve, true) ==
        "Sentiment classification of Steve [negative, positive]");
}

TEST_CASE("decode: PaddleNLP get_span on hand-made probabilities", "[extract][decode]") {
  // two spans; a start before the same end is replaced by the later start
  auto spans = decode_spans({0.9f, 0.1f, 0.8f, 0.1f, 0.6f, 0.7f, 0.1f},
                            {0.1f, 0.9f, 0.1f, 0.7f, 0.1f, 0.1f, 0.95f});
  REQUIRE(spans.size() == 3);
  CHECK((spans[0].start_token == 0 && spans[0].end_token == 1));
  CHECK((spans[1].start_token == 2 && spans[1].end_token == 3));
  CHECK((spans[2].start_token == 5 && spans[2].end_token == 6));  // 4 was replaced by 5
  CHECK(spans[2].probability == Approx(0.7f * 0.95f));
  // threshold is strict (p > threshold) and configurable
  CHECK(decode_spans({0.5f}, {0.5f}).empty());
  CHECK(decode_spans({0.5f}, {0.5f}, 0.4f).size() == 1);
  // an end before every start is skipped
  spans = decode_spans({0.1f, 0.9f}, {0.9f, 0.9f});
  REQUIRE(spans.size() == 1);
  CHECK((spans[0].start_token == 1 && spans[0].end_token == 1));
}

TEST_CASE("windows: overlapping plan and owner of each token", "[extract][window]") {
  CHECK(plan_windows(10, 20, 4) == std::vector<TokenWindow>{{0, 10}});
  CHECK(plan_windows(0, 20, 4) == std::vector<TokenWindow>{{0, 0}});
  const auto w = plan_windows(100, 40, 10);
  CHECK(w == std::vector<TokenWindow>{{0, 40}, {30, 70}, {60, 100}});
  // the last window is aligned to the end
  CHECK(plan_windows(95, 40, 10) == std::vector<TokenWindow>{{0, 40}, {30, 70}, {55, 95}});
  // overlap is capped at half a window, so windows always advance
  CHECK(plan_windows(10, 4, 100) == std::vector<TokenWindow>{{0, 4}, {2, 6}, {4, 8}, {6, 10}});
  CHECK_THROWS_AS(plan_windows(10, 0, 0), Error);
  // owners split each overlap in the middle: 0..34 | 35..64 | 65..99
  CHECK(window_owner(w, 0) == 0);
  CHECK(window_owner(w, 34) == 0);
  CHECK(window_owner(w, 35) == 1);
  CHECK(window_owner(w, 64) == 1);
  CHECK(window_owner(w, 65) == 2);
  CHECK(window_owner(w, 99) == 2);
}

TEST_CASE("windows: spans across a border are merged and de-duplicated", "[extract][window]") {
  const auto w = plan_windows(100, 40, 10);  // {0,40} {30,70} {60,100}
  const std::vector<std::vector<TokenSpan>> found = {
      {{2, 4, 0.9f},
       {33, 34, 0.6f},
       {36, 39, 0.8f}},  // (36,39) touches window 0's cut edge: partial
      {{33, 34, 0.7f},
       {36, 41, 0.85f},
       {50, 52, 0.9f},
       {62, 66, 0.5f},
       {68, 69, 0.9f}},  // (68,69) touches the cut
      {{62, 66, 0.99f}, {66, 69, 0.8f}, {97, 99, 0.7f}},
  };
  const auto merged = merge_window_spans(w, found, 100);
  std::vector<std::tuple<int64_t, int64_t, float>> got;
  for (const auto& s : merged) got.emplace_back(s.start_token, s.end_token, s.probability);
  const std::vector<std::tuple<int64_t, int64_t, float>> want = {
      {2, 4, 0.9f},
      {33, 34, 0.6f},   // owned by window 0 (33 < 35), which saw it whole
      {36, 41, 0.85f},  // only window 1 saw it whole; window 0's cut piece is dropped
      {50, 52, 0.9f},
      {62, 66,
       0.5f},  // owned by window 1 (62 < 65), which saw it whole: window 2's copy is ignored
      {66, 69, 0.8f},  // window 2
      {97, 99, 0.7f},
  };
  CHECK(got == want);
  // one window: everything is kept, duplicates keep the higher probability
  const auto single = merge_window_spans({{0, 5}}, {{{0, 4, 0.6f}, {0, 4, 0.7f}}}, 5);
  REQUIRE(single.size() == 1);
  CHECK(single[0].probability == 0.7f);
}

TEST_CASE("extract on the tiny UIE model: levels, windows, options and errors", "[extract][tiny]") {
  using Catch::Matchers::Contains;
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-uie", "tiny-uie");
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ExtractOptions options;
  options.threshold = 0.3f;  // random weights: a lower threshold so that something is found
  const Extractor extractor(runner, options);
  CHECK(extractor.max_seq_len() == std::min<int64_t>(512, model->max_length()));

  const Schema schema = parse_schema(json::parse(R"([{"a": ["b", "c[x,y]"]}, "d"])"));
  const std::vector<std::string> texts = {"a b c d e", "b c d e f g h a b c d"};
  const auto results = extractor.run(texts, schema);
  REQUIRE(results.size() == 2);
  // every answer's text is the text between its offsets
  const auto check_spans = [&](const auto& self, const std::string& text,
                               const Extraction& e) -> void {
    for (const auto& [name, spans] : e) {
      for (const auto& s : spans) {
        if (s.start >= 0) CHECK(substr_chars(text, s.start, s.end) == s.text);
        CHECK((s.probability > 0.09 && s.probability <= 1.0));
        self(self, text, s.relations);
      }
    }
  };
  for (size_t i = 0; i < texts.size(); ++i) check_spans(check_spans, texts[i], results[i]);
  // the JSON form mirrors the structs
  const json j = to_json(extractor.run(texts, schema));
  REQUIRE(j.size() == 2);
  for (size_t i = 0; i < texts.size(); ++i) CHECK(j[i] == to_json(results[i]));

  // a long text in small windows gives the same answers as the same text in one window,
  // wherever an answer does not depend on the extra context (here: compare the structure)
  ExtractOptions small = options;
  small.max_seq_len = 12;
  small.window_overlap = 4;
  const Extractor windowed(runner, small);
  std::string long_text;
  for (int i = 0; i < 20; ++i) long_text += "a b c d e ";
  const auto long_result = windowed.run({long_text}, parse_schema(json("d")));
  if (long_result[0].count("d")) {
    std::set<std::pair<int64_t, int64_t>> seen;
    for (const auto& s : long_result[0].at("d")) {
      CHECK(seen.insert({s.start, s.end}).second);  // no duplicates after merging
      CHECK(substr_chars(long_text, s.start, s.end) == s.text);
    }
  }

  CHECK_THAT(error_of([&] { extractor.run({"ok", ""}, schema); }), Contains("text 2: empty text"));
  CHECK_THAT(error_of([&] { extractor.run({std::string("a\xff")}, schema); }),
             Contains("text 1: invalid UTF-8"));
  ExtractOptions tight = options;
  tight.max_text_chars = 5;
  tight.max_prompts = 3;
  const Extractor limited(runner, tight);
  CHECK_THAT(error_of([&] { limited.run({"a b c d e f"}, schema); }),
             Contains("text 1: has 11 characters (at most 5)"));
  CHECK_THAT(error_of([&] {
               limited.run({"a", "b"}, schema);
             }),
             Contains("needs 4 prompts (limit 3)"));
  ExtractOptions tiny_window = options;
  tiny_window.max_seq_len = 5;
  const Extractor cramped(runner, tiny_window);
  CHECK_THAT(error_of([&] { cramped.run({"a b"}, parse_schema(json("a b c"))); }),
             Contains("no room for text"));
  ExtractOptions bad = options;
  bad.threshold = 1.5f;
  CHECK_THAT(error_of([&] { Extractor e(runner, bad); }), Contains("threshold"));

  const auto mlm = test::convert_model(test::test_data_dir() / "tiny" / "tiny-mlm", "tiny-mlm");
  DirectRunner mlm_runner(*mlm, backend);
  CHECK_THAT(error_of([&] { Extractor e(mlm_runner); }), Contains("needs a uie model"));
}

TEST_CASE("extract from 4 threads on one runner and one extractor equals serial calls",
          "[extract][tiny][threads]") {
  const auto model = test::convert_model(test::test_data_dir() / "tiny" / "tiny-uie", "tiny-uie");
  CpuRefBackend backend;
  DirectRunner runner(*model, backend);
  ExtractOptions options;
  options.threshold = 0.3f;  // random weights: a lower threshold so that something is found
  options.max_seq_len = 12;  // long texts run in several windows
  const Extractor extractor(runner, options);
  const std::vector<std::pair<std::vector<std::string>, Schema>> requests = {
      {{"a b c d e", "b c d e f g h a b c d"},
       parse_schema(json::parse(R"([{"a": ["b", "c[x,y]"]}, "d"])"))},
      {{"e d c b a e d c b a e d c b a"}, parse_schema(json::parse(R"(["a", "b c"])"))},
      {{"c", "d e"}, parse_schema(json::parse(R"({"d": ["e"]})"))},
  };
  const auto extract = [&](size_t i) {
    return to_json(extractor.run(requests[i].first, requests[i].second));
  };
  std::vector<json> serial;
  for (size_t i = 0; i < requests.size(); ++i) serial.push_back(extract(i));
  const auto threaded = test::results_from_threads(requests.size(), extract);
  for (const auto& per_thread : threaded)
    for (size_t i = 0; i < requests.size(); ++i) CHECK(per_thread[i] == serial[i]);
  CHECK(serial[0][0].size() > 0);  // something was found, so equal results say something
}

// ---- demo-uie (../shared) ---------------------------------------------------------------------

namespace {

struct DemoUie {
  std::unique_ptr<Model> model;
  json reference;
};

DemoUie open_demo_uie() {
  const auto folder = test::shared_path_or_skip("models/demo-uie");
  return {test::convert_model(folder, "demo-uie"),
          test::read_json(folder / "reference_outputs.json")};
}

ExtractOptions demo_options() {
  ExtractOptions o;
  o.max_seq_len = 128;  // the model's config value (uie_max_seq_len); see SOURCE.txt
  return o;
}

}  // namespace

TEST_CASE("demo-uie: the 14 reference cases give the same spans through the extract API",
          "[extract][real]") {
  const DemoUie demo = open_demo_uie();
  const auto& cases = demo.reference["cases"];
  REQUIRE(cases.size() == 14);
  // sequences are exactly the reference's "[CLS] prompt [SEP] text [SEP]"
  for (const auto& c : cases) {
    const PreparedText text{c["text"].get<std::string>(),
                            demo.model->tokenizer().tokenize(c["text"].get<std::string>())};
    Batch batch;
    add_window_sequence(batch, demo.model->tokenizer(),
                        demo.model->tokenizer().tokenize(c["prompt"].get<std::string>()), text,
                        {0, text.size()});
    CHECK(batch.input_ids == c["input_ids"].get<std::vector<int32_t>>());
    CHECK(batch.token_type_ids == c["token_type_ids"].get<std::vector<int32_t>>());
  }
  // all texts x all prompts in one call (one level, one batch)
  std::vector<std::string> texts;
  json prompts = json::array();
  for (const auto& c : cases) {
    if (std::find(texts.begin(), texts.end(), c["text"]) == texts.end()) texts.push_back(c["text"]);
    if (std::find(prompts.begin(), prompts.end(), c["prompt"]) == prompts.end())
      prompts.push_back(c["prompt"]);
  }
  CpuRefBackend backend;
  DirectRunner runner(*demo.model, backend);
  const Extractor extractor(runner, demo_options());
  const auto results = extractor.run(texts, parse_schema(prompts));
  size_t spans_checked = 0;
  for (const auto& c : cases) {
    const size_t t =
        static_cast<size_t>(std::find(texts.begin(), texts.end(), c["text"]) - texts.begin());
    const std::string prompt = c["prompt"];
    INFO(c["text"].get<std::string>() << " / " << prompt);
    const auto& want = c["spans"];
    const std::vector<ExtractedSpan> none;
    const auto& got = results[t].count(prompt) ? results[t].at(prompt) : none;
    REQUIRE(got.size() == want.size());
    for (size_t s = 0; s < got.size(); ++s, ++spans_checked) {
      CHECK(got[s].text == want[s]["text"].get<std::string>());
      CHECK(got[s].start == want[s]["start"].get<int64_t>());
      CHECK(got[s].end == want[s]["end"].get<int64_t>());
      CHECK(got[s].probability == Approx(want[s]["probability"].get<double>()).margin(1e-4));
      CHECK(got[s].relations.empty());
    }
  }
  CHECK(spans_checked == 13);
}

TEST_CASE(
    "demo-uie: a long text in windows finds the entities of its short parts at the same offsets",
    "[extract][real]") {
  const DemoUie demo = open_demo_uie();
  std::vector<std::string> parts;
  for (const auto& c : demo.reference["cases"])
    if (std::find(parts.begin(), parts.end(), c["text"]) == parts.end()) parts.push_back(c["text"]);
  CpuRefBackend backend;
  DirectRunner runner(*demo.model, backend);
  const Extractor extractor(runner, demo_options());
  const Schema schema = parse_schema(json::parse(R"(["人名", "地址"])"));
  const auto short_results = extractor.run(parts, schema);

  std::string long_text;
  std::set<std::tuple<std::string, int64_t, int64_t>> expected;
  std::set<int64_t> part_starts;
  size_t per_copy = 0;
  for (const auto& r : short_results)
    for (const auto& [name, spans] : r) per_copy += spans.size();
  int64_t offset = 0;
  constexpr int kCopies = 8;  // 37 windows per prompt
  for (int copy = 0; copy < kCopies; ++copy) {
    for (size_t p = 0; p < parts.size(); ++p) {
      for (const auto& [name, spans] : short_results[p])
        for (const auto& s : spans) expected.insert({name, s.start + offset, s.end + offset});
      part_starts.insert(offset);
      long_text += parts[p];
      offset += static_cast<int64_t>(detail::decode_utf8(parts[p]).code_points.size());
    }
  }
  const auto long_result = extractor.run({long_text}, schema);
  std::set<std::tuple<std::string, int64_t, int64_t>> found;
  for (const auto& [name, spans] : long_result[0])
    for (const auto& s : spans) {
      CHECK(found.insert({name, s.start, s.end}).second);  // merged: no duplicates
      CHECK(substr_chars(long_text, s.start, s.end) == s.text);
    }
  size_t recalled = 0, missed_at_part_start = 0;
  for (const auto& e : expected) {
    recalled += found.count(e);
    if (!found.count(e) && part_starts.count(std::get<1>(e))) ++missed_at_part_start;
  }
  const size_t windows =
      plan_windows(static_cast<int64_t>(demo.model->tokenizer().tokenize(long_text).size()),
                   128 - 3 - 2, ExtractOptions{}.window_overlap)
          .size();
  INFO(long_text.size() << " bytes, " << windows << " windows per prompt; " << recalled << " of "
                        << expected.size() << " short-text entities found (" << missed_at_part_start
                        << " of the misses start a part), " << found.size() << " spans in all");
  CHECK(windows > 20);
  CHECK(expected.size() == kCopies * per_copy);
  // In the long text a sentence is read among its neighbours, not alone between [SEP]s, and
  // this weak model (trained on single sentences) then misses some entities, mostly at the start
  // of a sentence; measured 108 of 144. Window borders must not add losses on top of that.
  CHECK(recalled >= expected.size() * 70 / 100);
}

TEST_CASE("demo-uie: a relation schema runs both levels with child prompts", "[extract][real]") {
  const DemoUie demo = open_demo_uie();
  CpuRefBackend backend;
  DirectRunner runner(*demo.model, backend);
  const Extractor extractor(runner, demo_options());
  const std::string text = "张三在北京大学工作，他是一名教授。";
  const std::string schema = R"([{"人名": ["职位", "情感倾向[正向，负向]"]}])";
  const auto results = extractor.run({text}, parse_schema(json::parse(schema)));
  REQUIRE(results[0].count("人名"));
  const auto& people = results[0].at("人名");
  REQUIRE(people.size() == 1);
  CHECK(people[0].text == "张三");
  // "张三的职位" is asked of the text: the answer, if any, lies in the text
  if (people[0].relations.count("职位"))
    for (const auto& s : people[0].relations.at("职位"))
      CHECK(substr_chars(text, s.start, s.end) == s.text);
  // a classification answer is a piece of its prompt "张三的情感倾向[正向,负向]" and has
  // no offsets
  if (people[0].relations.count("情感倾向[正向，负向]")) {
    const auto& answer = people[0].relations.at("情感倾向[正向，负向]");
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].start == -1);
    const std::string prompt = "张三的情感倾向[正向,负向]";
    CHECK(prompt.find(answer[0].text) != std::string::npos);
  }
  const json j = to_json(results[0]);
  CHECK(j["人名"][0]["text"] == "张三");
  CHECK(j["人名"][0]["start"] == 0);
  CHECK(j["人名"][0]["end"] == 2);
}
