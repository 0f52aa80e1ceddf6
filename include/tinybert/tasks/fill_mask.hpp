// Fill-mask: top-k tokens with probabilities for every [MASK] of every text, one packed batch.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "tinybert/heads.hpp"

namespace tinybert {

struct TokenCandidate {
  std::string token;
  int32_t id = 0;
  float probability = 0, logit = 0;
};

struct MaskPrediction {
  int64_t token_index = 0;  // position in the encoded sequence ([CLS] = 0)
  Offset chars;             // the [MASK]'s code-point range in the text
  std::vector<TokenCandidate> candidates;
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
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<TokenCandidate> out;
  for (int64_t i = 0; i < k; ++i) {
    const int32_t id = order[i];
    const std::string token = id < static_cast<int32_t>(tokenizer.vocab_size()) ? tokenizer.id_to_token(id) : "[UNK]";
    out.push_back({token, id, static_cast<float>(std::exp(static_cast<double>(logits[id] - max_logit)) / sum), logits[id]});
  }
  return out;
}

// For every text, the predictions of each [MASK] in order. A text without [MASK] is an error
// naming the text's index.
template <class Backend>
std::vector<std::vector<MaskPrediction>> fill_mask(const Model& model, const Encoder<Backend>& encoder,
                                                   Heads<Backend>& heads, Workspace<Backend>& ws,
                                                   const std::vector<std::string>& texts, int64_t top_k = 5) {
  const Tokenizer& tokenizer = model.tokenizer();
  if (tokenizer.mask_id() < 0) throw Error("this model's vocabulary has no mask token");
  Batch batch;
  std::vector<int64_t> rows;                 // packed row of every mask
  std::vector<std::pair<size_t, MaskPrediction>> masks;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Encoding e = tokenizer.encode(texts[i], 0);
    if (static_cast<int64_t>(e.ids.size()) > model.max_length())
      throw Error("text " + std::to_string(i + 1) + ": " + std::to_string(e.ids.size()) + " tokens, the model takes at most " +
                  std::to_string(model.max_length()));
    size_t found = 0;
    for (size_t t = 0; t < e.ids.size(); ++t) {
      if (e.ids[t] != tokenizer.mask_id()) continue;
      rows.push_back(batch.num_tokens() + static_cast<int64_t>(t));
      masks.push_back({i, MaskPrediction{static_cast<int64_t>(t), e.offsets[t], {}}});
      ++found;
    }
    if (found == 0) throw Error("text " + std::to_string(i + 1) + ": no " + tokenizer.options().mask_token + " token");
    batch.add(e.ids, e.type_ids);
  }
  encoder.forward(batch, ws);
  const std::vector<float> logits = heads.mlm_logits(ws.hidden, rows);
  const int64_t vocab = model.config().vocab_size;
  std::vector<std::vector<MaskPrediction>> out(texts.size());
  for (size_t m = 0; m < masks.size(); ++m) {
    masks[m].second.candidates = top_k_candidates(logits.data() + m * vocab, vocab, top_k, tokenizer);
    out[masks[m].first].push_back(std::move(masks[m].second));
  }
  return out;
}

}  // namespace tinybert
