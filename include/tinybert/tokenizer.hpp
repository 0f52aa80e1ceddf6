// BERT WordPiece tokenizer, HF-exact (tokenizers' BertNormalizer + BertPreTokenizer + WordPiece +
// TemplateProcessing), with code-point and byte offsets into the original text. Header-only.
//
// Where HF's slow (Python) and fast (Rust) tokenizers disagree, this follows the fast one,
// because that is what AutoTokenizer, tokenizer.json and Transformers.js use, and the only one
// that reports offsets. The differences are noted where they matter.
#pragma once

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tinybert/error.hpp"

namespace tinybert {

struct TokenizerOptions {
  bool do_lower_case = true;
  std::optional<bool> strip_accents;  // nullopt: follow do_lower_case (HF)
  bool tokenize_chinese_chars = true;
  bool clean_text = true;
  int max_input_chars_per_word = 100;
  std::string unk_token = "[UNK]", cls_token = "[CLS]", sep_token = "[SEP]", pad_token = "[PAD]",
              mask_token = "[MASK]";
};

struct Offset {
  int32_t start = 0, end = 0;  // [start, end)
  friend bool operator==(const Offset&, const Offset&) = default;
};

struct Encoding {
  std::vector<int32_t> ids, type_ids;
  std::vector<std::string> tokens;
  std::vector<Offset> offsets;  // code points into the original text ((0,0) for added specials)
  std::vector<Offset> byte_offsets;  // bytes into the original text
  std::vector<int8_t> sequence_ids;  // 0 first text, 1 second text, -1 added special token
  size_t size() const { return ids.size(); }
};

enum class Truncation { longest_first, only_first, only_second, do_not_truncate };

namespace detail {

// Code points of a validated UTF-8 text and where each one starts; byte_starts has one extra
// entry (the text length) so that byte_starts[i + 1] is where code point i ends.
struct DecodedText {
  std::vector<char32_t> code_points;
  std::vector<uint32_t> byte_starts;
};

[[noreturn]] inline void throw_invalid_utf8(size_t position, unsigned char byte, const char* why) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string message = "invalid UTF-8 at byte " + std::to_string(position) + " (0x";
  message += hex[byte >> 4];
  message += hex[byte & 15];
  message += "): ";
  message += why;
  throw Error(message);
}

// Strict UTF-8 decoding (RFC 3629): rejects overlong forms, surrogates, code points above
// U+10FFFF and truncated sequences. The error names the byte where the bad sequence starts.
inline DecodedText decode_utf8(std::string_view text) {
  // Offsets are int32_t, as HF's and the model's position ids are.
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    throw Error("text too long: " + std::to_string(text.size()) + " bytes (at most 2^31 - 1)");
  }
  DecodedText out;
  out.code_points.reserve(text.size());
  out.byte_starts.reserve(text.size() + 1);
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    const unsigned char lead = bytes[i];
    char32_t cp = 0;
    size_t length = 0;
    // The allowed range of the second byte depends on the lead byte: that is what rules out
    // overlong forms (E0, F0), surrogates (ED) and values above U+10FFFF (F4).
    unsigned char second_min = 0x80, second_max = 0xBF;
    if (lead < 0x80) {
      cp = lead, length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      cp = lead & 0x1F, length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      cp = lead & 0x0F, length = 3;
      if (lead == 0xE0) second_min = 0xA0;
      if (lead == 0xED) second_max = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      cp = lead & 0x07, length = 4;
      if (lead == 0xF0) second_min = 0x90;
      if (lead == 0xF4) second_max = 0x8F;
    } else if (lead >= 0x80 && lead <= 0xBF) {
      throw_invalid_utf8(i, lead, "continuation byte without a lead byte");
    } else {
      throw_invalid_utf8(i, lead, lead <= 0xC1 ? "overlong encoding" : "byte never valid in UTF-8");
    }
    if (i + length > size) throw_invalid_utf8(i, lead, "truncated sequence at end of text");
    for (size_t k = 1; k < length; ++k) {
      const unsigned char next = bytes[i + k];
      const unsigned char low = k == 1 ? second_min : 0x80, high = k == 1 ? second_max : 0xBF;
      if (next < low || next > high) {
        const char* why = "truncated or malformed sequence";
        if (k == 1 && next >= 0x80 && next <= 0xBF) {
          why = lead == 0xED   ? "surrogate code point"
                : lead == 0xF4 ? "code point above U+10FFFF"
                               : "overlong encoding";
        }
        throw_invalid_utf8(i, lead, why);
      }
      cp = (cp << 6) | (next & 0x3F);
    }
    out.code_points.push_back(cp);
    out.byte_starts.push_back(static_cast<uint32_t>(i));
    i += length;
  }
  out.byte_starts.push_back(static_cast<uint32_t>(size));
  return out;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline utf8proc_category_t category(char32_t cp) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

