// tinybert: command-line front end. Subcommands print JSON on stdout; errors are one line on
// stderr with a non-zero exit.
#include "tinybert/tinybert.hpp"

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"

namespace {

using nlohmann::json;
using tinybert::Error;
using namespace tinybert::cli;

const char* kUsage = R"(usage: tinybert COMMAND [options] [TEXT...]
Texts come from the arguments, or one per line from stdin when none are given.
embed, fill-mask, classify and extract take --backend ref|f32|bf16|int8 (default f32 on oneDNN;
ref is the plain fp32 reference; a CUDA build adds cuda-f16|cuda-bf16|cuda-int8, which run on
the CPU when no GPU works).

  tokenize   --model M.tbw | --vocab vocab.txt [--lower-case|--no-lower-case]
             [--strip-accents|--no-strip-accents] [--no-chinese-chars]
             [--pair TEXT_B] [--max-length N] [--truncation longest_first|only_first|only_second]
  embed      --model M.tbw [--pooling cls|mean] [--normalize|--no-normalize]
  fill-mask  --model M.tbw [--top-k K] [--joint] [--attribution N] [--max-masks N]
  classify   --model M.tbw --labels A,B,... | --labels-file F [--template T]... [--multi-label]
             [--calibrate] [--temperature X] [--threshold X] [--max-labels N]
             (--labels splits on "," and "，"; --template repeated: an ensemble; --calibrate:
             contextual calibration, embedding mode)
  extract    --model M.tbw --schema JSON | --schema-file F [--threshold X] [--max-seq-len N]
             [--overlap N] [--english] [--format uie|modelscope]
             (UIE or SiameseUIE models; --format modelscope: SiameseUIE's {"output": [...]})
  inspect    M.tbw
)";

json encoding_json(const tinybert::Encoding& e) {
  json offsets = json::array();
  for (const auto& o : e.offsets) offsets.push_back({o.start, o.end});
  return {{"tokens", e.tokens}, {"ids", e.ids}, {"type_ids", e.type_ids}, {"offsets", offsets}};
}

int cmd_tokenize(const std::vector<std::string>& raw) {
  const Args args =
      parse_args(raw, {"--model", "--vocab", "--pair", "--max-length", "--truncation"},
                 {"--lower-case", "--no-lower-case", "--strip-accents", "--no-strip-accents",
                  "--no-chinese-chars"});
  const int64_t max_length =
      parse_int(args.value("--max-length", "512"), "--max-length", 0, 1 << 20);
  std::optional<tinybert::Model> model;
  std::optional<tinybert::Tokenizer> own;
  if (args.has("--model")) {
    model.emplace(args.value("--model"));
  } else if (args.has("--vocab")) {
    tinybert::TokenizerOptions o;
    if (args.has("--no-lower-case")) o.do_lower_case = false;
    if (args.has("--strip-accents")) o.strip_accents = true;
    if (args.has("--no-strip-accents")) o.strip_accents = false;
    if (args.has("--no-chinese-chars")) o.tokenize_chinese_chars = false;
    own = tinybert::Tokenizer::from_vocab_file(args.value("--vocab"), o);
  } else {
    throw Error("tokenize needs --model M.tbw or --vocab vocab.txt");
  }
  const tinybert::Tokenizer& tokenizer = model ? model->tokenizer() : *own;
  const std::string truncation_name = args.value("--truncation", "longest_first");
  const std::map<std::string, tinybert::Truncation> truncations = {
      {"longest_first", tinybert::Truncation::longest_first},
      {"only_first", tinybert::Truncation::only_first},
      {"only_second", tinybert::Truncation::only_second}};
  if (!truncations.count(truncation_name))
    throw Error("unknown --truncation '" + truncation_name + "'");
  json out = json::array();
  for (const auto& text : input_texts(args)) {
    const tinybert::Encoding e =
        args.has("--pair")
            ? tokenizer.encode_pair(text, args.value("--pair"), static_cast<size_t>(max_length),
                                    truncations.at(truncation_name))
            : tokenizer.encode(text, static_cast<size_t>(max_length));
    out.push_back(encoding_json(e));
  }
  std::cout << out.dump() << "\n";
  return 0;
}

int cmd_embed(const std::vector<std::string>& raw) {
  const Args args =
      parse_args(raw, {"--model", "--pooling", "--backend"}, {"--normalize", "--no-normalize"});
  if (!args.has("--model")) throw Error("embed needs --model M.tbw");
  const tinybert::Model model(args.value("--model"));
  tinybert::EmbedOptions options;
  if (args.has("--pooling")) {
    const std::string p = args.value("--pooling");
    if (p != "cls" && p != "mean") throw Error("--pooling must be cls or mean, got '" + p + "'");
    options.pooling = p == "cls" ? tinybert::Pooling::cls : tinybert::Pooling::mean;
  }
  if (args.has("--normalize")) options.normalize = true;
  if (args.has("--no-normalize")) options.normalize = false;
  const auto texts = input_texts(args);
  const auto runner = make_cli_runner(model, args);
  const auto vectors = tinybert::embed_texts(*runner, texts, options);
  std::cout << json{{"model", model.config().name},
                    {"dim", model.config().hidden_size},
                    {"embeddings", vectors}}
                   .dump()
            << "\n";
  return 0;
}

int cmd_inspect(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw, {}, {});
  if (args.positional.size() != 1) throw Error("inspect takes one .tbw file");
  const tinybert::WeightFile file(args.positional[0]);
  std::cout << tinybert::describe(file).dump(1) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cerr << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    if (command == "tokenize") return cmd_tokenize(rest);
    if (command == "embed") return cmd_embed(rest);
    if (command == "inspect") return cmd_inspect(rest);
    for (const auto& c : tinybert::cli::task_commands())
      if (command == c.name) return c.run(rest);
    std::cerr << "tinybert: unknown command '" << command << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tinybert: error: " << e.what() << "\n";
    return 1;
  }
}
