// tinybert-convert's work: a HuggingFace-style model folder (config.json, vocab.txt,
// tokenizer_config.json + safetensors / pytorch_model.bin / ONNX weights) -> one .tbw file.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "hf_config.hpp"
#include "name_mapping.hpp"
#include "onnx_reader.hpp"
#include "pytorch_reader.hpp"
#include "safetensors_reader.hpp"
#include "source_model.hpp"
#include "tinybert/format.hpp"
#include "tinybert/model.hpp"
#include "tinybert/quantize.hpp"
#include "tinybert/tokenizer.hpp"

namespace tinybert::convert {

inline constexpr const char* kConverterVersion = "tinybert-convert 0.1.0";

struct ConvertOptions {
  std::string dtype = "auto";                // auto (keep the source's), f32, f16, bf16, int8
  std::optional<Architecture> architecture;  // override config.json
  std::filesystem::path weights;             // a specific weights file inside or outside the folder
};

struct ConvertReport {
  ModelConfig config;
  std::string source_format, weights_path, dtype;
  std::vector<std::string> notes;
  size_t tensors = 0;
  uint64_t bytes = 0;
};

// ---- element conversions -------------------------------------------------------------------

inline std::vector<float> to_f32(const SourceTensor& t) {
  const int64_t n = checked_numel(t.shape);
  const int64_t rows = t.shape.empty() ? 1 : t.shape[0];
  if (t.dtype == DType::i8 && static_cast<int64_t>(t.row_scales.size()) != rows)
    throw Error("tensor '" + t.name + "': int8 without one scale per row");
  return dequantize_elements(t.dtype, t.data.data(), n, t.row_scales.data(), rows ? n / rows : 1);
}

inline void quantize_rows(const std::vector<float>& values, int64_t rows, SourceTensor& out) {
  const int64_t cols = rows ? static_cast<int64_t>(values.size()) / rows : 0;
  out.dtype = DType::i8;
  out.data.resize(values.size());
  out.row_scales.assign(static_cast<size_t>(rows), 0.0f);
  quantize_rows_symmetric(values.data(), rows, cols, reinterpret_cast<int8_t*>(out.data.data()),
                          out.row_scales.data());
}

inline SourceTensor from_f32(std::string name, Shape shape, const std::vector<float>& values,
                             DType dtype) {
  SourceTensor t{std::move(name), dtype, std::move(shape), {}, {}};
  switch (dtype) {
    case DType::f32:
      t.data.resize(values.size() * 4);
      std::memcpy(t.data.data(), values.data(), t.data.size());
      break;
    case DType::f16:
    case DType::bf16:
      t.data.resize(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = dtype == DType::f16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
        std::memcpy(t.data.data() + 2 * i, &h, 2);
      }
      break;
    case DType::i8:
      quantize_rows(values, t.shape.at(0), t);
      break;
    case DType::u8:
      throw Error("u8 is not a weight dtype");
  }
  return t;
}

inline SourceTensor cast(const SourceTensor& t, DType dtype) {
  if (t.dtype == dtype) return t;
  return from_f32(t.name, t.shape, to_f32(t), dtype);
}

// [rows, cols] -> [cols, rows] in f32 (Paddle's [in, out] Linear layout -> ours [out, in]).
inline SourceTensor transposed(const SourceTensor& t) {
  if (t.shape.size() != 2)
    throw Error("tensor '" + t.name + "': expected a 2-D Linear weight, got " +
                shape_string(t.shape));
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const std::vector<float> v = to_f32(t);
  std::vector<float> out(v.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = v[r * cols + c];
  SourceTensor result = from_f32(t.name, {cols, rows}, out, DType::f32);
  return t.dtype == DType::i8 ? result : cast(result, t.dtype);
}

// Stacks [q; k; v] rows into one fused projection (i8 rows keep their scales).
inline SourceTensor concat_rows(const std::string& name,
                                const std::vector<const SourceTensor*>& parts) {
  const DType dtype = parts[0]->dtype;
  bool same = true;
  for (const auto* p : parts)
    same &= p->dtype == dtype && p->shape.size() == parts[0]->shape.size();
  SourceTensor out{name, same ? dtype : DType::f32, {}, {}, {}};
  int64_t rows = 0;
  for (const auto* p : parts) {
    if (p->shape.size() != parts[0]->shape.size() ||
        (p->shape.size() == 2 && p->shape[1] != parts[0]->shape[1]))
      throw Error("cannot fuse '" + p->name + "' " + shape_string(p->shape) + " with '" +
                  parts[0]->name + "' " + shape_string(parts[0]->shape));
    rows += p->shape.at(0);
    const SourceTensor piece = same ? *p : cast(*p, DType::f32);
    out.data.insert(out.data.end(), piece.data.begin(), piece.data.end());
    out.row_scales.insert(out.row_scales.end(), piece.row_scales.begin(), piece.row_scales.end());
  }
  out.shape = parts[0]->shape;
  out.shape[0] = rows;
  return out;
}

// ---- the conversion --------------------------------------------------------------------------

// The weights file of a folder: safetensors, then pytorch_model.bin, then ONNX.
inline std::filesystem::path find_weights(const std::filesystem::path& folder) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin", "model.onnx",
                           "onnx/model.onnx", "onnx/model_quantized.onnx"})
    if (std::filesystem::exists(folder / name)) return folder / name;
  throw Error(
      folder.string() +
      ": no weights found (expected model.safetensors, pytorch_model.bin or onnx/model.onnx)");
}

