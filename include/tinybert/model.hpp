// Model: an opened .tbw file with its config, tokenizer and weights bound to named slots.
#pragma once

#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tinybert/config.hpp"
#include "tinybert/fingerprint.hpp"
#include "tinybert/format.hpp"
#include "tinybert/tokenizer.hpp"

namespace tinybert {

// A weight as stored: f32/f16/bf16 values, or i8 values with one f32 scale per row.
struct Weight {
  TensorView values;
  const float* row_scales = nullptr;  // i8 only

  int64_t rows() const { return values.dim(0); }
  int64_t cols() const { return values.shape.size() > 1 ? values.dim(1) : 1; }
};

struct LinearWeights {
  Weight weight;  // [out, in]
  Weight bias;    // [out], f32
};

struct NormWeights {
  Weight gamma, beta;  // [hidden], f32
};

struct LayerWeights {
  LinearWeights qkv, attention_output;
  NormWeights attention_norm;
  LinearWeights ffn_intermediate, ffn_output;
  NormWeights ffn_norm;
};

struct EmbeddingWeights {
  Weight word, position, token_type;
  std::optional<Weight> task_type;
  NormWeights norm;
};

struct MlmHeadWeights {
  LinearWeights transform;
  NormWeights norm;
  Weight decoder;       // [vocab, hidden]: mlm.decoder.weight, or the word embeddings when tied
  Weight decoder_bias;  // [vocab]
};

struct ModelWeights {
  EmbeddingWeights embeddings;
  std::vector<LayerWeights> layers;
  std::optional<LinearWeights> pooler;
  std::optional<MlmHeadWeights> mlm;
  std::optional<LinearWeights> classifier;
  std::optional<LinearWeights> uie_start, uie_end;
  std::optional<LinearWeights> siamese_head, siamese_tail;  // SiameseUIE pointer logits
};

// Checks every tensor against what the architecture needs and hands out typed views.
class WeightBinder {
 public:
  explicit WeightBinder(const WeightFile& file) : file_(file) {}

  // A matrix that the GEMMs consume: f32, f16, bf16 or i8 (+ "_scale").
  Weight matrix(const std::string& name, Shape shape) {
    Weight w = take(name, shape, {DType::f32, DType::f16, DType::bf16, DType::i8});
    if (w.values.dtype == DType::i8) {
      const Weight scale = take(name + "_scale", {shape.at(0)}, {DType::f32});
      w.row_scales = scale.values.as<float>();
    }
    return w;
  }
  Weight vector(const std::string& name, int64_t size) { return take(name, {size}, {DType::f32}); }
  LinearWeights linear(const std::string& prefix, int64_t out, int64_t in) {
    return {matrix(prefix + ".weight", {out, in}), vector(prefix + ".bias", out)};
  }
  NormWeights norm(const std::string& prefix, int64_t size) {
    return {vector(prefix + ".weight", size), vector(prefix + ".bias", size)};
  }
  bool has(const std::string& name) const { return file_.find(name) != nullptr; }
  void allow(const std::string& name) { used_.insert(name); }

  // Every tensor in the file must have been claimed: an unknown one means a converter bug or a
  // file made for another architecture.
  void check_all_used() const {
    for (const auto& t : file_.tensors())
      if (!used_.count(t.name))
        throw Error(file_.path() + ": unexpected tensor '" + t.name + "' " +
                    shape_string(t.view.shape) + " for this architecture");
  }

 private:
  Weight take(const std::string& name, const Shape& shape, std::initializer_list<DType> dtypes) {
    const TensorEntry* entry = file_.find(name);
    std::string allowed;
    for (DType d : dtypes) allowed += std::string(allowed.empty() ? "" : "/") + dtype_name(d);
    if (!entry)
      throw Error(file_.path() + ": missing tensor '" + name + "': expected " +
                  shape_string(shape) + " " + allowed);
    bool dtype_ok = false;
    for (DType d : dtypes) dtype_ok |= entry->view.dtype == d;
    if (entry->view.shape != shape || !dtype_ok)
      throw Error(file_.path() + ": tensor '" + name + "': expected " + shape_string(shape) + " " +
                  allowed + ", got " + shape_string(entry->view.shape) + " " +
                  dtype_name(entry->view.dtype));
    used_.insert(name);
    return Weight{entry->view, nullptr};
  }

