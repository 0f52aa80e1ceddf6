// What the CPU and GPU benchmarks share: a bert-base-shaped model with random weights (no real
// bert-base-chinese is available here) and random packed sequences.
#pragma once

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tinybert/format.hpp"
#include "tinybert/tinybert.hpp"

namespace tinybert::bench {

// The shape of a random model, and the head it carries.
struct RandomBertShape {
  std::string name = "bert-base-random";
  int64_t hidden = 768, ffn = 3072, heads = 12, layers = 12, vocab = 21128, positions = 512;
  Architecture architecture = Architecture::encoder;
  int64_t cross_layers = 0;         // siamese_uie
  std::vector<std::string> labels;  // sequence_classification
  bool modelscope_nli = false;
  std::string vocab_file;  // a real vocab.txt (tokenizes real text); empty: synthetic
};

// Random weights N(0, 0.02), LayerNorm (1, 0), in the .tbw layout of `shape`.
inline void make_random_bert(const std::string& path, const RandomBertShape& shape) {
  const int64_t hidden = shape.hidden, ffn = shape.ffn;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  WeightFileWriter writer;
  const auto random = [&](const std::string& name, Shape dims) {
    std::vector<float> v(static_cast<size_t>(checked_numel(dims)));
    for (auto& x : v) x = normal(rng);
    writer.add_f32(name, dims, v);
  };
  const auto norm = [&](const std::string& prefix) {
    writer.add_f32(prefix + ".weight", {hidden}, std::vector<float>(hidden, 1.0f));
    writer.add_f32(prefix + ".bias", {hidden}, std::vector<float>(hidden, 0.0f));
  };
  const auto linear = [&](const std::string& prefix, int64_t out, int64_t in) {
    random(prefix + ".weight", {out, in});
    random(prefix + ".bias", {out});
  };
  std::string vocab_text;
  int64_t vocab = shape.vocab;
  if (!shape.vocab_file.empty()) {
    std::ifstream in(shape.vocab_file);
    if (!in) throw Error("cannot open " + shape.vocab_file);
    std::stringstream text;
    text << in.rdbuf();
    vocab_text = text.str();
    vocab = std::count(vocab_text.begin(), vocab_text.end(), '\n');
  } else {
    for (int64_t i = 0; i < vocab; ++i) {
      const char* special = i == 0     ? "[PAD]"
                            : i == 100 ? "[UNK]"
                            : i == 101 ? "[CLS]"
                            : i == 102 ? "[SEP]"
                            : i == 103 ? "[MASK]"
                                       : nullptr;
      vocab_text += special ? std::string(special) : "t" + std::to_string(i);
      vocab_text += '\n';
    }
  }
  random("embeddings.word_embeddings", {vocab, hidden});
  random("embeddings.position_embeddings", {shape.positions, hidden});
  random("embeddings.token_type_embeddings", {2, hidden});
  norm("embeddings.norm");
  for (int64_t i = 0; i < shape.layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    linear(p + "attention.qkv", 3 * hidden, hidden);
    linear(p + "attention.output", hidden, hidden);
    norm(p + "attention.norm");
    linear(p + "ffn.intermediate", ffn, hidden);
    linear(p + "ffn.output", hidden, ffn);
    norm(p + "ffn.norm");
  }
  ModelConfig config;
  config.name = shape.name;
  config.architecture = shape.architecture;
  if (shape.architecture == Architecture::sequence_classification) {
    linear("pooler", hidden, hidden);
    linear("classifier", static_cast<int64_t>(shape.labels.size()), hidden);
    config.has_pooler = true;
    config.labels = shape.labels;
    config.modelscope_nli = shape.modelscope_nli;
  } else if (shape.architecture == Architecture::siamese_uie) {
    linear("siamese.head", 1, hidden);
    linear("siamese.tail", 1, hidden);
    config.cross_layers = shape.cross_layers;
  }
  writer.add("tokenizer.vocab", DType::u8, {static_cast<int64_t>(vocab_text.size())},
             std::vector<uint8_t>(vocab_text.begin(), vocab_text.end()));
  config.vocab_size = vocab;
  config.hidden_size = hidden;
  config.num_layers = shape.layers;
  config.num_heads = shape.heads;
  config.intermediate_size = ffn;
  config.max_position_embeddings = shape.positions;
  config.validate();
  writer.set_config(config.to_json());
  writer.set_tokenizer({{"do_lower_case", true}});
  writer.set_metadata({{"source_format", "random weights (bench/bench_models.hpp)"}});
  writer.write(path);
}

// bert-base-chinese shape (12 layers, hidden 768, 12 heads, ffn 3072, vocab 21128).
inline void make_bert_base(const std::string& path) { make_random_bert(path, RandomBertShape{}); }

// A sequence of random token ids below vocab_size: 1000..19999 for a real vocabulary (bge's and
// BERT's ~21k), any id of a smaller one (test models); [CLS] 101 and [SEP] 102 at the ends where
// the vocabulary has them. The embedding gather does not check ids (the tokenizer and the request
// checks do, upstream): an id past the vocabulary would read past the table.
inline void add_sequence(Batch& batch, int64_t length, int64_t vocab_size, std::mt19937& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(length));
  const bool real_vocabulary = vocab_size >= 20000;
  for (auto& id : ids)
    id = real_vocabulary ? 1000 + static_cast<int32_t>(rng() % 19000)
                         : static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab_size));
  if (vocab_size > 102) {
    ids.front() = 101;
    ids.back() = 102;
  }
  batch.add(ids);
}

}  // namespace tinybert::bench