inline SourceModel read_weights(const std::filesystem::path& path, std::string& format_name) {
  const std::string ext = path.extension().string();
  if (ext == ".safetensors") {
    format_name = "safetensors";
    return read_safetensors(path.string());
  }
  if (ext == ".bin" || ext == ".pt" || ext == ".pth") {
    format_name = "pytorch";
    return read_pytorch_bin(path.string());
  }
  if (ext == ".onnx") {
    format_name = "onnx";
    return onnx_to_source(read_onnx(path.string()));
  }
  throw Error(path.string() + ": unknown weights format (expected .safetensors, .bin or .onnx)");
}

// PaddleNLP stores Linear weights [in, out]; its checkpoints use Paddle module names.
inline bool is_paddle_layout(const SourceModel& source) {
  auto it = source.metadata.find("linear_weight_layout");
  if (it != source.metadata.end()) return it->second == "in_out";
  for (const auto& t : source.tensors)
    if (t.name.find(".self_attn.q_proj.") != std::string::npos ||
        t.name.find(".linear1.") != std::string::npos)
      return true;
  return false;
}

using MappedTensors = std::map<std::string, std::pair<const SourceTensor*, MappedName>>;

// The MLM output bias when a file has two: ModelScope's SbertForMaskedLM uses
// cls.predictions.decoder.bias and ignores HF's cls.predictions.bias; HF files store them equal.
inline void resolve_mlm_bias(MappedTensors& mapped, ConvertReport& report, bool modelscope) {
  auto hf = mapped.find("mlm.decoder.bias#hf");
  if (hf == mapped.end()) return;
  if (mapped.count("mlm.decoder.bias")) {
    report.notes.push_back("ignored " + hf->second.first->name +
                           " (cls.predictions.decoder.bias is the decoder's bias)");
  } else {
    auto entry = hf->second;
    entry.second.target = "mlm.decoder.bias";
    mapped.emplace("mlm.decoder.bias", entry);
    if (modelscope)  // tools/modelscope/NOTES.md: SbertForMaskedLM does not load that key
      report.notes.push_back("used " + entry.first->name +
                             " as the decoder bias; ModelScope's SbertForMaskedLM would ignore it "
                             "and run with a zero bias");
  }
  mapped.erase(hf);
}

