// tinybert-convert: HuggingFace model folder -> .tbw, and --inspect for any .tbw file.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "convert.hpp"
#include "tinybert/describe.hpp"
#include "tinybert/tasks/classify.hpp"

namespace {

const char* kUsage =
    "usage: tinybert-convert MODEL_DIR OUT.tbw [--dtype auto|f32|f16|bf16|int8]\n"
    "                        [--architecture "
    "encoder|masked_lm|sequence_classification|uie|siamese_uie]\n"
    "                        [--weights FILE]\n"
    "       tinybert-convert --inspect FILE.tbw\n"
    "MODEL_DIR holds config.json, vocab.txt, tokenizer_config.json and model.safetensors,\n"
    "pytorch_model.bin or onnx/model*.onnx; a ModelScope folder also configuration.json, whose\n"
    "task (zero-shot-classification, fill-mask, siamese-uie) sets the architecture.\n"
    "--dtype auto keeps the source precision.\n";

// What the engine will do with the model, in words: the architecture and, where it matters, which
// logits are entailment / contradiction and how SiameseUIE's layers split.
std::string detected(const tinybert::WeightFile& file) {
  const tinybert::ModelConfig c = tinybert::ModelConfig::from_json(file.config());
  std::string s = tinybert::architecture_name(c.architecture);
  if (c.modelscope_nli) {
    s += "; nli: entailment = logit 0, contradiction = logit 2 (ModelScope's zero-shot pipeline, "
         "whatever the labels say)";
  } else if (c.architecture == tinybert::Architecture::sequence_classification) {
    const int64_t entailment = tinybert::find_entailment_index(c.labels);
    s += entailment < 0 ? "; no entailment label: not usable for zero-shot classification"
                        : "; nli: entailment = logit " + std::to_string(entailment) + " ('" +
                              c.labels[entailment] + "', HuggingFace's pipeline rule)";
  }
  if (c.architecture == tinybert::Architecture::siamese_uie)
    s += ": " + std::to_string(c.num_layers - c.cross_layers) + " shared + " +
         std::to_string(c.cross_layers) + " cross layers";
  return s;
}

void print_inspection(const tinybert::WeightFile& file) {
  const nlohmann::json d = tinybert::describe(file);
  std::cout << "file       " << file.path() << " (" << file.file_bytes() << " bytes)\n"
            << "config     " << d["config"].dump() << "\n"
            << "tokenizer  " << d["tokenizer"].dump() << "\n"
            << "metadata   " << d["metadata"].dump() << "\n"
            << "detected   " << detected(file) << "\n"
            << "tensors    " << file.tensors().size() << "\n";
  for (const auto& t : file.tensors()) {
    std::printf("  %-44s %-5s %-16s offset %-10llu %llu bytes\n", t.name.c_str(),
                tinybert::dtype_name(t.view.dtype), tinybert::shape_string(t.view.shape).c_str(),
                static_cast<unsigned long long>(t.offset),
                static_cast<unsigned long long>(t.view.bytes()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "--inspect") {
      print_inspection(tinybert::WeightFile(args[1]));
      return 0;
    }
    std::vector<std::string> positional;
    tinybert::convert::ConvertOptions options;
    for (size_t i = 0; i < args.size(); ++i) {
      const auto value = [&]() -> std::string {
        if (i + 1 >= args.size()) throw tinybert::Error(args[i] + " needs a value");
        return args[++i];
      };
      if (args[i] == "--dtype") {
        options.dtype = value();
        if (options.dtype != "auto" && options.dtype != "f32" && options.dtype != "f16" &&
            options.dtype != "bf16" && options.dtype != "int8")
          throw tinybert::Error("--dtype must be auto, f32, f16, bf16 or int8, got '" +
                                options.dtype + "'");
      } else if (args[i] == "--architecture") {
        options.architecture = tinybert::parse_architecture(value());
      } else if (args[i] == "--weights") {
        options.weights = value();
      } else if (args[i] == "-h" || args[i] == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (!args[i].empty() && args[i][0] == '-') {
        throw tinybert::Error("unknown option " + args[i]);
      } else {
        positional.push_back(args[i]);
      }
    }
    if (positional.size() != 2) {
      std::cerr << kUsage;
      return 2;
    }
    const auto report = tinybert::convert::convert_folder(positional[0], positional[1], options);
    std::cerr << "tinybert-convert: " << report.weights_path << " (" << report.source_format
              << ") -> " << positional[1] << ": "
              << tinybert::architecture_name(report.config.architecture) << ", "
              << report.config.num_layers << " layers, hidden " << report.config.hidden_size << ", "
              << report.tensors << " tensors, " << report.bytes << " bytes, dtype " << report.dtype
              << "\n";
    for (const auto& note : report.notes) std::cerr << "  note: " << note << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "tinybert-convert: error: " << e.what() << "\n";
    return 1;
  }
}
