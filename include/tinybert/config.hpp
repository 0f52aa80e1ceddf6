// ModelConfig: what the encoder and heads need to know about a model, read from a .tbw header.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tinybert/error.hpp"

namespace tinybert {

// An integer field of a JSON object, or `fallback` when absent. nlohmann's get<int64_t>() also
// converts floats, and one out of int64's range (1e30) with undefined behaviour (found by
// tests/fuzz/fuzz_tbw): here only integers within range pass, anything else is an Error.
inline int64_t json_integer(const nlohmann::json& j, const char* key,
                            std::optional<int64_t> fallback = std::nullopt) {
  if (!j.contains(key)) {
    if (fallback) return *fallback;
    throw Error(std::string("missing integer \"") + key + "\"");
  }
  const nlohmann::json& v = j[key];
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)))
    throw Error(std::string("\"") + key + "\" must be an integer, found " + v.dump());
  return v.get<int64_t>();
}

// A number field as a float, or `fallback` when absent; a double beyond float's range is an Error
// (converting it would be undefined behaviour too).
inline float json_float(const nlohmann::json& j, const char* key,
                        std::optional<float> fallback = std::nullopt) {
  if (!j.contains(key)) {
    if (fallback) return *fallback;
    throw Error(std::string("missing number \"") + key + "\"");
  }
  const nlohmann::json& v = j[key];
  if (!v.is_number() || !(std::abs(v.get<double>()) <= std::numeric_limits<float>::max()))
    throw Error(std::string("\"") + key + "\" must be a number in float's range, found " +
                v.dump());
  return static_cast<float>(v.get<double>());
}

enum class Architecture { encoder, masked_lm, sequence_classification, uie, siamese_uie };
enum class Pooling { cls, mean };

inline const char* architecture_name(Architecture a) {
  switch (a) {
    case Architecture::encoder:
      return "encoder";
    case Architecture::masked_lm:
      return "masked_lm";
    case Architecture::sequence_classification:
      return "sequence_classification";
    case Architecture::uie:
      return "uie";
    case Architecture::siamese_uie:
      return "siamese_uie";
  }
  return "?";
}

inline Architecture parse_architecture(const std::string& name) {
  for (auto a :
       {Architecture::encoder, Architecture::masked_lm, Architecture::sequence_classification,
        Architecture::uie, Architecture::siamese_uie})
    if (name == architecture_name(a)) return a;
  throw Error("unknown architecture '" + name +
              "' (expected encoder, masked_lm, sequence_classification, uie or siamese_uie)");
}

struct ModelConfig {
  std::string name;
  Architecture architecture = Architecture::encoder;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t task_type_vocab_size = 0;  // 0: no task-type embeddings (ERNIE 3.0 / UIE have them)
  float layer_norm_eps = 1e-12f;
  bool has_pooler = false;
  std::vector<std::string> labels;  // sequence classification: class names by index
  Pooling pooling = Pooling::cls;
  bool normalize = true;

  // Task settings the model's own files carry. The tasks read them here, never from the file.
  // Longest sequence (special tokens included) the tokenizer config allows, at most
  // max_position_embeddings (tokenizer "model_max_length"; Model fills it in).
  int64_t max_length = 0;
  std::optional<int64_t>
      uie_max_seq_len;  // UIE window: config "max_seq_len" / tokenizer "uie_max_seq_len"
  std::optional<float> uie_position_prob;  // UIE span threshold: config "position_prob"
  // SiameseUIE: the last cross_layers layers run over [text ; hint] together, the layers before
  // them over the text and each hint alone (6 of 12 in the published model).
  int64_t cross_layers = 0;
  // A ModelScope zero-shot checkpoint: its pipeline reads entailment from logit 0 and
  // contradiction from logit 2 whatever the labels say, and scores as tasks/classify.hpp says.
  bool modelscope_nli = false;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t num_labels() const { return static_cast<int64_t>(labels.size()); }

