// tinybert: command-line front end. Subcommands print JSON on stdout; errors are one line on
// stderr with a non-zero exit.
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "tinybert/tinybert.hpp"

namespace {

using nlohmann::json;
using tinybert::Error;

const char* kUsage = R"(usage: tinybert COMMAND [options] [TEXT...]
Texts come from the arguments, or one per line from stdin when none are given.

  tokenize   --model M.tbw | --vocab vocab.txt [--lower-case|--no-lower-case]
             [--strip-accents|--no-strip-accents] [--no-chinese-chars]
             [--pair TEXT_B] [--max-length N] [--truncation longest_first|only_first|only_second]
  embed      --model M.tbw [--pooling cls|mean] [--normalize|--no-normalize]
  fill-mask  --model M.tbw [--top-k K]
  inspect    M.tbw
)";

// Parsed "--name value" options and "--flag" switches, the rest positional.
struct Args {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
  std::vector<std::string> positional;

  std::string value(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  bool has(const std::string& name) const { return values.count(name) || flags.count(name); }
};

Args parse_args(const std::vector<std::string>& raw, const std::vector<std::string>& with_value,
                const std::vector<std::string>& switches) {
  Args args;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& a = raw[i];
    if (a.size() > 1 && a[0] == '-' && a != "-") {
      if (std::find(with_value.begin(), with_value.end(), a) != with_value.end()) {
        if (i + 1 >= raw.size()) throw Error(a + " needs a value");
        args.values[a] = raw[++i];
      } else if (std::find(switches.begin(), switches.end(), a) != switches.end()) {
        args.flags[a] = true;
      } else {
        throw Error("unknown option " + a);
      }
    } else {
      args.positional.push_back(a);
    }
  }
  return args;
}

std::vector<std::string> input_texts(const Args& args) {
  if (!args.positional.empty()) return args.positional;
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  if (lines.empty()) throw Error("no input text (give TEXT arguments or lines on stdin)");
  return lines;
}

int64_t parse_int(const std::string& s, const std::string& what, int64_t min, int64_t max) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < min || v > max)
    throw Error(what + " must be an integer in " + std::to_string(min) + ".." + std::to_string(max) + ", got '" + s + "'");
  return v;
}

json encoding_json(const tinybert::Encoding& e) {
  json offsets = json::array();
  for (const auto& o : e.offsets) offsets.push_back({o.start, o.end});
  return {{"tokens", e.tokens}, {"ids", e.ids}, {"type_ids", e.type_ids}, {"offsets", offsets}};
}

int cmd_tokenize(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw, {"--model", "--vocab", "--pair", "--max-length", "--truncation"},
                               {"--lower-case", "--no-lower-case", "--strip-accents", "--no-strip-accents",
                                "--no-chinese-chars"});
  const int64_t max_length = parse_int(args.value("--max-length", "512"), "--max-length", 0, 1 << 20);
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
  if (!truncations.count(truncation_name)) throw Error("unknown --truncation '" + truncation_name + "'");
  json out = json::array();
  for (const auto& text : input_texts(args)) {
    const tinybert::Encoding e =
        args.has("--pair") ? tokenizer.encode_pair(text, args.value("--pair"), static_cast<size_t>(max_length),
                                                   truncations.at(truncation_name))
                           : tokenizer.encode(text, static_cast<size_t>(max_length));
    out.push_back(encoding_json(e));
  }
  std::cout << out.dump() << "\n";
  return 0;
}

int cmd_embed(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw, {"--model", "--pooling"}, {"--normalize", "--no-normalize"});
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
  tinybert::CpuRefBackend backend;
  const tinybert::Encoder encoder(model, backend);
  tinybert::Heads heads(model, backend);
  tinybert::Workspace<tinybert::CpuRefBackend> ws;
  const auto vectors = tinybert::embed_texts(model, encoder, heads, ws, texts, options);
  std::cout << json{{"model", model.config().name}, {"dim", model.config().hidden_size}, {"embeddings", vectors}}.dump()
            << "\n";
  return 0;
}

int cmd_fill_mask(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw, {"--model", "--top-k"}, {});
  if (!args.has("--model")) throw Error("fill-mask needs --model M.tbw");
  const int64_t top_k = parse_int(args.value("--top-k", "5"), "--top-k", 1, 1000);
  const tinybert::Model model(args.value("--model"));
  if (model.config().architecture != tinybert::Architecture::masked_lm)
    throw Error(args.value("--model") + " is a " + tinybert::architecture_name(model.config().architecture) +
                " model; fill-mask needs a masked_lm model");
  const auto texts = input_texts(args);
  tinybert::CpuRefBackend backend;
  const tinybert::Encoder encoder(model, backend);
  tinybert::Heads heads(model, backend);
  tinybert::Workspace<tinybert::CpuRefBackend> ws;
  const auto results = tinybert::fill_mask(model, encoder, heads, ws, texts, top_k);
  json out = json::array();
  for (size_t i = 0; i < texts.size(); ++i) {
    json masks = json::array();
    for (const auto& m : results[i]) {
      json candidates = json::array();
      for (const auto& c : m.candidates)
        candidates.push_back({{"token", c.token}, {"id", c.id}, {"probability", c.probability}});
      masks.push_back({{"token_index", m.token_index}, {"start", m.chars.start}, {"end", m.chars.end},
                       {"candidates", candidates}});
    }
    out.push_back({{"text", texts[i]}, {"masks", masks}});
  }
  std::cout << out.dump() << "\n";
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
    if (command == "fill-mask") return cmd_fill_mask(rest);
    if (command == "inspect") return cmd_inspect(rest);
    std::cerr << "tinybert: unknown command '" << command << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tinybert: error: " << e.what() << "\n";
    return 1;
  }
}