  const WeightFile& file_;
  std::set<std::string> used_;
};

inline ModelWeights bind_weights(const WeightFile& file, const ModelConfig& config) {
  WeightBinder bind(file);
  const int64_t hidden = config.hidden_size, ffn = config.intermediate_size;
  ModelWeights w;
  w.embeddings.word = bind.matrix("embeddings.word_embeddings", {config.vocab_size, hidden});
  w.embeddings.position =
      bind.matrix("embeddings.position_embeddings", {config.max_position_embeddings, hidden});
  w.embeddings.token_type =
      bind.matrix("embeddings.token_type_embeddings", {config.type_vocab_size, hidden});
  if (config.task_type_vocab_size > 0)
    w.embeddings.task_type =
        bind.matrix("embeddings.task_type_embeddings", {config.task_type_vocab_size, hidden});
  w.embeddings.norm = bind.norm("embeddings.norm", hidden);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights layer;
    layer.qkv = bind.linear(p + "attention.qkv", 3 * hidden, hidden);
    layer.attention_output = bind.linear(p + "attention.output", hidden, hidden);
    layer.attention_norm = bind.norm(p + "attention.norm", hidden);
    layer.ffn_intermediate = bind.linear(p + "ffn.intermediate", ffn, hidden);
    layer.ffn_output = bind.linear(p + "ffn.output", hidden, ffn);
    layer.ffn_norm = bind.norm(p + "ffn.norm", hidden);
    w.layers.push_back(layer);
  }
  if (config.has_pooler) w.pooler = bind.linear("pooler", hidden, hidden);
  switch (config.architecture) {
    case Architecture::encoder:
      break;
    case Architecture::masked_lm: {
      MlmHeadWeights mlm;
      mlm.transform = bind.linear("mlm.transform", hidden, hidden);
      mlm.norm = bind.norm("mlm.norm", hidden);
      mlm.decoder = bind.has("mlm.decoder.weight")
                        ? bind.matrix("mlm.decoder.weight", {config.vocab_size, hidden})
                        : w.embeddings.word;  // tied
      mlm.decoder_bias = bind.vector("mlm.decoder.bias", config.vocab_size);
      w.mlm = mlm;
      break;
    }
    case Architecture::sequence_classification:
      w.classifier = bind.linear("classifier", config.num_labels(), hidden);
      break;
    case Architecture::uie:
      w.uie_start = bind.linear("uie.start", 1, hidden);
      w.uie_end = bind.linear("uie.end", 1, hidden);
      break;
    case Architecture::siamese_uie:
      w.siamese_head = bind.linear("siamese.head", 1, hidden);
      w.siamese_tail = bind.linear("siamese.tail", 1, hidden);
      break;
  }
  bind.allow("tokenizer.vocab");
  bind.check_all_used();
  return w;
}

inline TokenizerOptions tokenizer_options_from_json(const nlohmann::json& j) {
  TokenizerOptions o;
  try {
    o.do_lower_case = j.value("do_lower_case", true);
    if (j.contains("strip_accents") && !j["strip_accents"].is_null())
      o.strip_accents = j["strip_accents"].get<bool>();
    o.tokenize_chinese_chars = j.value("tokenize_chinese_chars", true);
    o.max_input_chars_per_word = static_cast<int>(json_integer(j, "max_input_chars_per_word", 100));
    o.unk_token = j.value("unk_token", o.unk_token);
    o.cls_token = j.value("cls_token", o.cls_token);
    o.sep_token = j.value("sep_token", o.sep_token);
    o.pad_token = j.value("pad_token", o.pad_token);
    o.mask_token = j.value("mask_token", o.mask_token);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("tokenizer settings: ") + e.what());
  }
  return o;
}

// An opened model: file (mmapped), config, tokenizer and bound weight views. Immutable after
// construction, so one Model can be shared by many threads.
class Model {
 public:
  explicit Model(const std::string& path)
      : file_(path),
        config_(load_config(file_)),
        tokenizer_(load_tokenizer(file_)),
        weights_(bind_weights(file_, config_)) {}

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const ModelWeights& weights() const { return weights_; }
  const WeightFile& file() const { return file_; }
  // Longest sequence (special tokens included) the model accepts.
  int64_t max_length() const { return config_.max_length; }
  // content_fingerprint() of the file (fingerprint.hpp), computed on first use.
  const std::string& fingerprint() const {
    std::call_once(fingerprint_once_, [this] { fingerprint_ = content_fingerprint(file_); });
    return fingerprint_;
  }

  // For a weight that a backend has copied (packed, converted or uploaded): lets go of the
  // file's pages it had to read, so that the weight is not resident twice. The file and the
  // views stay valid; a later read brings the pages back from the page cache. Does nothing
  // for a view that is not a tensor of this file.
  void release_pages(const Weight& w) const {
    for (const TensorEntry& t : file_.tensors())
      if (t.view.data == w.values.data && t.view.bytes() == w.values.bytes()) {
        release_mapped_pages(t.view.data, t.view.bytes());
        return;
      }
  }

 private:
  // The config, with the settings that the converter keeps in the tokenizer section.
  static ModelConfig load_config(const WeightFile& file) {
    ModelConfig config;
    try {
      config = ModelConfig::from_json(file.config());
    } catch (const Error& e) {
      throw Error(file.path() + ": " + e.what());
    }
    const nlohmann::json& tokenizer = file.tokenizer();
    config.max_length = json_integer(tokenizer, "model_max_length", 512);
    if (config.max_length <= 0 || config.max_length > config.max_position_embeddings)
      config.max_length = config.max_position_embeddings;
    if (!config.uie_max_seq_len && tokenizer.contains("uie_max_seq_len") &&
        tokenizer["uie_max_seq_len"].is_number_integer())
      config.uie_max_seq_len = tokenizer["uie_max_seq_len"].get<int64_t>();
    return config;
  }
  static Tokenizer load_tokenizer(const WeightFile& file) {
    const TensorEntry* vocab = file.find("tokenizer.vocab");
    if (!vocab || vocab->view.dtype != DType::u8 || vocab->view.shape.size() != 1)
      throw Error(file.path() + ": missing tensor 'tokenizer.vocab' (u8 [bytes])");
    const std::string_view text(vocab->view.as<char>(), vocab->view.bytes());
    return Tokenizer::from_vocab_text(text, tokenizer_options_from_json(file.tokenizer()));
  }

  WeightFile file_;
  ModelConfig config_;
  Tokenizer tokenizer_;
  ModelWeights weights_;
  mutable std::once_flag fingerprint_once_;
  mutable std::string fingerprint_;
};

}  // namespace tinybert
