// Tests for tinybert::Tokenizer: goldens from tests/tools/make_tokenizer_goldens.py, the
// reference outputs of the models in ../shared/models, vocab loading and error handling.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "tinybert/tokenizer.hpp"

namespace {

using tinybert::Encoding;
using tinybert::Offset;
using tinybert::Tokenizer;
using tinybert::TokenizerOptions;
using tinybert::Truncation;
using json = nlohmann::json;
namespace fs = std::filesystem;

const fs::path kSharedModels = tinybert::test::shared_dir() / "models";
const fs::path kGoldens = tinybert::test::test_data_dir() / "tokenizer_goldens.json";

using tinybert::test::read_json;

// The reference files store lists as Python-repr strings; numeric lists are valid JSON.
json list_field(const json& value) {
  return value.is_string() ? json::parse(value.get<std::string>()) : value;
}

Truncation parse_truncation(const std::string& name) {
  if (name == "longest_first") return Truncation::longest_first;
  if (name == "only_first") return Truncation::only_first;
  if (name == "only_second") return Truncation::only_second;
  if (name == "do_not_truncate") return Truncation::do_not_truncate;
  FAIL("unknown truncation " << name);
  return Truncation::longest_first;
}

TokenizerOptions options_from(const json& spec) {
  TokenizerOptions options;
  options.do_lower_case = spec.at("do_lower_case").get<bool>();
  if (!spec.at("strip_accents").is_null())
    options.strip_accents = spec["strip_accents"].get<bool>();
  options.clean_text = spec.value("clean_text", true);
  options.tokenize_chinese_chars = spec.value("tokenize_chinese_chars", true);
  options.max_input_chars_per_word = spec.value("max_input_chars_per_word", 100);
  return options;
}

std::string vocab_text_from_lines(const json& lines) {
  std::string text;
  for (const auto& line : lines) text += line.get<std::string>() + "\n";
  return text;
}

// Byte offsets must select exactly the characters the code-point offsets select, in the text
// the token came from; template-added specials have (0,0) in both.
void check_byte_offsets(const Encoding& e, std::string_view text, std::string_view text_b = {}) {
  const tinybert::detail::DecodedText decoded[2] = {tinybert::detail::decode_utf8(text),
                                                    tinybert::detail::decode_utf8(text_b)};
  for (size_t i = 0; i < e.size(); ++i) {
    const Offset cp = e.offsets[i], bytes = e.byte_offsets[i];
    if (e.sequence_ids[i] < 0) {
      CHECK(cp == Offset{});
      CHECK(bytes == Offset{});
      continue;
    }
    const auto& d = decoded[e.sequence_ids[i] == 1 ? 1 : 0];
    REQUIRE(cp.start < cp.end);
    REQUIRE(static_cast<size_t>(cp.end) <= d.code_points.size());
    CHECK(bytes.start == static_cast<int32_t>(d.byte_starts[static_cast<size_t>(cp.start)]));
    CHECK(bytes.end == static_cast<int32_t>(d.byte_starts[static_cast<size_t>(cp.end)]));
  }
}

void check_sequence_ids(const Encoding& e, const std::string& kind) {
  REQUIRE(e.sequence_ids.size() == e.size());
  if (kind == "tokenize") {
    for (auto s : e.sequence_ids) CHECK(s == 0);
    return;
  }
  CHECK(e.sequence_ids.front() == -1);
  CHECK(e.sequence_ids.back() == -1);
  for (size_t i = 0; i < e.size(); ++i) {
    if (e.sequence_ids[i] >= 0) CHECK(e.type_ids[i] == e.sequence_ids[i]);
  }
}

std::vector<std::vector<int32_t>> offsets_as_lists(const std::vector<Offset>& offsets) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& o : offsets) out.push_back({o.start, o.end});
  return out;
}

