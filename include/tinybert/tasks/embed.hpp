// Sentence embeddings for many texts in one packed batch.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tinybert/runner.hpp"

namespace tinybert {

struct EmbedOptions {
  std::optional<Pooling> pooling;  // default: the model's (config.pooling)
  std::optional<bool> normalize;   // default: the model's (config.normalize)
};

// The texts as the model reads them: one packed batch, each text truncated to the model's
// maximum length (the caller can compare token counts to warn, or report usage).
inline Batch encode_texts(const Model& model, const std::vector<std::string>& texts) {
  Batch batch;
  for (size_t i = 0; i < texts.size(); ++i) {
    Encoding e;
    try {
      e = model.tokenizer().encode(texts[i], static_cast<size_t>(model.max_length()));
    } catch (const InputError&) {
      throw;
    } catch (const Error& error) {  // invalid UTF-8: say which text
      throw InputError(i, std::nullopt, error.what(), InputError::Noun::text);
    }
    batch.add(e.ids, e.type_ids);
  }
  return batch;
}

// One row of hidden_size floats per sequence of the batch, from one forward pass.
inline std::vector<std::vector<float>> embed_batch(Runner& runner, Batch batch,
                                                   const EmbedOptions& options = {}) {
  const Model& model = runner.model();
  const auto sequences = static_cast<size_t>(batch.num_sequences());
  ForwardRequest request;
  request.batch = std::move(batch);
  const Head model_head = pooled_head(model);
  request.head = {HeadKind::pooled, options.pooling.value_or(model_head.pooling),
                  options.normalize.value_or(model_head.normalize)};
  const std::vector<float> flat = runner.run(std::move(request)).values;
  const auto hidden = static_cast<size_t>(model.config().hidden_size);
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < sequences; ++i)
    rows.emplace_back(flat.begin() + i * hidden, flat.begin() + (i + 1) * hidden);
  return rows;
}

// Returns one row of hidden_size floats per text, from one forward pass.
inline std::vector<std::vector<float>> embed_texts(Runner& runner,
                                                   const std::vector<std::string>& texts,
                                                   const EmbedOptions& options = {}) {
  return embed_batch(runner, encode_texts(runner.model(), texts), options);
}

}  // namespace tinybert
