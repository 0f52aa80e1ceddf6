// SiameseUIE information extraction, as ModelScope's SiameseUiePipeline does it: hint strings
// built from the schema and the spans found so far, 384-token text windows sliding by 352 with
// logits averaged where windows overlap, pointer decoding (head logit > 0.5, the first tail > 0.5
// at or after it), nested schemas walked depth first. The text's shared-layer states are computed
// once per text and reused for every hint of every schema level (run_siamese() in runner.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tinybert/runner.hpp"
#include "tinybert/tasks/extract.hpp"
#include "tinybert/tasks/uie_schema.hpp"

namespace tinybert {

// One link of a ModelScope answer chain: {"type", "span", "offset": [begin, end)} in code points.
struct SiameseSpan {
  std::string type, span;
  int64_t begin = 0, end = 0;
  double probability = 0;  // sigmoid(head logit) x sigmoid(tail logit); ModelScope reports none
};
using SiameseChain = std::vector<SiameseSpan>;

struct SiameseOptions {
  // ModelScope's pipeline constants (hard-coded there, not read from the model's config).
  int64_t window_tokens = 384;
  int64_t window_stride = 352;
  int64_t max_hint_tokens = 128;
  float threshold = 0.5f;  // on raw logits, as ModelScope compares them
  size_t max_text_chars = 100000;
  // Bounds on the work of one request, whatever the text, schema and threshold: (hint, window)
  // pairs in one schema level (hints = prefixes x types), spans kept per hint (the first ones in
  // text order), and tokens in one forward pass (a level's pairs are split into passes of at
  // most this many tokens: a pass's workspace memory, and a deadline checked between passes).
  size_t max_pairs = 4096;
  size_t max_spans = 256;
  int64_t max_pass_tokens = 16384;
  // false: the text's shared layers run again with every hint, one pass per hint, as ModelScope's
  // model does without fast_inference. Same answers, for measuring what the reuse saves.
  bool reuse_text_states = true;
};

namespace detail {

// Where each window of a tokenized text starts ([CLS] text [SEP] counted): one window when it
// fits, else ModelScope's ceil((n - window) / stride) + 1 windows of `window` tokens.
inline std::vector<int64_t> window_starts(int64_t tokens, int64_t window, int64_t stride) {
  std::vector<int64_t> starts{0};
  if (tokens <= window) return starts;
  const int64_t extra = (tokens - window + stride - 1) / stride;
  for (int64_t j = 1; j <= extra; ++j) starts.push_back(j * stride);
  return starts;
}

// ModelScope's window merge: every token starts unset (-1); a window writes its value where the
// token is unset, else the mean of the two. At most two windows overlap (stride <= window <=
// 2 x stride), so this is the plain mean; the sentinel comparison is kept as the pipeline has it.
inline void merge_window_logits(std::vector<double>& merged, const float* window, int64_t start,
                                int64_t count) {
  for (int64_t j = 0; j < count; ++j) {
    double& m = merged[static_cast<size_t>(start + j)];
    m = m == -1.0 ? window[j] : (m + window[j]) / 2;
  }
}

// A span starts at every token whose head logit is above the threshold and ends at the first
// token at or after it whose tail logit is; [CLS] and [SEP] take part (offsets (0,0)), as in
// ModelScope. At most max_spans, the first starts in text order; sorted by (begin, end).
inline std::vector<SiameseSpan> decode_pointer_spans(const std::vector<double>& head,
                                                     const std::vector<double>& tail,
                                                     const Encoding& text,
                                                     const std::vector<char32_t>& code_points,
                                                     float threshold, size_t max_spans) {
  const auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  // next_tail[t]: the first token at or after t whose tail logit is above the threshold (one
  // backward sweep, so decoding stays linear in the text)
  std::vector<size_t> next_tail(tail.size() + 1, tail.size());
  for (size_t t = tail.size(); t-- > 0;) next_tail[t] = tail[t] > threshold ? t : next_tail[t + 1];
  std::vector<SiameseSpan> spans;
  for (size_t start = 0; start < head.size() && spans.size() < max_spans; ++start) {
    const size_t end = next_tail[start];
    if (!(head[start] > threshold) || end == tail.size()) continue;
    SiameseSpan s;
    s.begin = text.offsets[start].start;
    s.end = text.offsets[end].end;
    for (int64_t c = s.begin; c < s.end; ++c)
      append_utf8(s.span, code_points[static_cast<size_t>(c)]);
    s.probability = sigmoid(head[start]) * sigmoid(tail[end]);
    spans.push_back(std::move(s));
  }
  std::stable_sort(spans.begin(), spans.end(), [](const SiameseSpan& a, const SiameseSpan& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  return spans;
}

// "t1: s1, t2: s2, t: " for type t under the chain (t1, s1), (t2, s2).
inline std::string siamese_hint(const SiameseChain& prefix, const std::string& type) {
  std::string hint;
  for (const SiameseSpan& link : prefix) hint += link.type + ": " + link.span + ", ";
  return hint + type + ": ";
}

}  // namespace detail

// SiameseUIE over a Runner (any backend, direct or batched). Thread-safe: run() keeps its state
// on its own stack.
class SiameseExtractor {
 public:
  explicit SiameseExtractor(Runner& runner, SiameseOptions options = {})
      : runner_(runner), model_(check_siamese(runner.model())), options_(options) {
    if (options_.window_tokens < 2 || options_.window_stride < 1 ||
        options_.window_stride > options_.window_tokens ||
        options_.window_tokens > 2 * options_.window_stride)
      throw Error("SiameseUIE windows: stride must be in [window / 2, window]");
    if (options_.max_hint_tokens < 3) throw Error("SiameseUIE hints need at least 3 tokens");
    if (options_.window_tokens + options_.max_hint_tokens > model_.config().max_position_embeddings)
      throw Error("SiameseUIE: window " + std::to_string(options_.window_tokens) + " + hint " +
                  std::to_string(options_.max_hint_tokens) + " tokens exceed the model's " +
                  std::to_string(model_.config().max_position_embeddings) + " positions");
  }

  // ModelScope's {"output": [...]} for each text: every chain from a root type down to a leaf
  // of the schema, depth first (schema types in order, spans sorted, children before the next
  // span).
  std::vector<std::vector<SiameseChain>> run(const std::vector<std::string>& texts,
                                             const Schema& schema) const {
    std::vector<TextWindows> windows;  // all texts checked before any model work
    for (size_t i = 0; i < texts.size(); ++i) {
      if (texts[i].empty()) throw InputError(i, std::nullopt, "empty text", InputError::Noun::text);
      try {
        windows.push_back(tokenize(texts[i]));
      } catch (const Error& e) {
        throw InputError(i, std::nullopt, e.what(), InputError::Noun::text);
      }
    }
    // The model's errors pass as they are (a server's Overloaded / DeadlineExceeded among them).
    std::vector<std::vector<SiameseChain>> out;
    for (TextWindows& w : windows) out.push_back(run_one(w, schema));
    return out;
  }

  // The same answers in the nested shape of UIE models: {type: [{text, start, end, probability,
  // relations: {child type: [...]}}]}.
  static Extraction nested(const std::vector<SiameseChain>& chains) {
    Extraction root;
    for (const SiameseChain& chain : chains) {
      Extraction* level = &root;
      for (const SiameseSpan& link : chain) {
        std::vector<ExtractedSpan>& spans = (*level)[link.type];
        auto it = std::find_if(spans.begin(), spans.end(), [&](const ExtractedSpan& s) {
          return s.start == link.begin && s.end == link.end;
        });
        if (it == spans.end())
          it = spans.insert(spans.end(),
                            ExtractedSpan{link.span, link.begin, link.end, link.probability, {}});
        level = &it->relations;
      }
    }
    return root;
  }

 private:
  // One get_prefix_infos call of ModelScope's: the types asked under one chain of spans.
  struct Call {
    SiameseChain prefix;
    const std::vector<SchemaNode>* types = nullptr;
    std::vector<std::vector<SiameseSpan>> found;  // per type
    std::vector<std::vector<size_t>> children;    // per type, per span: the call it leads to
  };

  // The text's windows through the shared layers, once.
  struct TextWindows {
    Encoding tokens;
    std::vector<char32_t> code_points;
    std::vector<int64_t> starts;
    std::vector<int32_t> cu_seqlens;  // the windows' real (unpadded) tokens, packed
    int64_t hint_position = 0;        // where hint positions start: the (padded) window length
    std::vector<float> states;
  };

  static const Model& check_siamese(const Model& model) {
    if (model.config().architecture != Architecture::siamese_uie)
      throw Error(std::string("SiameseUIE extraction needs a siamese_uie model, this one is ") +
                  architecture_name(model.config().architecture));
    return model;
  }

  // The text's tokens and windows (no model work yet).
  TextWindows tokenize(const std::string& text) const {
    TextWindows t;
    t.code_points = detail::decode_utf8(text).code_points;
    if (t.code_points.size() > options_.max_text_chars)
      throw Error("has " + std::to_string(t.code_points.size()) + " characters (at most " +
                  std::to_string(options_.max_text_chars) + ")");
    t.tokens = model_.tokenizer().encode(text, 0);  // never truncated: long texts get windows
    const int64_t n = static_cast<int64_t>(t.tokens.size());
    t.starts = detail::window_starts(n, options_.window_tokens, options_.window_stride);
    // ModelScope pads the last window when there are several: hints then start at the full
    // window length. Padding itself changes nothing (masked), so it is not run.
    t.hint_position = t.starts.size() > 1 ? options_.window_tokens : n;
    t.cu_seqlens.push_back(0);
    for (int64_t start : t.starts)
      t.cu_seqlens.push_back(
          t.cu_seqlens.back() +
          static_cast<int32_t>(std::min(n, start + options_.window_tokens) - start));
    return t;
  }

  // The windows through the shared layers.
  std::vector<float> text_states(const TextWindows& t) const {
    ForwardRequest request;
    request.head.kind = HeadKind::siamese_text_states;
    for (size_t w = 0; w < t.starts.size(); ++w)
      request.batch.add(
          std::span<const int32_t>(t.tokens.ids.data() + t.starts[w],
                                   static_cast<size_t>(t.cu_seqlens[w + 1] - t.cu_seqlens[w])));
    return runner_.run(std::move(request)).values;
  }

  // All calls of one schema level: every hint against every window, in as few passes as the
  // token budget allows (one, usually).
  void run_level(std::vector<Call>& calls, const std::vector<size_t>& level,
                 const TextWindows& text) const {
    const Tokenizer& tokenizer = model_.tokenizer();
    const size_t windows = text.starts.size();
    size_t hints = 0;
    for (size_t c : level) hints += calls[c].types->size();
    if (hints * windows > options_.max_pairs)
      throw Error("the schema needs " + std::to_string(hints) + " hints x " +
                  std::to_string(windows) + " windows in one level (limit " +
                  std::to_string(options_.max_pairs) + " pairs)");
    // A pass's tokens: its hints once each (shared layers), then every (window, hint) pair.
    const int64_t text_tokens = text.cu_seqlens.back();
    std::vector<ForwardRequest> passes(1);
    int64_t pass_tokens = 0;
    for (size_t c : level)
      for (const SchemaNode& type : *calls[c].types) {
        const Encoding hint = tokenizer.encode(detail::siamese_hint(calls[c].prefix, type.name),
                                               static_cast<size_t>(options_.max_hint_tokens));
        const int64_t tokens = static_cast<int64_t>(hint.size() * (windows + 1)) + text_tokens;
        const bool full =
            passes.back().batch.num_sequences() > 0 &&
            (!options_.reuse_text_states || pass_tokens + tokens > options_.max_pass_tokens);
        if (full) {
          passes.emplace_back();
          pass_tokens = 0;
        }
        passes.back().batch.add(hint.ids, std::vector<int32_t>(hint.size(), 1), {},
                                static_cast<int32_t>(text.hint_position));
        pass_tokens += tokens;
      }
    ForwardResult logits;  // per (hint, window) pair, hint-major, as run_siamese returns them
    for (ForwardRequest& pass : passes) {
      pass.head.kind = HeadKind::siamese_logits;
      pass.text_states = text.states.empty() ? text_states(text) : text.states;
      pass.text_cu_seqlens = text.cu_seqlens;
      const ForwardResult part = runner_.run(std::move(pass));
      logits.start.insert(logits.start.end(), part.start.begin(), part.start.end());
      logits.end.insert(logits.end.end(), part.end.begin(), part.end.end());
    }
    const size_t n = text.tokens.size();
    size_t offset = 0;
    for (size_t c : level) {
      Call& call = calls[c];
      for (size_t t = 0; t < call.types->size(); ++t) {
        std::vector<double> head(n, -1.0), tail(n, -1.0);
        for (size_t w = 0; w < text.starts.size(); ++w) {
          const int64_t len = text.cu_seqlens[w + 1] - text.cu_seqlens[w];
          detail::merge_window_logits(head, logits.start.data() + offset, text.starts[w], len);
          detail::merge_window_logits(tail, logits.end.data() + offset, text.starts[w], len);
          offset += static_cast<size_t>(len);
        }
        std::vector<SiameseSpan> spans = detail::decode_pointer_spans(
            head, tail, text.tokens, text.code_points, options_.threshold, options_.max_spans);
        for (SiameseSpan& s : spans) s.type = (*call.types)[t].name;
        call.found.push_back(std::move(spans));
      }
    }
  }

  std::vector<SiameseChain> run_one(TextWindows& windows, const Schema& schema) const {
    if (options_.reuse_text_states) windows.states = text_states(windows);
    std::vector<Call> calls(1);
    calls[0].types = &schema.roots;
    std::vector<size_t> level{0};
    while (!level.empty()) {
      run_level(calls, level, windows);
      std::vector<size_t> next;
      for (size_t c : level) {
        calls[c].children.resize(calls[c].types->size());
        for (size_t t = 0; t < calls[c].types->size(); ++t) {
          const SchemaNode& type = (*calls[c].types)[t];
          if (type.children.empty()) continue;
          for (size_t s = 0; s < calls[c].found[t].size(); ++s) {
            Call child;  // built before push_back, which may move calls[c]
            child.prefix = calls[c].prefix;
            child.prefix.push_back(calls[c].found[t][s]);
            child.types = &type.children;
            calls[c].children[t].push_back(calls.size());
            next.push_back(calls.size());
            calls.push_back(std::move(child));
          }
        }
      }
      level = std::move(next);
    }
    std::vector<SiameseChain> chains;
    collect(calls, 0, chains);
    return chains;
  }

  // ModelScope's order: a leaf type's spans end chains; a span of a type with children leads
  // to that call's chains first.
  static void collect(const std::vector<Call>& calls, size_t c, std::vector<SiameseChain>& out) {
    const Call& call = calls[c];
    for (size_t t = 0; t < call.types->size(); ++t)
      for (size_t s = 0; s < call.found[t].size(); ++s) {
        if ((*call.types)[t].children.empty()) {
          SiameseChain chain = call.prefix;
          chain.push_back(call.found[t][s]);
          out.push_back(std::move(chain));
        } else {
          collect(calls, call.children[t][s], out);
        }
      }
  }

  Runner& runner_;
  const Model& model_;
  SiameseOptions options_;
};

}  // namespace tinybert