// Runs every golden case whose vocab is inline (`shared` false) or a file in ../shared.
size_t run_goldens(bool shared) {
  const json goldens = read_json(kGoldens);
  std::map<std::string, Tokenizer> tokenizers;
  for (const auto& [name, spec] : goldens.at("vocabs").items()) {
    if (spec.contains("file") != shared) continue;
    const TokenizerOptions options = options_from(spec);
    if (shared) {
      tokenizers.emplace(name,
                         Tokenizer::from_vocab_file(
                             (kSharedModels / spec["file"].get<std::string>()).string(), options));
    } else {
      tokenizers.emplace(
          name, Tokenizer::from_vocab_text(vocab_text_from_lines(spec["tokens"]), options));
    }
  }
  size_t count = 0;
  for (const auto& c : goldens.at("cases")) {
    const auto found = tokenizers.find(c.at("vocab").get<std::string>());
    if (found == tokenizers.end()) continue;
    const Tokenizer& tok = found->second;
    const std::string kind = c.at("kind"), text = c.at("text");
    const size_t max_length = c.value("max_length", size_t{512});
    INFO("vocab " << c["vocab"] << ", kind " << kind << ", text " << json(text).dump()
                  << (c.contains("text_b") ? ", text_b " + c["text_b"].dump() : std::string())
                  << ", max_length " << max_length << ", " << c.value("truncation", std::string()));
    Encoding e;
    if (kind == "tokenize") {
      e = tok.tokenize(text);
    } else if (kind == "encode") {
      e = tok.encode(text, max_length);
    } else {
      const std::string text_b = c.at("text_b");
      const Truncation strategy = parse_truncation(c.value("truncation", "longest_first"));
      if (c.value("error", false)) {
        CHECK_THROWS_AS(tok.encode_pair(text, text_b, max_length, strategy), tinybert::Error);
        ++count;
        continue;
      }
      e = tok.encode_pair(text, text_b, max_length, strategy);
    }
    CHECK(e.tokens == c.at("tokens").get<std::vector<std::string>>());
    CHECK(e.ids == c.at("ids").get<std::vector<int32_t>>());
    CHECK(e.type_ids == c.at("type_ids").get<std::vector<int32_t>>());
    CHECK(offsets_as_lists(e.offsets) == c.at("offsets").get<std::vector<std::vector<int32_t>>>());
    check_sequence_ids(e, kind);
    check_byte_offsets(e, text, c.value("text_b", std::string()));
    ++count;
  }
  return count;
}

Tokenizer tiny_tokenizer(TokenizerOptions options = {}) {
  return Tokenizer::from_vocab_text(
      "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\n", std::move(options));
}

}  // namespace

TEST_CASE("tokenizer goldens, inline vocabs", "[tokenizer]") {
  if (!fs::exists(kGoldens)) FAIL("missing " << kGoldens);
  CHECK(run_goldens(false) > 100);
}

TEST_CASE("invalid UTF-8 is an Error naming the byte", "[tokenizer]") {
  const Tokenizer tok = tiny_tokenizer();
  struct Bad {
    std::string text;
    size_t position;
  };
  const std::vector<Bad> cases = {
      {std::string("hello \x80 world"), 6},                // lone continuation byte
      {std::string("ok \xF0\x9F\x98"), 3},                 // truncated 4-byte sequence at the end
      {std::string("ab\xF0\x9F\x98x"), 2},                 // truncated 4-byte sequence mid-text
      {std::string("xyz\xC0\xAF"), 3},                     // overlong '/'
      {std::string("\xE0\x80\xAF"), 0},                    // overlong 3-byte form
      {std::string("\xF0\x80\x80\xAF"), 0},                // overlong 4-byte form
      {std::string("0123456789abcdefg\xED\xA0\x80"), 17},  // UTF-16 surrogate U+D800
      {std::string("a\xF4\x90\x80\x80"), 1},               // above U+10FFFF
      {std::string("end\xFF"), 3},                         // 0xFF never appears in UTF-8
      {std::string("\xC3"), 0},                            // lone lead byte
  };
  for (const auto& bad : cases) {
    INFO(json(std::vector<uint8_t>(bad.text.begin(), bad.text.end())).dump());
    try {
      (void)tok.encode(bad.text);
      FAIL("no Error thrown");
    } catch (const tinybert::Error& e) {
      const std::string message = e.what();
      CHECK(message.find("invalid UTF-8 at byte " + std::to_string(bad.position) + " ") !=
            std::string::npos);
    }
    CHECK_THROWS_AS(tok.tokenize(bad.text), tinybert::Error);
    CHECK_THROWS_AS(tok.encode_pair("ok", bad.text), tinybert::Error);
  }
  // The longest valid sequences pass.
  CHECK_NOTHROW(tok.encode("\xF4\x8F\xBF\xBF \xEF\xBF\xBF \xED\x9F\xBF \xC2\x80"));
}