// SiameseUIE: "cross_layers.M.*" become "layers.<shared + M>.*", after the shared layers.
// Returns (shared layers, cross layers).
inline std::pair<int64_t, int64_t> number_cross_layers(MappedTensors& mapped) {
  const auto count = [&](const std::string& prefix) {
    int64_t layers = 0;
    for (const auto& [key, entry] : mapped)
      if (key.rfind(prefix, 0) == 0)
        layers = std::max<int64_t>(layers, std::stoll(key.substr(prefix.size())) + 1);
    return layers;
  };
  const int64_t shared = count("layers."), cross = count("cross_layers.");
  MappedTensors renamed;
  for (auto& [key, entry] : mapped) {
    if (key.rfind("cross_layers.", 0) != 0) {
      renamed.emplace(key, entry);
      continue;
    }
    const size_t dot = key.find('.', 13);
    const std::string layer =
        "layers." + std::to_string(shared + std::stoll(key.substr(13, dot - 13)));
    auto moved = entry;
    moved.second.target = layer + moved.second.target.substr(moved.second.target.find('.', 13));
    if (!renamed.emplace(layer + key.substr(dot), moved).second)  // e.g. layer.01 beside layer.1
      throw Error("two source tensors map to '" + moved.second.target + "' (second: '" +
                  moved.first->name + "')");
  }
  mapped = std::move(renamed);
  return {shared, cross};
}

