// UIE information extraction, PaddleNLP Taskflow semantics: span decoding (get_span), schema
// levels walked breadth-first with one forward pass per level, prompts "[CLS] prompt [SEP] text
// [SEP]", overlapping token windows for long texts, merging back to character offsets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tinybert/model.hpp"
#include "tinybert/runner.hpp"
#include "tinybert/tasks/uie_schema.hpp"

namespace tinybert {

struct TokenSpan {
  int64_t start_token = 0, end_token = 0;  // inclusive token indices into the probability arrays
  float probability = 0;                   // p_start * p_end
};

// PaddleNLP get_span: walk the sorted start and end candidates together. A start at or before
// the current end is coupled to that end (a later start before the same end replaces it, since
// couples are keyed by their end); an end before the current start is skipped. Spans are
// returned ordered by start, then end.
inline std::vector<TokenSpan> decode_spans(const std::vector<float>& start_probs,
                                           const std::vector<float>& end_probs,
                                           float threshold = 0.5f) {
  std::vector<int64_t> starts, ends;
  for (size_t i = 0; i < start_probs.size(); ++i)
    if (start_probs[i] > threshold) starts.push_back(static_cast<int64_t>(i));
  for (size_t i = 0; i < end_probs.size(); ++i)
    if (end_probs[i] > threshold) ends.push_back(static_cast<int64_t>(i));
  std::map<int64_t, int64_t> start_of_end;
  size_t s = 0, e = 0;
  while (s < starts.size() && e < ends.size()) {
    if (starts[s] == ends[e]) {
      start_of_end[ends[e]] = starts[s];
      ++s;
      ++e;
    } else if (starts[s] < ends[e]) {
      start_of_end[ends[e]] = starts[s];
      ++s;
    } else {
      ++e;
    }
  }
  std::vector<TokenSpan> spans;
  for (const auto& [end, start] : start_of_end)
    spans.push_back({start, end, start_probs[start] * end_probs[end]});
  std::sort(spans.begin(), spans.end(), [](const TokenSpan& a, const TokenSpan& b) {
    return a.start_token != b.start_token ? a.start_token < b.start_token
                                          : a.end_token < b.end_token;
  });
  return spans;
}

// ---- windows: long texts are cut into overlapping runs of text tokens -------------------------

struct TokenWindow {
  int64_t begin = 0, end = 0;  // text tokens [begin, end)
  friend bool operator==(const TokenWindow&, const TokenWindow&) = default;
};

// Windows of at most window_tokens text tokens; neighbours share at least `overlap` tokens
// (capped at half a window so that every window moves on). The last window ends at the text's
// end, so it is full-length too. A text that fits gets one window: exactly PaddleNLP's input.
inline std::vector<TokenWindow> plan_windows(int64_t num_tokens, int64_t window_tokens,
                                             int64_t overlap) {
  if (window_tokens < 1) throw Error("window of " + std::to_string(window_tokens) + " text tokens");
  if (num_tokens <= window_tokens) return {{0, std::max<int64_t>(num_tokens, 0)}};
  const int64_t step = window_tokens - std::clamp<int64_t>(overlap, 0, window_tokens / 2);
  std::vector<TokenWindow> windows;
  for (int64_t begin = 0;; begin += step) {
    if (begin + window_tokens >= num_tokens) {
      windows.push_back({num_tokens - window_tokens, num_tokens});
      return windows;
    }
    windows.push_back({begin, begin + window_tokens});
  }
}

// The window that owns a token: each overlap is split at its middle, so ownership tiles the text
// and every token belongs to the window where it has the most context on both sides.
inline size_t window_owner(const std::vector<TokenWindow>& windows, int64_t token) {
  for (size_t k = 0; k + 1 < windows.size(); ++k)
    if (token < (windows[k + 1].begin + windows[k].end) / 2) return k;
  return windows.empty() ? 0 : windows.size() - 1;
}

// A span the window saw whole: it does not touch a side where the window cut the text (a span
// there may be the visible part of a longer one).
inline bool span_inside(const TokenWindow& w, const TokenSpan& s, int64_t num_tokens) {
  const bool start_ok = w.begin == 0 ? s.start_token >= 0 : s.start_token > w.begin;
  const bool end_ok = w.end == num_tokens ? s.end_token < w.end : s.end_token < w.end - 1;
  return start_ok && end_ok;
}

// Spans found per window (text-token indices of the whole text) -> one list, ordered by start
// then end. A span is taken from the window that owns its start token, or from any window that
// saw it whole when the owner did not; the same start/end from two windows keeps the higher
// probability.
inline std::vector<TokenSpan> merge_window_spans(
    const std::vector<TokenWindow>& windows, const std::vector<std::vector<TokenSpan>>& per_window,
    int64_t num_tokens) {
  std::map<std::pair<int64_t, int64_t>, float> best;
  for (size_t k = 0; k < windows.size() && k < per_window.size(); ++k) {
    for (const TokenSpan& s : per_window[k]) {
      if (!span_inside(windows[k], s, num_tokens)) continue;
      const size_t owner = window_owner(windows, s.start_token);
      if (owner != k && span_inside(windows[owner], s, num_tokens)) continue;
      auto [it, inserted] = best.try_emplace({s.start_token, s.end_token}, s.probability);
      if (!inserted) it->second = std::max(it->second, s.probability);
    }
  }
  std::vector<TokenSpan> out;
  for (const auto& [key, probability] : best) out.push_back({key.first, key.second, probability});
  return out;
}

// ---- results -----------------------------------------------------------------------------------

// One answer: a span of the text, or (start = end = -1) the chosen option of a classification
// name. Children's answers for this span sit in relations, keyed by the child's name.
struct ExtractedSpan {
  std::string text;
  int64_t start = -1, end = -1;  // code points into the original text, end exclusive
  double probability = 0;
  std::map<std::string, std::vector<ExtractedSpan>> relations;
};

// Per text: {name: answers}, as PaddleNLP's Taskflow returns it.
using Extraction = std::map<std::string, std::vector<ExtractedSpan>>;

// ---- options -----------------------------------------------------------------------------------

struct ExtractOptions {
  std::optional<float> threshold;  // position_prob; unset: the model's, else 0.5
  std::optional<int64_t>
      max_seq_len;              // tokens incl. prompt and specials; unset: the model's, else 512
  int64_t window_overlap = 64;  // text tokens shared by neighbouring windows
  bool english = false;       // child prompts "<child> of <parent>" instead of "<parent>的<child>"
  size_t max_prompts = 4096;  // prompts (texts x names x parent spans) in one schema level
  size_t max_text_chars = 100000;  // code points per text
};

// The model's own UIE settings when its file carries them (ModelConfig::uie_max_seq_len /
// uie_position_prob), else PaddleNLP's defaults (512, 0.5); options override both.
inline int64_t uie_max_seq_len(const Model& model, const ExtractOptions& options) {
  const int64_t value = options.max_seq_len.value_or(model.config().uie_max_seq_len.value_or(512));
  if (value < 4) throw Error("max_seq_len " + std::to_string(value) + " is too small (at least 4)");
  return std::min(value, model.max_length());
}

inline float uie_threshold(const Model& model, const ExtractOptions& options) {
  const float value = options.threshold.value_or(model.config().uie_position_prob.value_or(0.5f));
  if (!(value > 0.0f && value < 1.0f))
    throw Error("threshold must be in (0, 1), got " + std::to_string(value));
  return value;
}

// ---- one prompt against one text ---------------------------------------------------------------

// A text tokenized once; every prompt and window reuses its tokens and offsets.
struct PreparedText {
  std::string text;
  Encoding tokens;  // word pieces, no specials
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

inline std::vector<PreparedText> prepare_texts(const Tokenizer& tokenizer,
                                               const std::vector<std::string>& texts,
                                               size_t max_text_chars) {
  std::vector<PreparedText> out;
  out.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) throw InputError(i, std::nullopt, "empty text", InputError::Noun::text);
    try {
      const size_t chars = detail::decode_utf8(texts[i]).code_points.size();
      if (chars > max_text_chars)
        throw Error("has " + std::to_string(chars) + " characters (at most " +
                    std::to_string(max_text_chars) + ")");
      out.push_back({texts[i], tokenizer.tokenize(texts[i])});
    } catch (const Error& e) {
      throw InputError(i, std::nullopt, e.what(), InputError::Noun::text);
    }
  }
  return out;
}