TEST_CASE("vocab loading", "[tokenizer]") {
  SECTION("final newline, CRLF and no final newline give the same vocab") {
    const auto a = Tokenizer::from_vocab_text("[UNK]\n[CLS]\n[SEP]\nx\n");
    const auto b = Tokenizer::from_vocab_text("[UNK]\r\n[CLS]\r\n[SEP]\r\nx\r\n");
    const auto c = Tokenizer::from_vocab_text("[UNK]\n[CLS]\n[SEP]\nx");
    for (const auto* t : {&a, &b, &c}) {
      CHECK(t->vocab_size() == 4);
      CHECK(t->token_to_id("x") == 3);
      CHECK(t->unk_id() == 0);
      CHECK(t->cls_id() == 1);
      CHECK(t->sep_id() == 2);
      CHECK(t->pad_id() == -1);
      CHECK(t->mask_id() == -1);
      CHECK(t->id_to_token(3) == "x");
    }
  }
  SECTION("empty lines in the middle are tokens; a duplicate maps to its last line (as HF)") {
    const auto t = Tokenizer::from_vocab_text("[UNK]\n\n[CLS]\n[SEP]\nx\nx\n");
    CHECK(t.vocab_size() == 6);
    CHECK(t.token_to_id("") == 1);
    CHECK(t.token_to_id("x") == 5);
    CHECK(t.id_to_token(4) == "x");
    CHECK(t.encode("x").ids == std::vector<int32_t>{2, 5, 3});
  }
  SECTION("file and text loading agree") {
    const fs::path path = fs::temp_directory_path() / "tinybert_test_vocab.txt";
    { std::ofstream(path, std::ios::binary) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n"; }
    const auto t = Tokenizer::from_vocab_file(path.string());
    fs::remove(path);
    CHECK(t.vocab_size() == 6);
    CHECK(t.encode("Hello [MASK]").ids == std::vector<int32_t>{2, 5, 4, 3});
  }
  SECTION("errors") {
    CHECK_THROWS_AS(Tokenizer::from_vocab_text(""), tinybert::Error);
    CHECK_THROWS_AS(Tokenizer::from_vocab_text("[CLS]\n[SEP]\nx\n"), tinybert::Error);  // no [UNK]
    CHECK_THROWS_AS(Tokenizer::from_vocab_text("[UNK]\n[SEP]\n"), tinybert::Error);     // no [CLS]
    CHECK_THROWS_AS(Tokenizer::from_vocab_text("[UNK]\n[CLS]\n"), tinybert::Error);     // no [SEP]
    CHECK_THROWS_AS(Tokenizer::from_vocab_text("[UNK]\n[CLS]\n[SEP]\n\xFF\n"), tinybert::Error);
    CHECK_THROWS_AS(Tokenizer::from_vocab_file("/nonexistent/vocab.txt"), tinybert::Error);
    try {
      (void)Tokenizer::from_vocab_text("[CLS]\n[SEP]\n");
    } catch (const tinybert::Error& e) {
      CHECK(std::string(e.what()).find("[UNK]") != std::string::npos);
    }
  }
  SECTION("custom special tokens") {
    TokenizerOptions options;
    options.unk_token = "<unk>";
    options.cls_token = "<s>";
    options.sep_token = "</s>";
    const auto t = Tokenizer::from_vocab_text("<unk>\n<s>\n</s>\nhi\n", options);
    const Encoding e = t.encode("hi<s>zz");
    CHECK(e.tokens == std::vector<std::string>{"<s>", "hi", "<s>", "<unk>", "</s>"});
    CHECK(e.offsets == std::vector<Offset>{{0, 0}, {0, 2}, {2, 5}, {5, 7}, {0, 0}});
  }
}

TEST_CASE("API details", "[tokenizer]") {
  const Tokenizer tok = tiny_tokenizer();
  CHECK_THROWS_AS(tok.id_to_token(-1), tinybert::Error);
  CHECK_THROWS_AS(tok.id_to_token(9), tinybert::Error);
  CHECK(tok.token_to_id("nope") == -1);
  CHECK(tok.options().do_lower_case);

  const Encoding e = tok.encode("Unaffable héllo");
  CHECK(e.tokens == std::vector<std::string>{"[CLS]", "un", "##aff", "##able", "hello", "[SEP]"});
  CHECK(e.offsets == std::vector<Offset>{{0, 0}, {0, 2}, {2, 5}, {5, 9}, {10, 15}, {0, 0}});
  CHECK(e.byte_offsets == std::vector<Offset>{{0, 0}, {0, 2}, {2, 5}, {5, 9}, {10, 16}, {0, 0}});
  CHECK(e.sequence_ids == std::vector<int8_t>{-1, 0, 0, 0, 0, -1});

  CHECK(tok.encode("hello hello hello", 0).size() == 5);  // no limit
  CHECK(tok.encode("hello hello hello", 3).tokens ==
        std::vector<std::string>{"[CLS]", "hello", "[SEP]"});
  CHECK(tok.encode("hello", 2).size() == 2);
  CHECK_THROWS_AS(tok.encode("hello", 1), tinybert::Error);
  CHECK_THROWS_AS(tok.encode_pair("a", "b", 2), tinybert::Error);
  CHECK(tok.encode_pair("hello", "hello hello", 3, Truncation::only_second).size() == 3);
  CHECK_THROWS_AS(tok.encode_pair("hello", "hello hello", 4, Truncation::only_second),
                  tinybert::Error);  // HF keeps at least one token of the truncated text
  CHECK(tok.encode_pair("hello hello", "hello hello", 4, Truncation::do_not_truncate).size() == 7);

  const Encoding p = tok.encode_pair("hello", "unaffable");
  CHECK(p.type_ids == std::vector<int32_t>{0, 0, 0, 1, 1, 1, 1});
  CHECK(p.sequence_ids == std::vector<int8_t>{-1, 0, -1, 1, 1, 1, -1});
  CHECK(p.offsets[3] == Offset{0, 2});  // offsets of the second text are into the second text

  // A word longer than max_input_chars_per_word (in code points) is one [UNK] over the word.
  TokenizerOptions options;
  options.max_input_chars_per_word = 3;
  const Tokenizer short_words = tiny_tokenizer(options);
  const Encoding u = short_words.tokenize("éééé un");
  CHECK(u.tokens == std::vector<std::string>{"[UNK]", "un"});
  CHECK(u.offsets == std::vector<Offset>{{0, 4}, {5, 7}});
  CHECK(u.byte_offsets == std::vector<Offset>{{0, 8}, {9, 11}});
}

TEST_CASE("random input: valid UTF-8 tokenizes consistently, invalid throws Error", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::from_vocab_text(
      "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n##a\nb\n##b\n\xC3\xA9\n\xE4\xB8\xAD\n");
  std::mt19937 rng(12345);
  // Code points drawn from ranges that exercise every rule: ASCII, Latin with accents,
  // combining marks, CJK, controls, whitespace, unassigned and private use, emoji.
  const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x00, 0x7F},     {0xC0, 0x17F},    {0x300, 0x36F},   {0x4E00, 0x4E2F},   {0x2000, 0x206F},
      {0x3000, 0x3003}, {0xFFF0, 0xFFFD}, {0xE000, 0xE003}, {0x1F600, 0x1F64F}, {0x130, 0x131}};
  for (int round = 0; round < 300; ++round) {
    std::string text;
    const int length = static_cast<int>(rng() % 40);
    for (int i = 0; i < length; ++i) {
      const auto& [low, high] = ranges[rng() % ranges.size()];
      const char32_t cp = low + static_cast<char32_t>(rng() % (high - low + 1));
      if (rng() % 10 == 0) text += "[MASK]";
      tinybert::detail::append_utf8(text, cp);
    }
    INFO(json(text).dump());
    const Encoding e = tok.encode_pair(text, text, 0);
    check_byte_offsets(e, text, text);
    for (size_t i = 1; i + 1 < e.size(); ++i) {
      if (e.sequence_ids[i] == e.sequence_ids[i - 1] && e.sequence_ids[i] >= 0) {
        CHECK(e.offsets[i].start >= e.offsets[i - 1].start);
      }
    }
    // Random bytes: either an Error or a consistent encoding, never a crash.
    std::string bytes;
    for (int i = 0; i < length; ++i) bytes += static_cast<char>(rng() % 256);
    try {
      check_byte_offsets(tok.encode(bytes, 0), bytes);
    } catch (const tinybert::Error& error) {
      CHECK(std::string(error.what()).find("invalid UTF-8 at byte ") == 0);
    }
  }
}