inline ConvertReport convert_folder(const std::filesystem::path& folder,
                                    const std::string& out_path,
                                    const ConvertOptions& options = {}) {
  ConvertReport report;
  if (!std::filesystem::is_directory(folder)) throw Error(folder.string() + ": not a directory");
  const nlohmann::json hf = read_json_file(folder / "config.json");
  const std::optional<ModelScopeInfo> modelscope = modelscope_info(folder);
  nlohmann::json tokenizer_config = nlohmann::json::object();
  if (std::filesystem::exists(folder / "tokenizer_config.json"))
    tokenizer_config = read_json_file(folder / "tokenizer_config.json");
  else
    report.notes.push_back("no tokenizer_config.json: BertTokenizer defaults (lower-case)");
  const std::string vocab = read_text_file(folder / "vocab.txt");

  const std::filesystem::path weights =
      options.weights.empty() ? find_weights(folder) : options.weights;
  report.weights_path = weights.string();
  SourceModel source = read_weights(weights, report.source_format);
  const bool paddle_layout = is_paddle_layout(source);

  // 1. map names
  MappedTensors mapped;
  std::vector<std::string> unknown;
  for (const auto& t : source.tensors) {
    bool ignored = false;
    auto name = map_tensor_name(t.name, &ignored);
    if (ignored) {
      report.notes.push_back("ignored " + t.name);
      continue;
    }
    if (!name) {
      unknown.push_back(t.name);
      continue;
    }
    std::string key =
        name->qkv_part >= 0 ? name->target + "#" + std::to_string(name->qkv_part) : name->target;
    if (!mapped.emplace(key, std::make_pair(&t, *name)).second)
      throw Error(weights.string() + ": two source tensors map to '" + name->target +
                  "' (second: '" + t.name + "')");
  }
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", " : "") + unknown[i];
    throw Error(weights.string() + ": " + std::to_string(unknown.size()) +
                " tensor(s) with names this converter does not know: " + list +
                (unknown.size() > 5 ? ", ..." : ""));
  }
  const auto has = [&](const std::string& n) { return mapped.count(n) > 0; };
  resolve_mlm_bias(mapped, report, modelscope.has_value());
  const auto [shared_layers, cross_layers] = number_cross_layers(mapped);

  // 2. architecture and config: what the user says, else ModelScope's task, else config.json's
  // class names, else the tensors
  Architecture arch = Architecture::encoder;
  if (options.architecture)
    arch = *options.architecture;
  else if (modelscope && modelscope->architecture)
    arch = *modelscope->architecture;
  else if (auto from_config = architecture_from_hf(hf))
    arch = *from_config;
  else if (has("siamese.head.weight"))
    arch = Architecture::siamese_uie;
  else if (has("uie.start.weight"))
    arch = Architecture::uie;
  else if (has("mlm.decoder.bias"))
    arch = Architecture::masked_lm;
  else if (has("classifier.weight"))
    arch = Architecture::sequence_classification;
  ModelConfig config =
      model_config_from_hf(hf, arch, folder.filename().string(), paddle_layout ? 1e-5f : 1e-12f);
  if (arch == Architecture::siamese_uie) {
    // config.json's num_hidden_layers is the total; the split is read off the tensor names (the
    // published model: 6 + 6; ModelScope's code hard-codes 6 cross layers)
    if (cross_layers == 0)
      throw Error(weights.string() + ": a SiameseUIE model needs crossattention.layer.N tensors");
    if (shared_layers + cross_layers != config.num_layers)
      throw Error(weights.string() + ": " + std::to_string(shared_layers) + " shared + " +
                  std::to_string(cross_layers) +
                  " cross layers, but config.json's num_hidden_layers is " +
                  std::to_string(config.num_layers));
    config.cross_layers = cross_layers;
  } else if (cross_layers > 0) {
    throw Error(weights.string() + ": crossattention layers in a " + architecture_name(arch) +
                " model");
  }
  if (modelscope && modelscope->zero_shot) {
    config.modelscope_nli = true;
    report.notes.push_back(
        "ModelScope zero-shot: entailment = logit 0, contradiction = logit 2 (its pipeline's "
        "fixed indices; id2label is not read)");
  }
  config.has_pooler = has("pooler.weight") && (arch == Architecture::encoder ||
                                               arch == Architecture::sequence_classification);
  if (std::filesystem::exists(folder / "1_Pooling/config.json")) {
    const nlohmann::json pooling = read_json_file(folder / "1_Pooling/config.json");
    if (pooling.value("pooling_mode_mean_tokens", false)) config.pooling = Pooling::mean;
  }
  config.validate();

  // 3. which tensors the architecture keeps
  const auto used_by_architecture = [&](const std::string& target) {
    if (target.rfind("pooler.", 0) == 0) return config.has_pooler;
    if (target.rfind("mlm.", 0) == 0) return arch == Architecture::masked_lm;
    if (target.rfind("classifier.", 0) == 0) return arch == Architecture::sequence_classification;
    if (target.rfind("uie.", 0) == 0) return arch == Architecture::uie;
    if (target.rfind("siamese.", 0) == 0) return arch == Architecture::siamese_uie;
    return true;
  };
  // a decoder equal to the word embeddings is tied: store it once
  if (has("mlm.decoder.weight") && has("embeddings.word_embeddings")) {
    const SourceTensor* decoder = mapped["mlm.decoder.weight"].first;
    const SourceTensor* word = mapped["embeddings.word_embeddings"].first;
    if (decoder->dtype == word->dtype && decoder->shape == word->shape &&
        decoder->data == word->data && decoder->row_scales == word->row_scales) {
      mapped.erase("mlm.decoder.weight");
      report.notes.push_back("mlm decoder tied to the word embeddings (stored once)");
    }
  }

  // 4. dtypes, layouts, fusion
  const bool keep_dtype = options.dtype == "auto";
  const DType matrix_dtype = keep_dtype                ? DType::f32
                             : options.dtype == "int8" ? DType::i8
                                                       : parse_dtype(options.dtype);
  if (matrix_dtype == DType::u8) throw Error("--dtype must be auto, f32, f16, bf16 or int8");
  report.dtype = options.dtype;
  WeightFileWriter writer;
  const auto emit = [&](const std::string& target, SourceTensor t, bool is_matrix) {
    t = is_matrix ? (keep_dtype ? t : cast(t, matrix_dtype)) : cast(t, DType::f32);
    if (t.dtype == DType::i8) writer.add_f32(target + "_scale", {t.shape.at(0)}, t.row_scales);
    report.bytes += t.data.size();
    writer.add(target, t.dtype, t.shape, std::move(t.data));
    ++report.tensors;
  };
  std::map<std::string, std::vector<const SourceTensor*>> qkv;  // target -> [q, k, v]
  std::map<std::string, SourceTensor> transposed_store;
  for (const auto& [key, entry] : mapped) {
    const auto& [tensor, name] = entry;
    if (!used_by_architecture(name.target)) {
      report.notes.push_back("dropped " + tensor->name + " (not used by a " +
                             architecture_name(arch) + " model)");
      continue;
    }
    const SourceTensor* t = tensor;
    if (paddle_layout && name.is_linear) t = &(transposed_store[key] = transposed(*tensor));
    if (name.qkv_part >= 0) {
      auto& parts = qkv[name.target];
      parts.resize(3, nullptr);
      parts[name.qkv_part] = t;
      continue;
    }
    const bool is_matrix = t->shape.size() == 2;
    emit(name.target, *t, is_matrix);
  }
  for (const auto& [target, parts] : qkv) {
    for (int i = 0; i < 3; ++i)
      if (!parts[i])
        throw Error(weights.string() + ": '" + target + "' lacks its " +
                    (i == 0   ? "query"
                     : i == 1 ? "key"
                              : "value") +
                    " part");
    emit(target, concat_rows(target, parts), parts[0]->shape.size() == 2);
  }

  // 5. tokenizer
  nlohmann::json tokenizer_json =
      tokenizer_settings_from_hf(tokenizer_config, config.max_position_embeddings);
  if (modelscope && modelscope->zero_shot) {
    // ModelScope's zero-shot preprocessor: its configuration's max_length, else 512; the
    // tokenizer_config's model_max_length is not read (tools/modelscope/NOTES.md)
    tokenizer_json["model_max_length"] =
        std::min(modelscope->max_length.value_or(512), config.max_position_embeddings);
  } else if (modelscope && modelscope->max_length && *modelscope->max_length > 0 &&
             *modelscope->max_length < config.max_position_embeddings) {
    tokenizer_json["model_max_length"] = *modelscope->max_length;  // its preprocessor's limit
  }
  Tokenizer::from_vocab_text(
      vocab, tokenizer_options_from_json(tokenizer_json));  // a bad vocab fails here
  writer.add("tokenizer.vocab", DType::u8, {static_cast<int64_t>(vocab.size())},
             std::vector<uint8_t>(vocab.begin(), vocab.end()));
  nlohmann::json config_json = config.to_json();
  if (arch ==
      Architecture::uie) {  // the model's own UIE decoding settings, when its folder has them
    if (hf.contains("max_seq_len") && hf["max_seq_len"].is_number_integer())
      config_json["max_seq_len"] = hf["max_seq_len"];
    if (hf.contains("position_prob") && hf["position_prob"].is_number())
      config_json["position_prob"] = hf["position_prob"];
    if (tokenizer_config.contains("uie_max_seq_len") &&
        tokenizer_config["uie_max_seq_len"].is_number_integer())
      tokenizer_json["uie_max_seq_len"] = tokenizer_config["uie_max_seq_len"];
  }
  writer.set_config(config_json);
  writer.set_tokenizer(tokenizer_json);
  nlohmann::json meta = {{"converter", kConverterVersion},
                         {"source_format", report.source_format},
                         {"source_weights", weights.filename().string()},
                         {"dtype", options.dtype},
                         {"paddle_layout", paddle_layout},
                         {"notes", report.notes}};
  for (const auto& [k, v] : source.metadata) meta["source_metadata"][k] = v;
  if (modelscope)
    meta["modelscope"] = {{"task", modelscope->task}, {"model_type", modelscope->model_type}};
  writer.set_metadata(meta);
  writer.write(out_path);
  report.config = config;
  Model written(out_path);  // re-open: the file we wrote must pass the same checks as any other
  (void)written;
  return report;
}

}  // namespace tinybert::convert