// [CLS] prompt [SEP] text[window] [SEP], token types 0 then 1 (as the tokenizer's encode_pair).
inline void add_window_sequence(Batch& batch, const Tokenizer& tokenizer, const Encoding& prompt,
                                const PreparedText& text, const TokenWindow& w) {
  const size_t prompt_len = prompt.size(), text_len = static_cast<size_t>(w.end - w.begin);
  std::vector<int32_t> ids, types;
  ids.reserve(prompt_len + text_len + 3);
  ids.push_back(tokenizer.cls_id());
  ids.insert(ids.end(), prompt.ids.begin(), prompt.ids.end());
  ids.push_back(tokenizer.sep_id());
  types.assign(ids.size(), 0);
  ids.insert(ids.end(), text.tokens.ids.begin() + w.begin, text.tokens.ids.begin() + w.end);
  ids.push_back(tokenizer.sep_id());
  types.resize(ids.size(), 1);
  batch.add(ids, types);
}

// One question of a schema level: a name asked of one text, under one parent answer (or none).
struct ExtractQuery {
  const SchemaNode* node = nullptr;
  size_t text_index = 0;
  ExtractedSpan* parent = nullptr;
  std::string prompt;
  Encoding prompt_tokens;
  std::vector<TokenWindow> windows;
  int64_t first_sequence = 0;  // its windows are consecutive sequences of the batch
};