// Rust's char::is_whitespace (the Unicode White_Space property), as BertNormalizer and
// BertPreTokenizer use it: \t..\r, U+0085 and the Z* categories.
inline bool is_whitespace(char32_t cp) {
  if (cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0x85) return true;
  if (cp < 0x80) return false;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

// HF fast's is_control is unicode_categories' is_other: Cc, Cf, Cn, Co (Cs cannot occur in
// valid UTF-8). The slow tokenizer drops only Cc and Cf; unassigned and private-use code points
// are where the two differ.
inline bool is_control(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CN ||
         c == UTF8PROC_CATEGORY_CO || c == UTF8PROC_CATEGORY_CS;
}

// BERT counts all non-alphanumeric ASCII as punctuation ($, +, ^, ...), plus every Unicode P*.
inline bool is_punctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126)) {
    return true;
  }
  if (cp < 0x80) return false;
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

// The CJK ranges hard-coded by BERT (and by HF tokenizers' bert.rs, which we copy: it starts
// the Extension E range at U+2B920, where Python's BasicTokenizer starts at U+2B820).
inline bool is_chinese_char(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

inline bool is_nonspacing_mark(char32_t cp) {
  return cp >= 0x300 && category(cp) == UTF8PROC_CATEGORY_MN;
}

// A character of the normalised text and the original code point it came from: every
// BertNormalizer step maps one original character to zero or more normalised ones, so this
// one index is all the alignment needed (HF's NormalizedString keeps byte ranges instead).
struct NormalizedChar {
  char32_t cp;
  int32_t source;
};

// Canonical decomposition (NFD) of one code point; Hangul syllables decompose too.
inline size_t decompose(char32_t cp, std::array<utf8proc_int32_t, 8>& buffer) {
  int boundclass = 0;
  const auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buffer.data(),
                                         static_cast<utf8proc_ssize_t>(buffer.size()),
                                         UTF8PROC_DECOMPOSE, &boundclass);
  if (n < 0 || static_cast<size_t>(n) > buffer.size()) {  // cannot happen for NFD (at most 4)
    buffer[0] = static_cast<utf8proc_int32_t>(cp);
    return 1;
  }
  return static_cast<size_t>(n);
}

// Rust's char::to_lowercase: the simple mapping, except U+0130 whose full (unconditional
// SpecialCasing) lower case is "i" + U+0307. utf8proc only has the simple mapping.
inline void append_lowercase(std::vector<NormalizedChar>& out, char32_t cp, int32_t source) {
  if (cp == 0x130) {
    out.push_back({U'i', source});
    out.push_back({0x307, source});
    return;
  }
  out.push_back(
      {static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))), source});
}

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace detail

class Tokenizer {
 public:
  static Tokenizer from_vocab_file(const std::string& path, TokenizerOptions options = {}) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw Error("cannot open vocab file " + path);
    std::ostringstream contents;
    contents << file.rdbuf();
    if (file.bad()) throw Error("cannot read vocab file " + path);
    try {
      return from_vocab_text(contents.str(), std::move(options));
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }

  // vocab.txt contents: one token per line, id = line number (0-based). A final newline ends
  // the last line rather than starting an empty token; "\r\n" line ends are accepted.
  static Tokenizer from_vocab_text(std::string_view vocab_txt, TokenizerOptions options = {}) {
    Tokenizer t;
    t.options_ = std::move(options);
    if (t.options_.max_input_chars_per_word < 1) {
      throw Error("max_input_chars_per_word must be positive, got " +
                  std::to_string(t.options_.max_input_chars_per_word));
    }
    t.strip_accents_ = t.options_.strip_accents.value_or(t.options_.do_lower_case);
    size_t line_start = 0;
    while (line_start < vocab_txt.size()) {
      size_t line_end = vocab_txt.find('\n', line_start);
      if (line_end == std::string_view::npos) line_end = vocab_txt.size();
      std::string_view token = vocab_txt.substr(line_start, line_end - line_start);
      if (!token.empty() && token.back() == '\r') token.remove_suffix(1);
      try {
        detail::decode_utf8(token);
      } catch (const Error& e) {
        throw Error("vocab line " + std::to_string(t.id_to_token_.size() + 1) + ": " + e.what());
      }
      if (t.id_to_token_.size() >= static_cast<size_t>(INT32_MAX)) throw Error("vocab too large");
      const auto id = static_cast<int32_t>(t.id_to_token_.size());
      // A duplicate maps to its LAST line, as HF's load_vocab (dict assignment) and tokenizers'
      // WordPiece::read_file (HashMap::insert) both do; id_to_token keeps every line.
      t.vocab_.insert_or_assign(std::string(token), id);
      t.id_to_token_.emplace_back(token);
      line_start = line_end + 1;
    }
    if (t.id_to_token_.empty()) throw Error("vocab is empty");
    t.unk_id_ = t.required_id(t.options_.unk_token, "unk_token");
    t.cls_id_ = t.required_id(t.options_.cls_token, "cls_token");
    t.sep_id_ = t.required_id(t.options_.sep_token, "sep_token");
    t.pad_id_ = t.token_to_id(t.options_.pad_token);
    t.mask_id_ = t.token_to_id(t.options_.mask_token);
    for (const std::string* special :
         {&t.options_.unk_token, &t.options_.cls_token, &t.options_.sep_token,
          &t.options_.pad_token, &t.options_.mask_token}) {
      const int32_t id = t.token_to_id(*special);
      if (id >= 0 && !special->empty()) t.special_tokens_.push_back({*special, id});
    }
    return t;
  }

  // Word pieces of one text, no specials added (type ids and sequence ids 0).
  Encoding tokenize(std::string_view text) const {
    Encoding out;
    const detail::DecodedText decoded = detail::decode_utf8(text);
    tokenize_into(decoded, out);
    return out;
  }

  // [CLS] text [SEP]; max_length 0 = no limit, otherwise tokens are dropped at the end.
  Encoding encode(std::string_view text, size_t max_length = 512) const {
    Encoding tokens = tokenize(text);
    if (max_length != 0) {
      if (max_length < 2) {
        throw Error("max_length " + std::to_string(max_length) +
                    " is too small: [CLS] and [SEP] alone need 2 tokens");
      }
      truncate(tokens, max_length - 2);
    }
    Encoding out;
    reserve(out, tokens.size() + 2);
    append_added_special(out, cls_id_, 0);
    append_sequence(out, tokens, 0);
    append_added_special(out, sep_id_, 0);
    return out;
  }

  // [CLS] a [SEP] b [SEP]; type ids 0 for "[CLS] a [SEP]", 1 for "b [SEP]". Truncation follows
  // HF tokenizers' truncate_encodings (see truncate_pair).
  Encoding encode_pair(std::string_view a, std::string_view b, size_t max_length = 512,
                       Truncation truncation = Truncation::longest_first) const {
    Encoding first = tokenize(a), second = tokenize(b);
    if (max_length != 0 && truncation != Truncation::do_not_truncate) {
      if (max_length < 3) {
        throw Error("max_length " + std::to_string(max_length) +
                    " is too small: [CLS] a [SEP] b [SEP] needs 3 special tokens");
      }
      truncate_pair(first, second, max_length - 3, truncation);
    }
    Encoding out;
    reserve(out, first.size() + second.size() + 3);
    append_added_special(out, cls_id_, 0);
    append_sequence(out, first, 0);
    append_added_special(out, sep_id_, 0);
    append_sequence(out, second, 1);
    append_added_special(out, sep_id_, 1);
    return out;
  }

