// Maps the tensor names of HuggingFace BERT/ERNIE checkpoints, PaddleNLP UIE checkpoints and
// ModelScope StructBERT / SiameseUIE checkpoints to the .tbw names of docs/weight-format.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tinybert::convert {

struct MappedName {
  std::string target;      // .tbw name, e.g. "layers.3.attention.qkv.weight"
  int qkv_part = -1;       // 0/1/2 for query/key/value: rows of the fused qkv tensor
  bool is_linear = false;  // a Linear weight (transposed when the source is in Paddle layout)
};

namespace detail {

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "LayerNorm.gamma" (TF-converted checkpoints) means weight, "beta" bias.
inline std::string leaf(std::string_view suffix) {
  if (suffix == "gamma") return "weight";
  if (suffix == "beta") return "bias";
  return std::string(suffix);
}

// Splits "a.b.weight" into ("a.b", "weight").
inline std::pair<std::string_view, std::string_view> split_leaf(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return {name, {}};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

struct ModuleRule {
  std::string_view source, target;
  int qkv_part;
  bool is_linear;
};

// Inside encoder layer N: HF BERT/ERNIE names, then PaddleNLP names.
inline constexpr ModuleRule kLayerRules[] = {
    {"attention.self.query", "attention.qkv", 0, true},
    {"attention.self.key", "attention.qkv", 1, true},
    {"attention.self.value", "attention.qkv", 2, true},
    {"attention.output.dense", "attention.output", -1, true},
    {"attention.output.LayerNorm", "attention.norm", -1, false},
    {"intermediate.dense", "ffn.intermediate", -1, true},
    {"output.dense", "ffn.output", -1, true},
    {"output.LayerNorm", "ffn.norm", -1, false},
    {"self_attn.q_proj", "attention.qkv", 0, true},
    {"self_attn.k_proj", "attention.qkv", 1, true},
    {"self_attn.v_proj", "attention.qkv", 2, true},
    {"self_attn.out_proj", "attention.output", -1, true},
    {"norm1", "attention.norm", -1, false},
    {"linear1", "ffn.intermediate", -1, true},
    {"linear2", "ffn.output", -1, true},
    {"norm2", "ffn.norm", -1, false},
};

inline constexpr ModuleRule kModelRules[] = {
    {"embeddings.word_embeddings", "embeddings.word_embeddings", -1, false},
    {"embeddings.position_embeddings", "embeddings.position_embeddings", -1, false},
    {"embeddings.token_type_embeddings", "embeddings.token_type_embeddings", -1, false},
    {"embeddings.task_type_embeddings", "embeddings.task_type_embeddings", -1, false},
    {"embeddings.LayerNorm", "embeddings.norm", -1, false},
    {"embeddings.layer_norm", "embeddings.norm", -1, false},
    {"pooler.dense", "pooler", -1, true},
    {"cls.predictions.transform.dense", "mlm.transform", -1, true},
    {"cls.predictions.transform.LayerNorm", "mlm.norm", -1, false},
    {"cls.predictions.decoder", "mlm.decoder", -1, false},
    {"classifier", "classifier", -1, true},
    {"linear_start", "uie.start", -1, true},
    {"linear_end", "uie.end", -1, true},
    {"head_clsf", "siamese.head", -1, true},  // ModelScope SiameseUIE's pointer heads
    {"tail_clsf", "siamese.tail", -1, true},
};

// Drops the wrapper prefix of a task model: "bert.", "ernie.", ModelScope SiameseUIE's "plm.",
// or PaddleNLP UIE's "encoder." (only when "encoder." wraps a whole model, i.e. is followed by
// embeddings/encoder/pooler).
inline std::string_view strip_model_prefix(std::string_view name) {
  for (std::string_view prefix : {"bert.", "ernie.", "model.", "plm."})
    if (starts_with(name, prefix)) return name.substr(prefix.size());
  for (std::string_view inner : {"encoder.embeddings.", "encoder.encoder.", "encoder.pooler."})
    if (starts_with(name, inner)) return name.substr(8);
  return name;
}

}  // namespace detail

// The .tbw name for a source tensor; nullopt for tensors that inference does not use
// (position_ids buffers, the NSP head); the caller reports names it cannot map.
// SiameseUIE's cross layers ("crossattention.layer.N.*") map to "cross_layers.N.*": the caller
// renumbers them after the shared layers once it has counted those.
// HF's "cls.predictions.bias" maps to "mlm.decoder.bias#hf": where a file also has ModelScope's
// "cls.predictions.decoder.bias", ModelScope's model uses that one (the caller decides).
inline std::optional<MappedName> map_tensor_name(std::string_view source, bool* ignored = nullptr) {
  using namespace detail;
  if (ignored) *ignored = false;
  const std::string_view name = strip_model_prefix(source);
  if (name == "embeddings.position_ids" || starts_with(name, "cls.seq_relationship.")) {
    if (ignored) *ignored = true;
    return std::nullopt;
  }
  // The MLM output bias: "cls.predictions.bias" (HF) or "cls.predictions.decoder.bias".
  if (name == "cls.predictions.decoder.bias") return MappedName{"mlm.decoder.bias", -1, false};
  if (name == "cls.predictions.bias") return MappedName{"mlm.decoder.bias#hf", -1, false};

  const auto [module, suffix] = split_leaf(name);
  for (std::string_view layers : {"encoder.layer.", "encoder.layers.", "crossattention.layer."}) {
    if (!starts_with(module, layers)) continue;
    const std::string_view stack = layers == "crossattention.layer." ? "cross_layers." : "layers.";
    const std::string_view rest = module.substr(layers.size());
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot > 4) return std::nullopt;
    const std::string_view index = rest.substr(0, dot);
    for (char ch : index)
      if (ch < '0' || ch > '9') return std::nullopt;
    const std::string_view inner = rest.substr(dot + 1);
    for (const auto& rule : kLayerRules)
      if (inner == rule.source)
        return MappedName{std::string(stack) + std::string(index) + "." + std::string(rule.target) +
                              "." + leaf(suffix),
                          rule.qkv_part, rule.is_linear && suffix == "weight"};
    return std::nullopt;
  }
  for (const auto& rule : kModelRules) {
    if (module != rule.source) continue;
    std::string target(rule.target);
    // embedding tables have no ".weight" in our names
    if (starts_with(target, "embeddings.") && target != "embeddings.norm") {
      if (suffix != "weight") return std::nullopt;
      return MappedName{target, -1, false};
    }
    return MappedName{target + "." + leaf(suffix), -1, rule.is_linear && suffix == "weight"};
  }
  return std::nullopt;
}

}  // namespace tinybert::convert
