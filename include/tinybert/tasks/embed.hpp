// Sentence embeddings for many texts in one packed batch.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tinybert/runner.hpp"

namespace tinybert {

struct EmbedOptions {
  std::optional<Pooling> pooling;   // default: the model's (config.pooling)
  std::optional<bool> normalize;    // default: the model's (config.normalize)
};

// Returns one row of hidden_size floats per text, from one forward pass. Texts longer than the
// model takes are truncated (the caller can compare token counts to warn).
inline std::vector<std::vector<float>> embed_texts(Runner& runner, const std::vector<std::string>& texts,
                                                   const EmbedOptions& options = {}) {
  const Model& model = runner.model();
  ForwardRequest request;
  for (const auto& text : texts) {
    const Encoding e = model.tokenizer().encode(text, static_cast<size_t>(model.max_length()));
    request.batch.add(e.ids, e.type_ids);
  }
  const Head model_head = pooled_head(model);
  request.head = {HeadKind::pooled, options.pooling.value_or(model_head.pooling),
                  options.normalize.value_or(model_head.normalize)};
  const std::vector<float> flat = runner.run(std::move(request)).values;
  const auto hidden = static_cast<size_t>(model.config().hidden_size);
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < texts.size(); ++i) rows.emplace_back(flat.begin() + i * hidden, flat.begin() + (i + 1) * hidden);
  return rows;
}

}  // namespace tinybert