  // Checks that the numbers describe a runnable model; the limits keep sizes far from overflow.
  void validate() const {
    const auto positive = [](const char* what, int64_t v, int64_t limit) {
      if (v <= 0 || v > limit)
        throw Error(std::string("config: ") + what + " = " + std::to_string(v) + " (expected 1.." +
                    std::to_string(limit) + ")");
    };
    positive("vocab_size", vocab_size, 1 << 24);
    positive("hidden_size", hidden_size, 1 << 16);
    positive("num_layers", num_layers, 1024);
    positive("num_heads", num_heads, 1024);
    positive("intermediate_size", intermediate_size, 1 << 18);
    positive("max_position_embeddings", max_position_embeddings, 1 << 20);
    positive("type_vocab_size", type_vocab_size, 1 << 16);
    if (task_type_vocab_size < 0 || task_type_vocab_size > (1 << 16))
      throw Error("config: task_type_vocab_size = " + std::to_string(task_type_vocab_size));
    if (hidden_size % num_heads != 0)
      throw Error("config: hidden_size " + std::to_string(hidden_size) +
                  " is not divisible by num_heads " + std::to_string(num_heads));
    if (!(layer_norm_eps > 0.0f && layer_norm_eps < 1.0f))
      throw Error("config: layer_norm_eps = " + std::to_string(layer_norm_eps));
    if (architecture == Architecture::sequence_classification && labels.empty())
      throw Error("config: a sequence_classification model needs labels");
    if (modelscope_nli &&
        (architecture != Architecture::sequence_classification || labels.size() < 3))
      throw Error(
          "config: modelscope_nli needs a sequence_classification model with at least 3 labels");
    if (architecture == Architecture::siamese_uie) {
      if (cross_layers < 1 || cross_layers >= num_layers)
        throw Error("config: cross_layers = " + std::to_string(cross_layers) + " (expected 1.." +
                    std::to_string(num_layers - 1) + " of the " + std::to_string(num_layers) +
                    " layers)");
    } else if (cross_layers != 0) {
      throw Error("config: cross_layers is for siamese_uie models");
    }
  }

  nlohmann::json to_json() const {
    nlohmann::json j = {{"name", name},
                        {"architecture", architecture_name(architecture)},
                        {"vocab_size", vocab_size},
                        {"hidden_size", hidden_size},
                        {"num_layers", num_layers},
                        {"num_heads", num_heads},
                        {"intermediate_size", intermediate_size},
                        {"max_position_embeddings", max_position_embeddings},
                        {"type_vocab_size", type_vocab_size},
                        {"task_type_vocab_size", task_type_vocab_size},
                        {"layer_norm_eps", layer_norm_eps},
                        {"hidden_act", "gelu"},
                        {"has_pooler", has_pooler},
                        {"labels", labels},
                        {"pooling", pooling == Pooling::cls ? "cls" : "mean"},
                        {"normalize", normalize}};
    if (uie_max_seq_len) j["max_seq_len"] = *uie_max_seq_len;
    if (uie_position_prob) j["position_prob"] = *uie_position_prob;
    if (cross_layers) j["cross_layers"] = cross_layers;
    if (modelscope_nli) j["modelscope_nli"] = true;
    return j;
  }

  static ModelConfig from_json(const nlohmann::json& j) {
    ModelConfig c;
    try {
      c.name = j.value("name", "");
      c.architecture = parse_architecture(j.at("architecture").get<std::string>());
      c.vocab_size = json_integer(j, "vocab_size");
      c.hidden_size = json_integer(j, "hidden_size");
      c.num_layers = json_integer(j, "num_layers");
      c.num_heads = json_integer(j, "num_heads");
      c.intermediate_size = json_integer(j, "intermediate_size");
      c.max_position_embeddings = json_integer(j, "max_position_embeddings");
      c.type_vocab_size = json_integer(j, "type_vocab_size");
      c.task_type_vocab_size = json_integer(j, "task_type_vocab_size", 0);
      c.layer_norm_eps = json_float(j, "layer_norm_eps");
      if (j.value("hidden_act", std::string("gelu")) != "gelu")
        throw Error("config: hidden_act '" + j["hidden_act"].get<std::string>() +
                    "' (only exact gelu is supported)");
      c.has_pooler = j.value("has_pooler", false);
      c.labels = j.value("labels", std::vector<std::string>{});
      const std::string pooling = j.value("pooling", std::string("cls"));
      if (pooling != "cls" && pooling != "mean")
        throw Error("config: pooling '" + pooling + "' (expected cls or mean)");
      c.pooling = pooling == "cls" ? Pooling::cls : Pooling::mean;
      c.normalize = j.value("normalize", true);
      if (j.contains("max_seq_len") && j["max_seq_len"].is_number_integer())
        c.uie_max_seq_len = j["max_seq_len"].get<int64_t>();
      if (j.contains("position_prob") && j["position_prob"].is_number())
        c.uie_position_prob = json_float(j, "position_prob");
      c.cross_layers = json_integer(j, "cross_layers", 0);
      c.modelscope_nli = j.value("modelscope_nli", false);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("config: ") + e.what());
    }
    c.validate();
    return c;
  }
};

}  // namespace tinybert
