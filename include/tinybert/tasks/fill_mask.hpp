// Fill-mask with attribution: top-k tokens with probabilities for every [MASK] of every text
// (one packed batch), optional joint filling of several masks (whole-phrase candidates) and
// optional attribution (the context tokens each mask attended to most).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "tinybert/runner.hpp"

namespace tinybert {

struct TokenCandidate {
  std::string token;
  int32_t id = 0;
  float probability = 0, logit = 0;
};

// A context token a mask attended to, with its weight (see FillMaskOptions::attribution).
struct AttributedToken {
  std::string token;
  int64_t token_index = 0;  // position in the encoded sequence ([CLS] = 0)
  Offset chars;             // code-point range in the text
  float weight = 0;
};

struct MaskPrediction {
  int64_t token_index = 0;  // position in the encoded sequence ([CLS] = 0)
  Offset chars;             // the [MASK]'s code-point range in the text
  std::vector<TokenCandidate> candidates;
  std::vector<AttributedToken> attribution;  // empty unless asked for
};

// One whole-phrase candidate of joint filling: a token for every mask of the text.
struct PhraseCandidate {
  std::vector<TokenCandidate>
      tokens;                      // one per mask, in text order; probability = when it was filled
  std::vector<size_t> fill_order;  // mask indices in the order they were filled
  double probability = 0;          // product of the tokens' probabilities
  double log_probability = 0;
  std::string text;  // the text with every mask replaced by its token
};

struct FillMaskResult {
  std::vector<MaskPrediction> masks;     // every mask in text order
  std::vector<PhraseCandidate> phrases;  // joint filling only, best first
};

struct FillMaskOptions {
  int64_t top_k = 5;        // candidates per mask; also the beam width of joint filling
  bool joint = false;       // also fill all masks of a text together (see fill_mask_joint)
  int64_t attribution = 0;  // top-n attended context tokens per mask; 0 = off (no cost)
  int64_t max_masks = 16;   // per text
};

// Softmax over the whole vocabulary, then the k best (ties broken by lower id).
inline std::vector<TokenCandidate> top_k_candidates(const float* logits, int64_t vocab, int64_t k,
                                                    const Tokenizer& tokenizer) {
  const float max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v] - max_logit));
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, vocab);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<TokenCandidate> out;
  for (int64_t i = 0; i < k; ++i) {
    const int32_t id = order[i];
    const std::string token =
        id < static_cast<int32_t>(tokenizer.vocab_size()) ? tokenizer.id_to_token(id) : "[UNK]";
    out.push_back({token, id,
                   static_cast<float>(std::exp(static_cast<double>(logits[id] - max_logit)) / sum),
                   logits[id]});
  }
  return out;
}

namespace detail {

inline bool starts_with_ascii_nocase(const std::vector<char32_t>& text, size_t at,
                                     std::u32string_view what) {
  if (at + what.size() > text.size()) return false;
  for (size_t i = 0; i < what.size(); ++i) {
    char32_t a = text[at + i], b = what[i];
    if (a < 128) a = static_cast<char32_t>(std::tolower(static_cast<int>(a)));
    if (b < 128) b = static_cast<char32_t>(std::tolower(static_cast<int>(b)));
    if (a != b) return false;
  }
  return true;
}

}  // namespace detail

