// Task heads on top of the encoder's hidden states: pooling, BERT pooler, masked-LM logits,
// sequence classification logits and UIE start/end probabilities.
#pragma once

#include <cmath>
#include <optional>
#include <span>
#include <vector>

#include "tinybert/encoder.hpp"

namespace tinybert {

template <class Backend>
class Heads {
 public:
  Heads(const Model& model, Backend& backend) : config_(model.config()), backend_(backend) {
    const ModelWeights& w = model.weights();
    const float eps = config_.layer_norm_eps;
    if (w.pooler) pooler_ = backend.prepare(*w.pooler);
    if (w.mlm) {
      mlm_transform_ = backend.prepare(w.mlm->transform);
      mlm_norm_ = backend.prepare(w.mlm->norm, eps);
      mlm_decoder_ = backend.prepare(LinearWeights{w.mlm->decoder, w.mlm->decoder_bias});
    }
    if (w.classifier) classifier_ = backend.prepare(*w.classifier);
    if (w.uie_start) {
      uie_start_ = backend.prepare(*w.uie_start);
      uie_end_ = backend.prepare(*w.uie_end);
    }
    if (w.siamese_head) {
      siamese_head_ = backend.prepare(*w.siamese_head);
      siamese_tail_ = backend.prepare(*w.siamese_tail);
    }
  }

  // Sentence embeddings [sequences, hidden]: [CLS] row or mean over tokens, optionally
  // L2-normalised.
  std::vector<float> pool(const typename Backend::Matrix& hidden, const Batch& batch,
                          Pooling pooling, bool normalize) {
    backend_.pool(hidden, batch, pooling, pooled_);
    std::vector<float> out = backend_.to_host(pooled_);
    if (normalize) l2_normalize_rows(out, config_.hidden_size);
    return out;
  }

  // BERT pooler: tanh(W [CLS] + b), [sequences, hidden].
  std::vector<float> pooler_output(const typename Backend::Matrix& hidden, const Batch& batch) {
    if (!pooler_) throw Error("this model has no pooler");
    backend_.pool(hidden, batch, Pooling::cls, pooled_);
    backend_.linear(*pooler_, pooled_, scratch_, Activation::tanh);
    return backend_.to_host(scratch_);
  }

  // Masked-LM logits [rows.size(), vocab] for the given token rows only (the [MASK] positions),
  // so the vocabulary-sized GEMM runs on as few rows as needed.
  std::vector<float> mlm_logits(const typename Backend::Matrix& hidden,
                                std::span<const int64_t> rows) {
    if (!mlm_transform_) throw Error("this model has no masked-LM head");
    backend_.gather_rows(hidden, rows, pooled_);
    backend_.linear(*mlm_transform_, pooled_, scratch_, Activation::gelu);
    backend_.layernorm(*mlm_norm_, scratch_);
    backend_.linear(*mlm_decoder_, scratch_, logits_, Activation::none);
    return backend_.to_host(logits_);
  }

  // Sequence classification logits [sequences, num_labels] (pooler, then classifier).
  std::vector<float> classifier_logits(const typename Backend::Matrix& hidden, const Batch& batch) {
    if (!classifier_) throw Error("this model has no classification head");
    backend_.pool(hidden, batch, Pooling::cls, pooled_);
    if (pooler_) {
      backend_.linear(*pooler_, pooled_, scratch_, Activation::tanh);
      backend_.linear(*classifier_, scratch_, logits_, Activation::none);
    } else {
      backend_.linear(*classifier_, pooled_, logits_, Activation::none);
    }
    return backend_.to_host(logits_);
  }

  // UIE: per token p_start = sigmoid(w_s h + b_s), p_end likewise; each [tokens].
  struct SpanScores {
    std::vector<float> start, end;
  };
  SpanScores uie_probabilities(const typename Backend::Matrix& hidden) {
    if (!uie_start_) throw Error("this model has no UIE head");
    SpanScores p;
    backend_.linear(*uie_start_, hidden, logits_, Activation::sigmoid);
    p.start = backend_.to_host(logits_);
    backend_.linear(*uie_end_, hidden, logits_, Activation::sigmoid);
    p.end = backend_.to_host(logits_);
    return p;
  }

  // SiameseUIE: raw head / tail logits (no sigmoid) of the given token rows.
  SpanScores siamese_logits(const typename Backend::Matrix& hidden, std::span<const int64_t> rows) {
    if (!siamese_head_) throw Error("this model has no SiameseUIE head");
    SpanScores p;
    backend_.gather_rows(hidden, rows, pooled_);
    backend_.linear(*siamese_head_, pooled_, logits_, Activation::none);
    p.start = backend_.to_host(logits_);
    backend_.linear(*siamese_tail_, pooled_, logits_, Activation::none);
    p.end = backend_.to_host(logits_);
    return p;
  }

  static void l2_normalize_rows(std::vector<float>& rows, int64_t width) {
    for (size_t r = 0; r + width <= rows.size(); r += width) {
      double sum = 0;
      for (int64_t c = 0; c < width; ++c) sum += double(rows[r + c]) * rows[r + c];
      const float inv = sum > 0 ? static_cast<float>(1.0 / std::sqrt(sum)) : 0.0f;
      for (int64_t c = 0; c < width; ++c) rows[r + c] *= inv;
    }
  }

 private:
  ModelConfig config_;
  Backend& backend_;
  std::optional<typename Backend::Linear> pooler_, mlm_transform_, mlm_decoder_, classifier_,
      uie_start_, uie_end_, siamese_head_, siamese_tail_;
  std::optional<typename Backend::Norm> mlm_norm_;
  typename Backend::Matrix pooled_, scratch_, logits_;
};

}  // namespace tinybert
