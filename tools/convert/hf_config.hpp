// Reads a HuggingFace-style model folder's config.json and tokenizer_config.json into our
// ModelConfig and tokenizer settings.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "tinybert/config.hpp"
#include "tinybert/error.hpp"
#include "tinybert/json_text.hpp"

namespace tinybert::convert {

inline std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline nlohmann::json read_json_file(const std::filesystem::path& path) {
  return parse_json_text(read_text_file(path), path.string());
}

// A config file's JSON must be an object, and a field of the wrong type (a number where a string
// belongs, for value() or get()) must be an Error that names the file, not a nlohmann::json
// exception: the readers below check the first and turn the second into an Error (both found by
// tests/fuzz/fuzz_configs).
inline void expect_json_object(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object())
    throw Error(file + ": expected a JSON object, found " + std::string(j.type_name()));
}
[[noreturn]] inline void throw_json_error(const std::string& file,
                                          const nlohmann::json::exception& e) {
  throw Error(file + ": " + e.what());
}

// Architecture from config.json "architectures"/"model_type"; empty optional when it says
// nothing we know, so the caller can infer it from the tensors.
inline std::optional<Architecture> architecture_from_hf(const nlohmann::json& config) try {
  expect_json_object(config, "config.json");
  std::string name;
  if (config.contains("architectures") && config["architectures"].is_array() &&
      !config["architectures"].empty() && config["architectures"][0].is_string())
    name = config["architectures"][0].get<std::string>();
  const std::string model_type = config.value("model_type", std::string());
  if (model_type == "roberta" || model_type == "xlm-roberta" || name.rfind("Roberta", 0) == 0 ||
      name.rfind("XLMRoberta", 0) == 0)
    throw Error(
        "config.json: RoBERTa-family models are not supported yet (position ids are offset by the "
        "padding index)");
  if (name == "UIE" || name == "UIEM" || model_type == "uie") return Architecture::uie;
  if (name == "SiameseUieModel") return Architecture::siamese_uie;
  const auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with("ForMaskedLM") || ends_with("ForPreTraining")) return Architecture::masked_lm;
  if (ends_with("ForSequenceClassification")) return Architecture::sequence_classification;
  if (ends_with("Model")) return Architecture::encoder;
  return std::nullopt;
} catch (const nlohmann::json::exception& e) {
  throw_json_error("config.json", e);
}

// A ModelScope model folder's configuration.json: the task says the architecture (the class
// names in config.json do not: SiameseUIE's "SiameseUieModel" reads like a plain encoder), and
// zero-shot classification means ModelScope's NLI pipeline rules. Empty optional for a folder
// without one.
struct ModelScopeInfo {
  std::string task, model_type;
  std::optional<Architecture> architecture;  // unset for a task we do not run
  bool zero_shot = false;             // zero-shot-classification: entailment 0, contradiction 2
  std::optional<int64_t> max_length;  // preprocessor.max_length
};

inline std::optional<ModelScopeInfo> modelscope_info(const std::filesystem::path& folder) try {
  const std::filesystem::path path = folder / "configuration.json";
  if (!std::filesystem::exists(path)) return std::nullopt;
  const nlohmann::json c = read_json_file(path);
  ModelScopeInfo info;
  if (!c.is_object()) throw Error(path.string() + ": expected a JSON object");
  info.task = c.value("task", std::string());
  if (c.contains("model") && c["model"].is_object()) {
    const nlohmann::json& m = c["model"];
    // as ModelScope's get_model_type: backbone.type, else type, else model_type
    if (m.contains("backbone") && m["backbone"].is_object() && m["backbone"].contains("type"))
      info.model_type = m["backbone"].value("type", std::string());
    else
      info.model_type = m.value("type", m.value("model_type", std::string()));
  }
  if (c.contains("preprocessor") && c["preprocessor"].is_object() &&
      c["preprocessor"].contains("max_length") &&
      c["preprocessor"]["max_length"].is_number_integer())
    info.max_length = c["preprocessor"]["max_length"].get<int64_t>();
  if (info.task == "zero-shot-classification" || info.task == "nli") {
    info.architecture = Architecture::sequence_classification;
    info.zero_shot = info.task == "zero-shot-classification";
  } else if (info.task == "fill-mask") {
    info.architecture = Architecture::masked_lm;
  } else if (info.task == "siamese-uie") {
    info.architecture = Architecture::siamese_uie;
  } else if (info.task == "sentence-embedding" || info.task == "feature-extraction") {
    info.architecture = Architecture::encoder;
  }
  return info;
} catch (const nlohmann::json::exception& e) {
  throw_json_error((folder / "configuration.json").string(), e);
}

