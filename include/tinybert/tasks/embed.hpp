// Sentence embeddings for many texts in one packed batch.
#pragma once

#include <string>
#include <vector>

#include "tinybert/heads.hpp"

namespace tinybert {

struct EmbedOptions {
  std::optional<Pooling> pooling;   // default: the model's (config.pooling)
  std::optional<bool> normalize;    // default: the model's (config.normalize)
};

// Returns one row of hidden_size floats per text. Texts longer than the model takes are
// truncated (the caller can compare token counts to warn).
template <class Backend>
std::vector<std::vector<float>> embed_texts(const Model& model, const Encoder<Backend>& encoder, Heads<Backend>& heads,
                                            Workspace<Backend>& ws, const std::vector<std::string>& texts,
                                            const EmbedOptions& options = {}) {
  Batch batch;
  for (const auto& text : texts) {
    const Encoding e = model.tokenizer().encode(text, static_cast<size_t>(model.max_length()));
    batch.add(e.ids, e.type_ids);
  }
  encoder.forward(batch, ws);
  const int64_t hidden = model.config().hidden_size;
  const std::vector<float> flat = heads.pool(ws.hidden, batch, options.pooling.value_or(model.config().pooling),
                                             options.normalize.value_or(model.config().normalize));
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < texts.size(); ++i) rows.emplace_back(flat.begin() + i * hidden, flat.begin() + (i + 1) * hidden);
  return rows;
}

}  // namespace tinybert
