// tinybert extract: information extraction with a PaddleNLP-style schema (UIE models) or a
// ModelScope nested-dict schema (SiameseUIE models), JSON out.
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "commands.hpp"
#include "tinybert/json_text.hpp"
#include "tinybert/tinybert.hpp"

namespace tinybert::cli {

namespace {

// Ordered: SiameseUIE answers in the order the schema names its types.
nlohmann::ordered_json read_schema(const Args& args) {
  if (args.has("--schema") == args.has("--schema-file"))
    throw Error("extract needs exactly one of --schema JSON or --schema-file F");
  if (args.has("--schema"))
    return parse_json_text<nlohmann::ordered_json>(args.value("--schema"), "schema");
  const std::string path = args.value("--schema-file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open schema file " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_json_text<nlohmann::ordered_json>(buffer.str(), "schema file " + path);
}

// UIE: a probability in (0, 1). SiameseUIE compares raw logits (ModelScope's 0.5): any number.
float parse_threshold(const std::string& s, bool logits) {
  const float v = parse_float(s, "--threshold");
  if (!logits && !(v > 0.0f && v < 1.0f))
    throw Error("--threshold must be a number in (0, 1), got '" + s + "'");
  if (!std::isfinite(v)) throw Error("--threshold must be a finite number, got '" + s + "'");
  return v;
}

int extract_siamese(const Args& args, const Model& model, const Schema& schema) {
  for (const char* uie_only : {"--max-seq-len", "--overlap", "--english"})
    if (args.has(uie_only))
      throw Error(std::string(uie_only) +
                  " is for UIE models; SiameseUIE uses ModelScope's fixed windows");
  SiameseOptions options;
  if (args.has("--threshold")) options.threshold = parse_threshold(args.value("--threshold"), true);
  const ExtractFormat format = parse_extract_format(args.value("--format", "uie"));
  const auto runner = make_cli_runner(model, args);
  const SiameseExtractor extractor(*runner, options);
  const auto texts = input_texts(args);
  std::cout << to_json(extractor.run(texts, schema), format).dump() << "\n";
  return 0;
}

}  // namespace

int cmd_extract(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw,
                               {"--model", "--schema", "--schema-file", "--threshold",
                                "--max-seq-len", "--overlap", "--backend", "--format"},
                               {"--english"});
  if (!args.has("--model")) throw Error("extract needs --model M.tbw");
  const Schema schema = parse_schema(read_schema(args));
  const Model model(args.value("--model"));
  if (model.config().architecture == Architecture::siamese_uie)
    return extract_siamese(args, model, schema);
  if (parse_extract_format(args.value("--format", "uie")) != ExtractFormat::uie)
    throw Error("--format modelscope is for SiameseUIE models; this one is a " +
                std::string(architecture_name(model.config().architecture)) + " model");
  ExtractOptions options;
  if (args.has("--threshold"))
    options.threshold = parse_threshold(args.value("--threshold"), false);
  if (args.has("--max-seq-len"))
    options.max_seq_len = parse_int(args.value("--max-seq-len"), "--max-seq-len", 4, 1 << 20);
  if (args.has("--overlap"))
    options.window_overlap = parse_int(args.value("--overlap"), "--overlap", 0, 1 << 20);
  options.english = args.has("--english");
  const auto runner = make_cli_runner(model, args);
  const Extractor extractor(*runner, options);
  const auto texts = input_texts(args);
  std::cout << to_json(extractor.run(texts, schema)).dump() << "\n";
  return 0;
}

}  // namespace tinybert::cli