// default_layer_norm_eps applies when config.json has none: 1e-12 for HF BERT, 1e-5 for
// PaddleNLP checkpoints (paddle.nn.LayerNorm's default).
inline ModelConfig model_config_from_hf(const nlohmann::json& hf, Architecture architecture,
                                        const std::string& name,
                                        float default_layer_norm_eps = 1e-12f) {
  expect_json_object(hf, "config.json");
  ModelConfig c;
  c.name = name;
  c.architecture = architecture;
  try {
    const auto required = [&](const char* key) -> int64_t {
      if (!hf.contains(key) || !hf[key].is_number_integer())
        throw Error(std::string("config.json: missing integer \"") + key + "\"");
      return hf[key].get<int64_t>();
    };
    c.vocab_size = required("vocab_size");
    c.hidden_size = required("hidden_size");
    c.num_layers = required("num_hidden_layers");
    c.num_heads = required("num_attention_heads");
    c.intermediate_size = required("intermediate_size");
    c.max_position_embeddings = json_integer(hf, "max_position_embeddings", 512);
    c.type_vocab_size = json_integer(hf, "type_vocab_size", 2);
    if (hf.value("use_task_id", false))
      c.task_type_vocab_size = json_integer(hf, "task_type_vocab_size", 3);
    c.layer_norm_eps = json_float(hf, "layer_norm_eps", default_layer_norm_eps);
    const std::string act = hf.value("hidden_act", std::string("gelu"));
    if (act != "gelu")
      throw Error("config.json: hidden_act \"" + act +
                  "\" is not supported (only exact erf \"gelu\")");
    const std::string positions = hf.value("position_embedding_type", std::string("absolute"));
    if (positions != "absolute")
      throw Error("config.json: position_embedding_type \"" + positions +
                  "\" is not supported (only \"absolute\")");
    if (architecture == Architecture::sequence_classification) {
      if (!hf.contains("id2label") || !hf["id2label"].is_object() || hf["id2label"].empty())
        throw Error("config.json: a sequence classifier needs \"id2label\"");
      std::map<int64_t, std::string> by_index;
      for (const auto& [key, value] : hf["id2label"].items()) {
        size_t used = 0;
        int64_t index = -1;
        try {
          index = std::stoll(key, &used);
        } catch (const std::exception&) {
        }
        if (used != key.size() || index < 0 || !value.is_string())
          throw Error("config.json: id2label entry \"" + key + "\" is not index -> name");
        by_index[index] = value.get<std::string>();
      }
      for (const auto& [index, label] : by_index) {
        if (index != static_cast<int64_t>(c.labels.size()))
          throw Error("config.json: id2label has no label for index " +
                      std::to_string(c.labels.size()));
        c.labels.push_back(label);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("config.json: ") + e.what());
  }
  return c;
}

// tokenizer_config.json -> our tokenizer settings (docs/weight-format.md). Special tokens may be
// plain strings or {"content": ...} objects.
inline nlohmann::json tokenizer_settings_from_hf(const nlohmann::json& tc,
                                                 int64_t max_positions) try {
  expect_json_object(tc, "tokenizer_config.json");
  const auto token = [&](const char* key, const char* fallback) -> std::string {
    if (!tc.contains(key)) return fallback;
    const auto& v = tc[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
      return v["content"].get<std::string>();
    throw Error(std::string("tokenizer_config.json: \"") + key + "\" is not a token");
  };
  const std::string tokenizer_class = tc.value("tokenizer_class", std::string("BertTokenizer"));
  if (tokenizer_class.find("Bert") == std::string::npos &&
      tokenizer_class.find("Ernie") == std::string::npos)
    throw Error("tokenizer_config.json: tokenizer_class \"" + tokenizer_class +
                "\" is not a BERT WordPiece tokenizer");
  int64_t max_length = max_positions;
  if (tc.contains("model_max_length") && tc["model_max_length"].is_number()) {
    const double m = tc["model_max_length"].get<double>();
    if (m > 0 && m < static_cast<double>(max_positions)) max_length = static_cast<int64_t>(m);
  }
  nlohmann::json s = {
      {"do_lower_case", tc.value("do_lower_case", true)},
      {"strip_accents", tc.contains("strip_accents") ? tc["strip_accents"] : nlohmann::json()},
      {"tokenize_chinese_chars", tc.value("tokenize_chinese_chars", true)},
      {"unk_token", token("unk_token", "[UNK]")},
      {"cls_token", token("cls_token", "[CLS]")},
      {"sep_token", token("sep_token", "[SEP]")},
      {"pad_token", token("pad_token", "[PAD]")},
      {"mask_token", token("mask_token", "[MASK]")},
      {"model_max_length", max_length},
      {"max_input_chars_per_word", 100}};
  if (!s["strip_accents"].is_null() && !s["strip_accents"].is_boolean())
    throw Error("tokenizer_config.json: strip_accents must be true, false or null");
  return s;
} catch (const nlohmann::json::exception& e) {
  throw_json_error("tokenizer_config.json", e);
}

}  // namespace tinybert::convert
