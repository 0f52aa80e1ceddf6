// tinybert extract: UIE information extraction with a PaddleNLP-style schema, JSON out.
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "commands.hpp"
#include "tinybert/tinybert.hpp"

namespace tinybert::cli {

namespace {

json read_schema(const Args& args) {
  std::string text;
  if (args.has("--schema") == args.has("--schema-file"))
    throw Error("extract needs exactly one of --schema JSON or --schema-file F");
  if (args.has("--schema")) {
    text = args.value("--schema");
  } else {
    std::ifstream in(args.value("--schema-file"));
    if (!in) throw Error("cannot open schema file " + args.value("--schema-file"));
    std::stringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(std::string("schema is not valid JSON: ") + e.what());
  }
}

float parse_threshold(const std::string& s) {
  const float v = parse_float(s, "--threshold");
  if (!(v > 0.0f && v < 1.0f)) throw Error("--threshold must be a number in (0, 1), got '" + s + "'");
  return v;
}

}  // namespace

int cmd_extract(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw,
                               {"--model", "--schema", "--schema-file", "--threshold",
                                "--max-seq-len", "--overlap", "--backend"},
                               {"--english"});
  if (!args.has("--model")) throw Error("extract needs --model M.tbw");
  const Schema schema = parse_schema(read_schema(args));
  ExtractOptions options;
  if (args.has("--threshold")) options.threshold = parse_threshold(args.value("--threshold"));
  if (args.has("--max-seq-len"))
    options.max_seq_len = parse_int(args.value("--max-seq-len"), "--max-seq-len", 4, 1 << 20);
  if (args.has("--overlap"))
    options.window_overlap = parse_int(args.value("--overlap"), "--overlap", 0, 1 << 20);
  options.english = args.has("--english");
  const Model model(args.value("--model"));
  const auto runner = make_runner(model, args.value("--backend", default_backend()));
  const Extractor extractor(*runner, options);
  const auto texts = input_texts(args);
  std::cout << to_json(extractor.run(texts, schema)).dump() << "\n";
  return 0;
}

}  // namespace tinybert::cli