// Spans among `count` rows of the batch's probabilities (a uie_spans result) starting at `row`.
inline std::vector<TokenSpan> decode_rows(const ForwardResult& p, int64_t row, int64_t count,
                                          float threshold) {
  const std::vector<float> start(p.start.begin() + row, p.start.begin() + row + count);
  const std::vector<float> end(p.end.begin() + row, p.end.begin() + row + count);
  return decode_spans(start, end, threshold);
}

// Text answers of a query: spans over the text tokens of every window, merged, as characters.
inline std::vector<ExtractedSpan> decode_text_answers(const ExtractQuery& q,
                                                      const PreparedText& text, const Batch& batch,
                                                      const ForwardResult& p, float threshold) {
  const int64_t text_row = static_cast<int64_t>(q.prompt_tokens.size()) + 2;
  std::vector<std::vector<TokenSpan>> per_window;
  for (size_t k = 0; k < q.windows.size(); ++k) {
    const TokenWindow& w = q.windows[k];
    const int64_t row = batch.seq_begin(q.first_sequence + static_cast<int64_t>(k)) + text_row;
    std::vector<TokenSpan> spans = decode_rows(p, row, w.end - w.begin, threshold);
    for (TokenSpan& s : spans) s.start_token += w.begin, s.end_token += w.begin;
    per_window.push_back(std::move(spans));
  }
  std::vector<ExtractedSpan> out;
  for (const TokenSpan& s : merge_window_spans(q.windows, per_window, text.size())) {
    const auto& t = text.tokens;
    const size_t first = static_cast<size_t>(s.start_token),
                 last = static_cast<size_t>(s.end_token);
    const size_t byte_begin = t.byte_offsets[first].start, byte_end = t.byte_offsets[last].end;
    out.push_back({text.text.substr(byte_begin, byte_end - byte_begin),
                   t.offsets[first].start,
                   t.offsets[last].end,
                   s.probability,
                   {}});
  }
  return out;
}

