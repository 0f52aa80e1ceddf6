// UIE span decoding (PaddleNLP semantics): tokens with p_start > 0.5 and p_end > 0.5 are paired
// into spans, probability p_start * p_end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace tinybert {

struct TokenSpan {
  int64_t start_token = 0, end_token = 0;  // inclusive token indices into the probability arrays
  float probability = 0;                   // p_start * p_end
};

// PaddleNLP get_span: walk the sorted start and end candidates together. A start at or before
// the current end is coupled to that end (a later start before the same end replaces it, since
// couples are keyed by their end); an end before the current start is skipped. Spans are
// returned ordered by start, then end.
inline std::vector<TokenSpan> decode_spans(const std::vector<float>& start_probs, const std::vector<float>& end_probs,
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
    return a.start_token != b.start_token ? a.start_token < b.start_token : a.end_token < b.end_token;
  });
  return spans;
}

}  // namespace tinybert
