// ModelConfig: what the encoder and heads need to know about a model, read from a .tbw header.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tinybert/error.hpp"

namespace tinybert {

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
      c.vocab_size = j.at("vocab_size").get<int64_t>();
      c.hidden_size = j.at("hidden_size").get<int64_t>();
      c.num_layers = j.at("num_layers").get<int64_t>();
      c.num_heads = j.at("num_heads").get<int64_t>();
      c.intermediate_size = j.at("intermediate_size").get<int64_t>();
      c.max_position_embeddings = j.at("max_position_embeddings").get<int64_t>();
      c.type_vocab_size = j.at("type_vocab_size").get<int64_t>();
      c.task_type_vocab_size = j.value("task_type_vocab_size", int64_t{0});
      c.layer_norm_eps = j.at("layer_norm_eps").get<float>();
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
        c.uie_position_prob = j["position_prob"].get<float>();
      c.cross_layers = j.value("cross_layers", int64_t{0});
      c.modelscope_nli = j.value("modelscope_nli", false);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("config: ") + e.what());
    }
    c.validate();
    return c;
  }
};

}  // namespace tinybert