// Tests that need ../shared come last: a skip ends the process (Catch2 2.13 has no SKIP).
TEST_CASE("tokenizer goldens, ../shared vocabs", "[tokenizer][shared]") {
  if (!fs::exists(kSharedModels))
    tinybert::test::skip("../shared/models not found: " + kSharedModels.string());
  CHECK(run_goldens(true) > 300);
}

TEST_CASE("bge-small-zh-v1.5 reference ids (Transformers.js)", "[tokenizer][shared]") {
  const fs::path dir = kSharedModels / "bge-small-zh-v1.5";
  if (!fs::exists(dir)) tinybert::test::skip("../shared/models not found: " + dir.string());
  TokenizerOptions options;
  options.do_lower_case = false;
  const Tokenizer tok = Tokenizer::from_vocab_file((dir / "vocab.txt").string(), options);
  const json ref = read_json(dir / "reference_outputs.json");
  REQUIRE(ref.at("entries").size() == 13);
  for (const auto& entry : ref["entries"]) {
    const std::string sentence = entry.at("sentence");
    INFO(sentence);
    const Encoding e = tok.encode(sentence);
    CHECK(e.ids == list_field(entry.at("input_ids")).get<std::vector<int32_t>>());
    CHECK(e.type_ids == list_field(entry.at("token_type_ids")).get<std::vector<int32_t>>());
    check_byte_offsets(e, sentence);
  }
}