// Classification answer: the best span inside the prompt (one of the bracketed options) per
// window; over windows the most frequent option wins (ties: the larger summed probability) with
// its mean probability, as PaddleNLP's _auto_joiner does.
inline std::vector<ExtractedSpan> decode_option_answer(const ExtractQuery& q, const Batch& batch,
                                                       const ForwardResult& p, float threshold) {
  std::map<std::string, std::pair<int, double>> votes;
  for (size_t k = 0; k < q.windows.size(); ++k) {
    const int64_t row = batch.seq_begin(q.first_sequence + static_cast<int64_t>(k)) + 1;
    const auto spans = decode_rows(p, row, static_cast<int64_t>(q.prompt_tokens.size()), threshold);
    if (spans.empty()) continue;
    const TokenSpan& best = *std::max_element(
        spans.begin(), spans.end(),
        [](const TokenSpan& a, const TokenSpan& b) { return a.probability < b.probability; });
    const size_t byte_begin =
        q.prompt_tokens.byte_offsets[static_cast<size_t>(best.start_token)].start;
    const size_t byte_end = q.prompt_tokens.byte_offsets[static_cast<size_t>(best.end_token)].end;
    auto& vote = votes[q.prompt.substr(byte_begin, byte_end - byte_begin)];
    vote.first += 1;
    vote.second += best.probability;
  }
  if (votes.empty()) return {};
  const auto winner = std::max_element(
      votes.begin(), votes.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  ExtractedSpan answer;
  answer.text = winner->first;
  answer.probability = winner->second.second / winner->second.first;
  return {answer};
}

// ---- the extractor -----------------------------------------------------------------------------

// Runs a schema over texts: each schema level is one packed batch (all names x parent answers x
// windows x texts) and one forward pass; a level's answers become the next level's prompts.
// run() may be called from many threads at once: a call's state lives on its own stack and the
// forward passes go through the runner.
class Extractor {
 public:
  explicit Extractor(Runner& runner, ExtractOptions options = {})
      : runner_(runner),
        model_(check_uie(runner.model())),
        options_(options),
        max_seq_len_(uie_max_seq_len(model_, options)),
        threshold_(uie_threshold(model_, options)) {}

  int64_t max_seq_len() const { return max_seq_len_; }
  float threshold() const { return threshold_; }

  std::vector<Extraction> run(const std::vector<std::string>& texts, const Schema& schema) const {
    const std::vector<PreparedText> prepared =
        prepare_texts(model_.tokenizer(), texts, options_.max_text_chars);
    std::vector<Extraction> results(texts.size());
    std::vector<ExtractQuery> level;
    for (const SchemaNode& node : schema.roots)
      for (size_t t = 0; t < texts.size(); ++t) level.push_back(make_query(node, t, nullptr));
    for (int depth = 1; !level.empty(); ++depth) {
      if (level.size() > options_.max_prompts)
        throw Error("schema level " + std::to_string(depth) + " needs " +
                    std::to_string(level.size()) + " prompts (limit " +
                    std::to_string(options_.max_prompts) + ")");
      const auto answers = run_level(level, prepared);
      // Store every answer first, then take pointers to them: the vectors no longer grow.
      std::vector<std::pair<std::vector<ExtractedSpan>*, size_t>> stored(level.size(),
                                                                         {nullptr, 0});
      for (size_t i = 0; i < level.size(); ++i) {
        if (answers[i].empty()) continue;
        const ExtractQuery& q = level[i];
        auto& target =
            q.parent ? q.parent->relations[q.node->name] : results[q.text_index][q.node->name];
        stored[i] = {&target, target.size()};
        target.insert(target.end(), answers[i].begin(), answers[i].end());
      }
      std::vector<ExtractQuery> next;
      for (size_t i = 0; i < level.size(); ++i) {
        if (!stored[i].first) continue;
        for (size_t a = 0; a < answers[i].size(); ++a)
          for (const SchemaNode& child : level[i].node->children)
            next.push_back(
                make_query(child, level[i].text_index, &(*stored[i].first)[stored[i].second + a]));
      }
      level = std::move(next);
    }
    return results;
  }

 private:
  static const Model& check_uie(const Model& model) {
    if (model.config().architecture != Architecture::uie)
      throw Error(std::string("extract needs a uie model, this one is ") +
                  architecture_name(model.config().architecture));
    return model;
  }

  ExtractQuery make_query(const SchemaNode& node, size_t text_index, ExtractedSpan* parent) const {
    ExtractQuery q;
    q.node = &node;
    q.text_index = text_index;
    q.parent = parent;
    q.prompt = build_prompt(node.name, parent ? &parent->text : nullptr, options_.english);
    q.prompt_tokens = model_.tokenizer().tokenize(q.prompt);
    return q;
  }

  std::vector<std::vector<ExtractedSpan>> run_level(std::vector<ExtractQuery>& level,
                                                    const std::vector<PreparedText>& texts) const {
    ForwardRequest request;
    request.head.kind = HeadKind::uie_spans;
    Batch& batch = request.batch;
    for (ExtractQuery& q : level) {
      const int64_t room = max_seq_len_ - 3 - static_cast<int64_t>(q.prompt_tokens.size());
      if (room < 1)
        throw Error("prompt '" + q.prompt + "' has " + std::to_string(q.prompt_tokens.size()) +
                    " tokens: no room for text within max_seq_len " + std::to_string(max_seq_len_));
      const PreparedText& text = texts[q.text_index];
      q.windows = plan_windows(text.size(), room, options_.window_overlap);
      q.first_sequence = batch.num_sequences();
      for (const TokenWindow& w : q.windows)
        add_window_sequence(batch, model_.tokenizer(), q.prompt_tokens, text, w);
    }
    const ForwardResult probabilities =
        runner_.run(request);  // a copy: the batch places the answers
    std::vector<std::vector<ExtractedSpan>> answers;
    answers.reserve(level.size());
    for (const ExtractQuery& q : level)
      answers.push_back(
          is_classification(q.node->name)
              ? decode_option_answer(q, batch, probabilities, threshold_)
              : decode_text_answers(q, texts[q.text_index], batch, probabilities, threshold_));
    return answers;
  }

  Runner& runner_;
  const Model& model_;
  ExtractOptions options_;
  int64_t max_seq_len_;
  float threshold_;
};
}  // namespace tinybert