// Checks one input line for fill-mask and returns how many masks it has. Rules (positions in
// errors are 1-based line numbers and 1-based code-point positions):
//  * the line must not be empty and must hold at least one mask token (exactly "[MASK]",
//    case-sensitive, as the tokenizer matches it);
//  * any other casing ("[mask]", "[Mask]") is an error, not literal text: it is almost always
//    a typo, and the tokenizer would silently split it into "[", "mask", "]";
//  * an opening "[MASK" not closed at once by "]" and a "MASK]" without its "[" are errors;
//  * at most max_masks masks.
inline size_t validate_mask_text(const Tokenizer& tokenizer, std::string_view text, size_t line,
                                 int64_t max_masks) {
  const std::string& mask_token = tokenizer.options().mask_token;
  // InputError takes 0-based positions; the message shows them 1-based
  const size_t input = line - 1;
  if (text.empty())
    throw InputError(input, 0, "empty line (expected a text with " + mask_token + ")");
  detail::DecodedText decoded;
  try {
    decoded = detail::decode_utf8(text);
  } catch (const Error& e) {
    throw InputError(input, std::nullopt, e.what());
  }
  const std::vector<char32_t> mask = detail::decode_utf8(mask_token).code_points;
  const std::u32string_view mask_view(mask.data(), mask.size());
  const bool bracketed = mask.size() > 2 && mask.front() == U'[' && mask.back() == U']';
  const std::vector<char32_t>& cps = decoded.code_points;
  size_t found = 0;
  for (size_t i = 0; i < cps.size();) {
    if (i + mask.size() <= cps.size() &&
        std::equal(mask.begin(), mask.end(), cps.begin() + static_cast<std::ptrdiff_t>(i))) {
      if (static_cast<int64_t>(++found) > max_masks) {
        throw InputError(input, i,
                         "too many masks (at most " + std::to_string(max_masks) + " per text)");
      }
      i += mask.size();
      continue;
    }
    if (bracketed) {
      std::string s;
      if (detail::starts_with_ascii_nocase(cps, i, mask_view)) {
        s += "'";
        for (size_t k = 0; k < mask.size(); ++k) detail::append_utf8(s, cps[i + k]);
        s += "' is not a mask token (write ";
        s += mask_token;
        s += " exactly)";
        throw InputError(input, i, s);
      }
      if (detail::starts_with_ascii_nocase(cps, i, mask_view.substr(0, mask.size() - 1))) {
        s += "unbalanced '";
        for (size_t k = 0; k + 1 < mask.size(); ++k) detail::append_utf8(s, cps[i + k]);
        s += "' without ']' (a mask is written ";
        s += mask_token;
        s += ")";
        throw InputError(input, i, s);
      }
      if (detail::starts_with_ascii_nocase(cps, i, mask_view.substr(1))) {
        s += "unbalanced '";
        for (size_t k = 1; k < mask.size(); ++k) detail::append_utf8(s, cps[i + k - 1]);
        s += "' without '[' (a mask is written ";
        s += mask_token;
        s += ")";
        throw InputError(input, i, s);
      }
    }
    ++i;
  }
  if (found == 0) {
    // no position to point at; "text N" keeps the wording of earlier versions
    throw InputError(input, std::nullopt, "no " + mask_token + " in line " + std::to_string(line),
                     InputError::Noun::text);
  }
  return found;
}

namespace detail {

// A text ready for the encoder: its encoding and where its masks are.
struct MaskedText {
  Encoding encoding;
  std::vector<int64_t> mask_tokens;  // token indices of the masks, in order
};

inline MaskedText encode_masked_text(const Model& model, std::string_view text, size_t line,
                                     int64_t max_masks) {
  const Tokenizer& tokenizer = model.tokenizer();
  validate_mask_text(tokenizer, text, line, max_masks);
  MaskedText out;
  out.encoding = tokenizer.encode(text, 0);
  const Encoding& e = out.encoding;
  const int64_t limit = model.max_length();
  if (static_cast<int64_t>(e.ids.size()) > limit) {
    // token limit - 1 would be where [SEP] goes: the first token that does not fit
    std::string s = "text too long: ";
    s += std::to_string(e.ids.size());
    s += " tokens with [CLS] and [SEP], the model takes at most ";
    s += std::to_string(limit);
    s += " (the text from here on does not fit)";
    throw InputError(line - 1, static_cast<size_t>(e.offsets[static_cast<size_t>(limit - 1)].start),
                     s);
  }
  for (size_t t = 0; t < e.ids.size(); ++t)
    if (e.ids[t] == tokenizer.mask_id()) out.mask_tokens.push_back(static_cast<int64_t>(t));
  return out;
}

// Attribution of one mask: head-averaged last-layer attention row of the mask token, the
// top_n keys that are neither [CLS]/[SEP] nor a mask (ties: lower index first).
// probs layout (ForwardResult::attention): sequence s, head h, query i, key j at
// offset(s) + (h * len + i) * len + j, offset(s) = num_heads * sum of earlier len^2.
inline std::vector<AttributedToken> attribution_of(const std::vector<float>& probs,
                                                   size_t sequence_offset, int64_t len,
                                                   int64_t num_heads, int64_t query,
                                                   const Encoding& e, const Tokenizer& tokenizer,
                                                   int64_t top_n) {
  std::vector<double> mean(static_cast<size_t>(len), 0.0);
  for (int64_t h = 0; h < num_heads; ++h) {
    const float* row =
        probs.data() + sequence_offset + static_cast<size_t>((h * len + query) * len);
    for (int64_t j = 0; j < len; ++j) mean[static_cast<size_t>(j)] += row[j];
  }
  std::vector<int64_t> keys;
  for (int64_t j = 0; j < len; ++j) {
    const int32_t id = e.ids[static_cast<size_t>(j)];
    if (id == tokenizer.cls_id() || id == tokenizer.sep_id() || id == tokenizer.mask_id()) continue;
    keys.push_back(j);
  }
  const size_t n = std::min(keys.size(), static_cast<size_t>(top_n));
  std::partial_sort(
      keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(n), keys.end(),
      [&](int64_t a, int64_t b) {
        return mean[static_cast<size_t>(a)] > mean[static_cast<size_t>(b)] ||
               (mean[static_cast<size_t>(a)] == mean[static_cast<size_t>(b)] && a < b);
      });
  std::vector<AttributedToken> out;
  for (size_t k = 0; k < n; ++k) {
    const size_t j = static_cast<size_t>(keys[k]);
    out.push_back({e.tokens[j], keys[k], e.offsets[j],
                   static_cast<float>(mean[j] / static_cast<double>(num_heads))});
  }
  return out;
}

// The text with each mask's code-point range replaced by its token ("##" of a word piece dropped).
inline std::string fill_text(std::string_view text, const std::vector<Offset>& mask_chars,
                             const std::vector<TokenCandidate>& tokens) {
  const DecodedText decoded = decode_utf8(text);
  std::string out;
  size_t next = 0;
  for (size_t m = 0; m < mask_chars.size(); ++m) {
    const size_t from = decoded.byte_starts[next],
                 to = decoded.byte_starts[static_cast<size_t>(mask_chars[m].start)];
    out.append(text.substr(from, to - from));
    std::string_view token = tokens[m].token;
    if (token.size() > 2 && token.substr(0, 2) == "##") token.remove_prefix(2);
    out.append(token);
    next = static_cast<size_t>(mask_chars[m].end);
  }
  out.append(text.substr(decoded.byte_starts[next]));
  return out;
}

}  // namespace detail

