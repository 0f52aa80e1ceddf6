// Fuzz target: the WordPiece tokenizer on one text or a pair, under every option, max length and
// truncation strategy. Input: option byte, max-length byte, truncation byte, then the text (a
// pair when it holds "\n----\n").
#include <fstream>
#include <map>
#include <memory>

#include "fuzz_support.hpp"
#include "tinybert/tokenizer.hpp"

using namespace tinybert;

namespace {

// The tiny models' vocab and a few more pieces, so that Latin words split into several.
const std::string& vocab_text() {
  static const std::string vocab = [] {
    std::ifstream in(std::string(TINYBERT_TEST_DATA_DIR) + "/tiny/tiny-bert/vocab.txt");
    std::string text(std::istreambuf_iterator<char>(in), {});
    if (!text.empty() && text.back() != '\n') text += '\n';
    return text + "a\nb\n##a\n##b\nhe\n##llo\n##é\nx\n##x\n";
  }();
  return vocab;
}

// Option bits: 0 lower case, 1-2 strip accents (follow / no / yes), 3 Chinese characters,
// 4 clean text, 5 max_input_chars_per_word 3 instead of 100.
const Tokenizer& tokenizer_for(uint8_t bits) {
  static std::map<uint8_t, std::unique_ptr<Tokenizer>> cache;
  bits &= 0x3f;
  auto& slot = cache[bits];
  if (!slot) {
    TokenizerOptions o;
    o.do_lower_case = bits & 1;
    if (((bits >> 1) & 3) == 1) o.strip_accents = false;
    if (((bits >> 1) & 3) >= 2) o.strip_accents = true;
    o.tokenize_chinese_chars = bits & 8;
    o.clean_text = bits & 16;
    o.max_input_chars_per_word = bits & 32 ? 3 : 100;
    slot = std::make_unique<Tokenizer>(Tokenizer::from_vocab_text(vocab_text(), o));
  }
  return *slot;
}

// The tokens of one text inside an encoding, [begin, end): ids and strings agree with the vocab,
// offsets lie inside the text, in order, and byte offsets are the code point offsets in bytes.
void check_sequence(const Tokenizer& t, const Encoding& e, size_t begin, size_t end,
                    std::string_view text, int8_t sequence_id) {
  const detail::DecodedText decoded = detail::decode_utf8(text);
  const auto chars = static_cast<int32_t>(decoded.code_points.size());
  Offset previous{0, 0};
  for (size_t i = begin; i < end; ++i) {
    const std::string at = "token " + std::to_string(i) + " '" + e.tokens[i] + "'";
    FUZZ_CHECK(e.ids[i] >= 0 && static_cast<size_t>(e.ids[i]) < t.vocab_size(), at + ": id");
    FUZZ_CHECK(t.id_to_token(e.ids[i]) == e.tokens[i], at + ": string is not its id's");
    FUZZ_CHECK(e.sequence_ids[i] == sequence_id && e.type_ids[i] == sequence_id,
               at + ": sequence / type id");
    const Offset o = e.offsets[i];
    FUZZ_CHECK(0 <= o.start && o.start <= o.end && o.end <= chars,
               at + ": offsets [" + std::to_string(o.start) + ", " + std::to_string(o.end) +
                   ") outside the text's " + std::to_string(chars) + " characters");
    FUZZ_CHECK(o.start >= previous.start && o.end >= previous.end, at + ": offsets go backwards");
    FUZZ_CHECK(e.byte_offsets[i].start == static_cast<int32_t>(decoded.byte_starts[o.start]) &&
                   e.byte_offsets[i].end == static_cast<int32_t>(decoded.byte_starts[o.end]),
               at + ": byte offsets do not match the character offsets");
    previous = o;
  }
}

void check_special(const Encoding& e, size_t i, int32_t id, int32_t type_id) {
  FUZZ_CHECK(i < e.size() && e.ids[i] == id && e.sequence_ids[i] == -1 &&
                 e.type_ids[i] == type_id && e.offsets[i] == Offset{},
             "added special token " + std::to_string(i));
}

void check_shape(const Encoding& e) {
  const size_t n = e.ids.size();
  FUZZ_CHECK(e.type_ids.size() == n && e.tokens.size() == n && e.offsets.size() == n &&
                 e.byte_offsets.size() == n && e.sequence_ids.size() == n,
             "encoding vectors differ in length");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const uint8_t bits = fuzz::take_byte(input);
  const size_t max_length = fuzz::take_byte(input);  // 0: no limit
  const auto truncation = static_cast<Truncation>(fuzz::take_byte(input) % 4);
  const Tokenizer& t = tokenizer_for(bits);
  const auto texts = fuzz::split_parts(input, 2);

  // One text: the words alone, then with [CLS] / [SEP] and cut to max_length.
  for (std::string_view text : texts) {
    Encoding words;
    if (!fuzz::ok_or_error([&] { words = t.tokenize(text); })) continue;
    check_shape(words);
    check_sequence(t, words, 0, words.size(), text, 0);
    fuzz::ok_or_error([&] {
      const Encoding e = t.encode(text, max_length);
      check_shape(e);
      FUZZ_CHECK(max_length == 0 || e.size() <= max_length, "longer than max_length");
      FUZZ_CHECK(e.size() >= 2, "no room for [CLS] and [SEP]");
      check_special(e, 0, t.cls_id(), 0);
      check_special(e, e.size() - 1, t.sep_id(), 0);
      check_sequence(t, e, 1, e.size() - 1, text, 0);
      // truncation keeps a prefix of the words
      FUZZ_CHECK(e.size() - 2 <= words.size() &&
                     std::equal(e.ids.begin() + 1, e.ids.end() - 1, words.ids.begin()),
                 "encode is not a prefix of tokenize");
    });
  }
  if (texts.size() == 2) {
    fuzz::ok_or_error([&] {
      const Encoding e = t.encode_pair(texts[0], texts[1], max_length, truncation);
      check_shape(e);
      if (max_length != 0 && truncation != Truncation::do_not_truncate)
        FUZZ_CHECK(e.size() <= max_length, "pair longer than max_length");
      // [CLS] a [SEP] b [SEP]
      size_t first_sep = 1;
      while (first_sep < e.size() && e.sequence_ids[first_sep] == 0) ++first_sep;
      check_special(e, 0, t.cls_id(), 0);
      check_special(e, first_sep, t.sep_id(), 0);
      check_special(e, e.size() - 1, t.sep_id(), 1);
      check_sequence(t, e, 1, first_sep, texts[0], 0);
      check_sequence(t, e, first_sep + 1, e.size() - 1, texts[1], 1);
    });
  }
  return 0;
}