TEST_CASE("demo-uie reference ids and text offsets", "[tokenizer][shared]") {
  const fs::path dir = kSharedModels / "demo-uie";
  if (!fs::exists(dir)) tinybert::test::skip("../shared/models not found: " + dir.string());
  const Tokenizer tok = Tokenizer::from_vocab_file((dir / "vocab.txt").string());  // lower case
  const json ref = read_json(dir / "reference_outputs.json");
  REQUIRE(ref.at("cases").size() == 14);
  for (const auto& c : ref["cases"]) {
    const std::string prompt = c.at("prompt"), text = c.at("text");
    INFO(prompt << " | " << text);
    const Encoding e = tok.encode_pair(prompt, text, 128);
    CHECK(e.ids == list_field(c.at("input_ids")).get<std::vector<int32_t>>());
    CHECK(e.type_ids == list_field(c.at("token_type_ids")).get<std::vector<int32_t>>());
    std::vector<std::vector<int32_t>> text_offsets;
    for (size_t i = 0; i < e.size(); ++i) {
      if (e.sequence_ids[i] == 1) text_offsets.push_back({e.offsets[i].start, e.offsets[i].end});
    }
    CHECK(text_offsets ==
          list_field(c.at("text_offsets")).get<std::vector<std::vector<int32_t>>>());
    const auto first_text_token =
        static_cast<size_t>(std::find(e.sequence_ids.begin(), e.sequence_ids.end(), int8_t{1}) -
                            e.sequence_ids.begin());
    CHECK(first_text_token == list_field(c.at("text_token_start")).get<size_t>());
    check_byte_offsets(e, prompt, text);
  }
}

TEST_CASE("demo-mlm reference ids", "[tokenizer][shared]") {
  const fs::path dir = kSharedModels / "demo-mlm";
  if (!fs::exists(dir)) tinybert::test::skip("../shared/models not found: " + dir.string());
  TokenizerOptions options;
  options.do_lower_case = false;
  const Tokenizer tok = Tokenizer::from_vocab_file((dir / "vocab.txt").string(), options);
  const json ref = read_json(dir / "reference_outputs.json");
  REQUIRE(ref.at("cases").size() == 15);
  for (const auto& c : ref["cases"]) {
    const std::string text = c.at("text");
    INFO(text);
    const Encoding e = tok.encode(text);
    CHECK(e.ids == list_field(c.at("input_ids")).get<std::vector<int32_t>>());
    for (const auto& mask : c.at("masks")) {
      const auto position = mask.at("position").get<size_t>();
      REQUIRE(position < e.size());
      CHECK(e.ids[position] == tok.mask_id());
    }
  }
}