// Joint filling (see fill_mask below), one forward pass per step; first_logits are the logits
// of the unfilled texts' masks, so the first step costs no extra forward pass.
inline void fill_mask_joint(Runner& runner, const std::vector<std::string>& texts,
                            const std::vector<detail::MaskedText>& inputs, int64_t beam_width,
                            const std::vector<float>& first_logits,
                            std::vector<FillMaskResult>& out) {
  struct State {
    std::vector<int32_t> ids;
    std::vector<TokenCandidate> tokens;  // per mask; id -1 while open
    std::vector<size_t> order;
    double log_probability = 0;
  };
  const Model& model = runner.model();
  const Tokenizer& tokenizer = model.tokenizer();
  const int64_t vocab = model.config().vocab_size;
  std::vector<std::vector<State>> beams(texts.size());
  size_t max_masks = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    State s{inputs[i].encoding.ids,
            std::vector<TokenCandidate>(inputs[i].mask_tokens.size(), TokenCandidate{"", -1, 0, 0}),
            {},
            0};
    beams[i].push_back(std::move(s));
    max_masks = std::max(max_masks, inputs[i].mask_tokens.size());
  }
  std::vector<float> logits = first_logits;
  for (size_t step = 0; step < max_masks; ++step) {
    // logits hold, for every text with open masks, every state, every open mask, in order
    if (step > 0) {
      ForwardRequest request;
      request.head.kind = HeadKind::mlm_logits;
      for (size_t i = 0; i < texts.size(); ++i) {
        if (step >= inputs[i].mask_tokens.size()) continue;
        for (const State& s : beams[i]) {
          for (size_t m = 0; m < s.tokens.size(); ++m)
            if (s.tokens[m].id < 0)
              request.rows.push_back(request.batch.num_tokens() + inputs[i].mask_tokens[m]);
          request.batch.add(s.ids, inputs[i].encoding.type_ids);
        }
      }
      logits = runner.run(std::move(request)).values;
    }
    size_t row = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      if (step >= inputs[i].mask_tokens.size()) continue;
      std::vector<State> next;
      for (const State& s : beams[i]) {
        size_t best_mask = 0;
        std::vector<TokenCandidate> best;
        for (size_t m = 0; m < s.tokens.size(); ++m) {
          if (s.tokens[m].id >= 0) continue;
          auto candidates =
              top_k_candidates(logits.data() + row++ * vocab, vocab, beam_width, tokenizer);
          if (best.empty() || candidates[0].probability > best[0].probability)
            best = std::move(candidates), best_mask = m;
        }
        for (const TokenCandidate& c : best) {
          State child = s;
          child.ids[static_cast<size_t>(inputs[i].mask_tokens[best_mask])] = c.id;
          child.tokens[best_mask] = c;
          child.order.push_back(best_mask);
          child.log_probability += std::log(static_cast<double>(c.probability));
          next.push_back(std::move(child));
        }
      }
      // merge states with the same assignment, keep the best beam_width
      std::stable_sort(next.begin(), next.end(), [](const State& a, const State& b) {
        return a.log_probability > b.log_probability;
      });
      std::vector<State> kept;
      for (State& s : next) {
        const bool seen = std::any_of(kept.begin(), kept.end(), [&](const State& k) {
          for (size_t m = 0; m < s.tokens.size(); ++m)
            if (s.tokens[m].id != k.tokens[m].id) return false;
          return true;
        });
        if (!seen && static_cast<int64_t>(kept.size()) < beam_width) kept.push_back(std::move(s));
      }
      beams[i] = std::move(kept);
    }
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<Offset> chars;
    for (const MaskPrediction& m : out[i].masks) chars.push_back(m.chars);
    for (State& s : beams[i]) {
      PhraseCandidate p;
      p.text = detail::fill_text(texts[i], chars, s.tokens);
      p.tokens = std::move(s.tokens);
      p.fill_order = std::move(s.order);
      p.log_probability = s.log_probability;
      p.probability = std::exp(s.log_probability);
      out[i].phrases.push_back(std::move(p));
    }
  }
}