  int32_t token_to_id(std::string_view token) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
  }

  const std::string& id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) {
      throw Error("token id " + std::to_string(id) + " out of range [0, " +
                  std::to_string(id_to_token_.size()) + ")");
    }
    return id_to_token_[static_cast<size_t>(id)];
  }

  size_t vocab_size() const { return id_to_token_.size(); }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t pad_id() const { return pad_id_; }    // -1 if absent
  int32_t mask_id() const { return mask_id_; }  // -1 if absent
  int32_t unk_id() const { return unk_id_; }
  const TokenizerOptions& options() const { return options_; }

 private:
  Tokenizer() = default;

  int32_t required_id(const std::string& token, const char* what) const {
    const int32_t id = token_to_id(token);
    if (id < 0) throw Error(std::string(what) + " \"" + token + "\" is not in the vocab");
    return id;
  }

  // Special tokens written in the text are cut out first, on the original text and
  // case-sensitively (HF added tokens with normalized=false), leftmost-longest match; the
  // pieces between them go through normalisation and WordPiece independently.
  void tokenize_into(const detail::DecodedText& text, Encoding& out) const {
    const std::vector<char32_t>& cps = text.code_points;
    std::vector<size_t> next_match(special_tokens_.size(), 0);
    std::vector<bool> searched(special_tokens_.size(), false);
    size_t piece_start = 0;
    while (piece_start <= cps.size()) {
      // Find the earliest (then longest) special token at or after piece_start.
      size_t best_start = cps.size(), best_length = 0, best = special_tokens_.size();
      for (size_t k = 0; k < special_tokens_.size(); ++k) {
        const std::u32string& pattern = special_tokens_[k].code_points;
        if (!searched[k] ||
            (next_match[k] != std::u32string::npos && next_match[k] < piece_start)) {
          next_match[k] = find(cps, pattern, piece_start);
          searched[k] = true;
        }
        if (next_match[k] == std::u32string::npos) continue;
        if (next_match[k] < best_start ||
            (next_match[k] == best_start && pattern.size() > best_length)) {
          best_start = next_match[k], best_length = pattern.size(), best = k;
        }
      }
      tokenize_piece(text, piece_start, best_start, out);
      if (best == special_tokens_.size()) break;
      const size_t end = best_start + best_length;
      append_token(out, special_tokens_[best].id, special_tokens_[best].text,
                   {static_cast<int32_t>(best_start), static_cast<int32_t>(end)},
                   {static_cast<int32_t>(text.byte_starts[best_start]),
                    static_cast<int32_t>(text.byte_starts[end])});
      piece_start = end;
    }
  }

  static size_t find(const std::vector<char32_t>& haystack, const std::u32string& needle,
                     size_t from) {
    if (needle.empty() || from > haystack.size()) return std::u32string::npos;
    const auto it = std::search(haystack.begin() + static_cast<std::ptrdiff_t>(from),
                                haystack.end(), needle.begin(), needle.end());
    return it == haystack.end() ? std::u32string::npos : static_cast<size_t>(it - haystack.begin());
  }

  // BertNormalizer on original code points [begin, end): clean text, isolate CJK, strip
  // accents, lower-case — in that order, as tokenizers' bert.rs does. Each step acts on one
  // character at a time, so they can run fused in one pass.
  void normalize(const detail::DecodedText& text, size_t begin, size_t end,
                 std::vector<detail::NormalizedChar>& out) const {
    out.clear();
    std::array<utf8proc_int32_t, 8> decomposed{};
    for (size_t i = begin; i < end; ++i) {
      char32_t cp = text.code_points[i];
      const auto source = static_cast<int32_t>(i);
      if (options_.clean_text) {
        if (cp == 0 || cp == 0xFFFD || detail::is_control(cp)) continue;
        if (detail::is_whitespace(cp)) cp = U' ';
      }
      // Spaces around CJK ideographs; the ideograph itself still goes through NFD, which maps
      // compatibility ideographs (U+F900...) to unified ones.
      const bool isolate = options_.tokenize_chinese_chars && detail::is_chinese_char(cp);
      if (isolate) out.push_back({U' ', source});
      size_t count = 1;
      decomposed[0] = static_cast<utf8proc_int32_t>(cp);
      if (strip_accents_ && cp >= 0x80) count = detail::decompose(cp, decomposed);
      for (size_t k = 0; k < count; ++k) {
        const auto c = static_cast<char32_t>(decomposed[k]);
        if (strip_accents_ && detail::is_nonspacing_mark(c)) continue;
        if (options_.do_lower_case) {
          detail::append_lowercase(out, c, source);
        } else {
          out.push_back({c, source});
        }
      }
      if (isolate) out.push_back({U' ', source});
    }
  }

  // Normalise, split on whitespace and punctuation (BertPreTokenizer), WordPiece each word.
  void tokenize_piece(const detail::DecodedText& text, size_t begin, size_t end,
                      Encoding& out) const {
    if (begin >= end) return;
    std::vector<detail::NormalizedChar> normalized;
    normalize(text, begin, end, normalized);
    WordBuffers buffers;
    size_t word_start = 0;
    for (size_t i = 0; i < normalized.size(); ++i) {
      const char32_t cp = normalized[i].cp;
      if (detail::is_whitespace(cp)) {
        wordpiece(text, normalized, word_start, i, buffers, out);
        word_start = i + 1;
      } else if (detail::is_punctuation(cp)) {
        wordpiece(text, normalized, word_start, i, buffers, out);
        wordpiece(text, normalized, i, i + 1, buffers, out);
        word_start = i + 1;
      }
    }
    wordpiece(text, normalized, word_start, normalized.size(), buffers, out);
  }

  // Scratch space reused across the words of one call, so that lookups do not allocate.
  struct WordBuffers {
    std::string word;                   // the word in UTF-8
    std::vector<uint32_t> char_starts;  // byte start of each code point in `word`, plus the end
    std::string candidate;              // "##" + piece
    std::vector<std::array<size_t, 3>> pieces;  // start char, end char, id
  };

  // Greedy longest-match-first WordPiece on normalised chars [word_begin, word_end). Too long a
  // word, or one with any piece not in the vocab, becomes a single [UNK] spanning the word.
  void wordpiece(const detail::DecodedText& text, const std::vector<detail::NormalizedChar>& chars,
                 size_t word_begin, size_t word_end, WordBuffers& buffers, Encoding& out) const {
    if (word_begin >= word_end) return;
    const size_t length = word_end - word_begin;
    auto emit = [&](int32_t id, std::string token, size_t first, size_t last) {
      const auto start = static_cast<size_t>(chars[word_begin + first].source);
      const auto stop = static_cast<size_t>(chars[word_begin + last - 1].source) + 1;
      append_token(out, id, std::move(token),
                   {static_cast<int32_t>(start), static_cast<int32_t>(stop)},
                   {static_cast<int32_t>(text.byte_starts[start]),
                    static_cast<int32_t>(text.byte_starts[stop])});
    };
    if (length > static_cast<size_t>(options_.max_input_chars_per_word)) {
      emit(unk_id_, options_.unk_token, 0, length);
      return;
    }
    buffers.word.clear();
    buffers.char_starts.clear();
    for (size_t i = word_begin; i < word_end; ++i) {
      buffers.char_starts.push_back(static_cast<uint32_t>(buffers.word.size()));
      detail::append_utf8(buffers.word, chars[i].cp);
    }
    buffers.char_starts.push_back(static_cast<uint32_t>(buffers.word.size()));
    buffers.pieces.clear();
    const std::string_view word = buffers.word;
    size_t start = 0;
    while (start < length) {
      int32_t found = -1;
      size_t end = length;
      for (; end > start; --end) {
        std::string_view piece = word.substr(buffers.char_starts[start],
                                             buffers.char_starts[end] - buffers.char_starts[start]);
        if (start > 0) {
          buffers.candidate.assign("##");
          buffers.candidate.append(piece);
          piece = buffers.candidate;
        }
        found = token_to_id(piece);
        if (found >= 0) break;
      }
      if (found < 0) {
        emit(unk_id_, options_.unk_token, 0, length);
        return;
      }
      buffers.pieces.push_back({start, end, static_cast<size_t>(found)});
      start = end;
    }
    for (const auto& [first, last, id] : buffers.pieces) {
      const auto token_id = static_cast<int32_t>(id);
      // The matched text, not id_to_token: with duplicate lines both are the same string anyway.
      std::string token = first > 0 ? "##" : "";
      token.append(word.substr(buffers.char_starts[first],
                               buffers.char_starts[last] - buffers.char_starts[first]));
      emit(token_id, std::move(token), first, last);
    }
  }

  static void append_token(Encoding& out, int32_t id, std::string token, Offset offset,
                           Offset byte_offset) {
    out.ids.push_back(id);
    out.type_ids.push_back(0);
    out.tokens.push_back(std::move(token));
    out.offsets.push_back(offset);
    out.byte_offsets.push_back(byte_offset);
    out.sequence_ids.push_back(0);
  }

  // [CLS]/[SEP] added by the template: (0,0) offsets and sequence id -1, as HF reports them.
  void append_added_special(Encoding& out, int32_t id, int32_t type_id) const {
    append_token(out, id, id_to_token_[static_cast<size_t>(id)], {}, {});
    out.type_ids.back() = type_id;
    out.sequence_ids.back() = -1;
  }

  static void append_sequence(Encoding& out, const Encoding& tokens, int8_t sequence_id) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      append_token(out, tokens.ids[i], tokens.tokens[i], tokens.offsets[i], tokens.byte_offsets[i]);
      out.type_ids.back() = sequence_id;  // type id = sequence index in BERT's template
      out.sequence_ids.back() = sequence_id;
    }
  }

  static void reserve(Encoding& e, size_t n) {
    e.ids.reserve(n), e.type_ids.reserve(n), e.tokens.reserve(n), e.offsets.reserve(n);
    e.byte_offsets.reserve(n), e.sequence_ids.reserve(n);
  }

  static void truncate(Encoding& e, size_t n) {
    if (e.size() <= n) return;
    e.ids.resize(n), e.type_ids.resize(n), e.tokens.resize(n), e.offsets.resize(n);
    e.byte_offsets.resize(n), e.sequence_ids.resize(n);
  }

  // HF tokenizers' truncate_encodings, on the budget left after the 3 special tokens.
  // longest_first does not remove one token at a time as the slow tokenizer's
  // truncate_sequences does: if both must be cut, the shorter-or-equal-length one (the first,
  // when equal) keeps budget/2 and the other budget - budget/2. For an odd budget this gives
  // the extra token to the second text when lengths are equal, unlike the slow tokenizer.
  // A budget of 0 empties both texts whatever the strategy (as HF does).
  static void truncate_pair(Encoding& first, Encoding& second, size_t budget, Truncation strategy) {
    const size_t total = first.size() + second.size();
    if (budget == 0) {
      truncate(first, 0), truncate(second, 0);
      return;
    }
    if (total <= budget) return;
    const size_t to_remove = total - budget;
    if (strategy == Truncation::longest_first) {
      const bool swap = first.size() > second.size();
      size_t shorter = std::min(first.size(), second.size());
      size_t longer = shorter > budget ? shorter : std::max(shorter, budget - shorter);
      if (shorter + longer > budget) {
        shorter = budget / 2;
        longer = shorter + budget % 2;
      }
      truncate(first, swap ? longer : shorter);
      truncate(second, swap ? shorter : longer);
      return;
    }
    Encoding& target = strategy == Truncation::only_first ? first : second;
    // HF requires the target to keep at least one token (target_len > to_remove).
    if (target.size() <= to_remove) {
      throw Error(std::string("cannot truncate: the ") +
                  (strategy == Truncation::only_first ? "first" : "second") + " text has " +
                  std::to_string(target.size()) + " tokens but " + std::to_string(to_remove) +
                  " must be removed to fit max_length");
    }
    truncate(target, target.size() - to_remove);
  }

  struct SpecialToken {
    SpecialToken(const std::string& token, int32_t token_id) : text(token), id(token_id) {
      const auto decoded = detail::decode_utf8(token);
      code_points.assign(decoded.code_points.begin(), decoded.code_points.end());
    }
    std::string text;
    std::u32string code_points;
    int32_t id;
  };

  std::unordered_map<std::string, int32_t, detail::TransparentStringHash, std::equal_to<>> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<SpecialToken> special_tokens_;
  TokenizerOptions options_;
  bool strip_accents_ = true;
  int32_t unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, mask_id_ = -1;
};

}  // namespace tinybert
