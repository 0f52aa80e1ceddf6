// What the CPU and GPU benchmarks share: a bert-base-shaped model with random weights (no real
// bert-base-chinese is available here) and random packed sequences.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "tinybert/format.hpp"
#include "tinybert/tinybert.hpp"

namespace tinybert::bench {

// bert-base-chinese shape (12 layers, hidden 768, 12 heads, ffn 3072, vocab 21128), N(0, 0.02).
inline void make_bert_base(const std::string& path) {
  const int64_t hidden = 768, ffn = 3072, vocab = 21128, layers = 12, positions = 512;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  WeightFileWriter writer;
  const auto random = [&](const std::string& name, Shape shape) {
    std::vector<float> v(static_cast<size_t>(checked_numel(shape)));
    for (auto& x : v) x = normal(rng);
    writer.add_f32(name, shape, v);
  };
  const auto norm = [&](const std::string& prefix) {
    writer.add_f32(prefix + ".weight", {hidden}, std::vector<float>(hidden, 1.0f));
    writer.add_f32(prefix + ".bias", {hidden}, std::vector<float>(hidden, 0.0f));
  };
  random("embeddings.word_embeddings", {vocab, hidden});
  random("embeddings.position_embeddings", {positions, hidden});
  random("embeddings.token_type_embeddings", {2, hidden});
  norm("embeddings.norm");
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    random(p + "attention.qkv.weight", {3 * hidden, hidden});
    random(p + "attention.qkv.bias", {3 * hidden});
    random(p + "attention.output.weight", {hidden, hidden});
    random(p + "attention.output.bias", {hidden});
    norm(p + "attention.norm");
    random(p + "ffn.intermediate.weight", {ffn, hidden});
    random(p + "ffn.intermediate.bias", {ffn});
    random(p + "ffn.output.weight", {hidden, ffn});
    random(p + "ffn.output.bias", {hidden});
    norm(p + "ffn.norm");
  }
  std::string vocab_text;
  for (int64_t i = 0; i < vocab; ++i) {
    const char* special = i == 0 ? "[PAD]" : i == 100 ? "[UNK]" : i == 101 ? "[CLS]" : i == 102 ? "[SEP]" : i == 103 ? "[MASK]" : nullptr;
    if (special) {
      vocab_text += special;
    } else {
      vocab_text += 't';
      vocab_text += std::to_string(i);
    }
    vocab_text += '\n';
  }
  writer.add("tokenizer.vocab", DType::u8, {static_cast<int64_t>(vocab_text.size())},
             std::vector<uint8_t>(vocab_text.begin(), vocab_text.end()));
  ModelConfig config;
  config.name = "bert-base-random";
  config.vocab_size = vocab;
  config.hidden_size = hidden;
  config.num_layers = layers;
  config.num_heads = 12;
  config.intermediate_size = ffn;
  config.max_position_embeddings = positions;
  writer.set_config(config.to_json());
  writer.set_tokenizer({{"do_lower_case", true}});
  writer.set_metadata({{"source_format", "random (--make-bert-base)"}});
  writer.write(path);
}

inline void add_sequence(Batch& batch, int64_t length, std::mt19937& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(length));
  for (auto& id : ids) id = 1000 + static_cast<int32_t>(rng() % 19000);
  ids.front() = 101;
  ids.back() = 102;
  batch.add(ids);
}

}  // namespace tinybert::bench