// Fills every mask of every text. All texts go through the encoder as one forward pass (one
// runner.run); joint filling runs one more pass per iteration (see fill_mask_joint). Attention
// probabilities are recorded only when options.attribution > 0.
// Errors name the 1-based line (index in texts) and code-point position (validate_mask_text).
//
// Joint filling (options.joint): beam search of width top_k over the "most confident first"
// process. A beam state is the text with some masks filled. One step: run the state, take
// the softmax of every still-open mask, pick the open mask whose best token has the highest
// probability, and branch on its top_k tokens. The score of a phrase is the product of the
// chosen tokens' probabilities at the time each was filled (summed as logs). After every step
// the top_k states of each text are kept (states that assign the same tokens to the same masks
// are merged, keeping the best). After as many steps as the text has masks, the surviving
// states are the phrase candidates, best first. With one mask this is exactly the plain
// top-k. Cost: (number of masks) forward passes, each over up to top_k copies of every text.
inline std::vector<FillMaskResult> fill_mask(Runner& runner, const std::vector<std::string>& texts,
                                             const FillMaskOptions& options) {
  const Model& model = runner.model();
  const Tokenizer& tokenizer = model.tokenizer();
  if (tokenizer.mask_id() < 0) throw Error("this model's vocabulary has no mask token");
  if (options.top_k < 1)
    throw Error("top_k must be at least 1, got " + std::to_string(options.top_k));
  if (texts.empty()) return {};
  std::vector<detail::MaskedText> inputs;
  const bool attribute = options.attribution > 0;
  ForwardRequest request;
  request.head.kind = HeadKind::mlm_logits;
  request.record_attention = attribute;
  for (size_t i = 0; i < texts.size(); ++i) {
    inputs.push_back(detail::encode_masked_text(model, texts[i], i + 1, options.max_masks));
    // rows: the packed token row of every mask
    for (int64_t t : inputs.back().mask_tokens)
      request.rows.push_back(request.batch.num_tokens() + t);
    request.batch.add(inputs.back().encoding.ids, inputs.back().encoding.type_ids);
  }
  const ForwardResult forward = runner.run(std::move(request));
  const std::vector<float>& logits = forward.values;
  const int64_t vocab = model.config().vocab_size, num_heads = model.config().num_heads;
  std::vector<FillMaskResult> out(texts.size());
  size_t row = 0, prob_offset = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Encoding& e = inputs[i].encoding;
    const int64_t len = static_cast<int64_t>(e.ids.size());
    for (int64_t t : inputs[i].mask_tokens) {
      MaskPrediction m{t, e.offsets[static_cast<size_t>(t)], {}, {}};
      m.candidates =
          top_k_candidates(logits.data() + row++ * vocab, vocab, options.top_k, tokenizer);
      if (attribute)
        m.attribution = detail::attribution_of(forward.attention, prob_offset, len, num_heads, t, e,
                                               tokenizer, options.attribution);
      out[i].masks.push_back(std::move(m));
    }
    prob_offset += static_cast<size_t>(num_heads * len * len);
  }
  if (options.joint) fill_mask_joint(runner, texts, inputs, options.top_k, logits, out);
  return out;
}

}  // namespace tinybert
