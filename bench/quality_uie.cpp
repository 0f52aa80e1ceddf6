// UIE quality and speed: span precision/recall/F1 on CLUENER2020 dev with the model's own
// prompts (exact character spans, as the model's SOURCE.txt evaluation), and the time to run 5
// labels over a 2,500-character document (fp32 reference backend, 1 thread).
//
//   quality_uie [--model-dir ../shared/models/demo-uie] [--data
//   ../shared/data/cluener2020/dev.json]
//               [--limit N] [--chunk 64] [--runs 5] [--backend ref|f32|bf16|int8]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "convert.hpp"
#include "tinybert/backend/select.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

struct Counts {
  int64_t tp = 0, fp = 0, fn = 0;
  void add(const Counts& o) { tp += o.tp, fp += o.fp, fn += o.fn; }
  double precision() const { return tp + fp ? double(tp) / double(tp + fp) : 0.0; }
  double recall() const { return tp + fn ? double(tp) / double(tp + fn) : 0.0; }
  double f1() const {
    const double p = precision(), r = recall();
    return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
  }
};

std::string row(const std::string& name, const Counts& c) {
  char line[256];
  std::snprintf(line, sizeof line, "| %s | %.4f | %.4f | %.4f | %lld | %lld | %lld |", name.c_str(),
                c.precision(), c.recall(), c.f1(), static_cast<long long>(c.tp),
                static_cast<long long>(c.fp), static_cast<long long>(c.fn));
  return line;
}

std::string arg(const std::vector<std::string>& args, const std::string& name,
                const std::string& fallback) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == name) return args[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    const std::filesystem::path model_dir = arg(args, "--model-dir", "../shared/models/demo-uie");
    const std::string data_path = arg(args, "--data", "../shared/data/cluener2020/dev.json");
    const size_t limit = std::stoul(arg(args, "--limit", "0"));
    const size_t chunk = std::stoul(arg(args, "--chunk", "64"));
    const int runs = std::stoi(arg(args, "--runs", "5"));

    const auto tbw = std::filesystem::temp_directory_path() / "tinybert-quality-uie.tbw";
    convert::convert_folder(model_dir, tbw.string(), convert::ConvertOptions{});
    const Model model(tbw.string());
    std::ifstream config_file(model_dir / "config.json");
    const json config = json::parse(config_file);
    const int64_t max_seq_len = config.value("max_seq_len", int64_t{512});

    // type -> prompt, in the config's order (nlohmann keeps keys sorted: the type names)
    std::vector<std::pair<std::string, std::string>> types;
    for (const auto& [type, prompt] : config.at("prompts").items())
      types.emplace_back(type, prompt.get<std::string>());
    json prompts = json::array();
    for (const auto& t : types) prompts.push_back(t.second);
    const Schema schema = parse_schema(prompts);

    std::vector<json> dev;
    std::ifstream data(data_path);
    if (!data) throw Error("cannot open " + data_path);
    for (std::string line; std::getline(data, line);)
      if (!line.empty()) dev.push_back(json::parse(line));
    if (limit) dev.resize(std::min(dev.size(), limit));

    // The timing uses the backend chosen with --backend; the scores are the same on every
    // fp32 backend (the quality table above was made with the reference).
    {
      ExtractOptions options;
      options.max_seq_len = max_seq_len;
      const auto runner = make_runner(model, arg(args, "--backend", "ref"));
      const Extractor extractor(*runner, options);

      std::map<std::string, Counts> per_type;
      const auto t0 = std::chrono::steady_clock::now();
      for (size_t begin = 0; begin < dev.size(); begin += chunk) {
        const size_t end = std::min(dev.size(), begin + chunk);
        std::vector<std::string> texts;
        for (size_t i = begin; i < end; ++i) texts.push_back(dev[i].at("text"));
        const auto results = extractor.run(texts, schema);
        for (size_t i = begin; i < end; ++i) {
          const json& label = dev[i].value("label", json::object());
          for (const auto& [type, prompt] : types) {
            std::set<std::pair<int64_t, int64_t>> gold, predicted;
            if (label.contains(type))
              for (const auto& [entity, positions] : label[type].items())
                for (const auto& p : positions)
                  gold.insert({p[0].template get<int64_t>(), p[1].template get<int64_t>() + 1});
            const auto& r = results[i - begin];
            if (r.count(prompt))
              for (const auto& s : r.at(prompt)) predicted.insert({s.start, s.end});
            Counts c;
            for (const auto& s : predicted) (gold.count(s) ? c.tp : c.fp) += 1;
            for (const auto& g : gold) c.fn += predicted.count(g) ? 0 : 1;
            per_type[type].add(c);
          }
        }
      }
      const double eval_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      Counts micro;
      for (const auto& [type, c] : per_type) micro.add(c);

      std::cout << "CLUENER2020 dev: " << dev.size() << " sentences x " << types.size()
                << " prompts, max_seq_len " << max_seq_len << ", threshold "
                << extractor.threshold() << ", " << eval_seconds << " s\n\n";
      std::cout
          << "| type | precision | recall | F1 | tp | fp | fn |\n|---|---|---|---|---|---|---|\n";
      std::cout << row("**micro**", micro) << "\n";
      for (const auto& [type, prompt] : types)
        std::cout << row(type + " (" + prompt + ")", per_type[type]) << "\n";

      // speed: one 2,500-character document (dev sentences joined), 5 labels
      std::string document;
      for (const auto& d : dev) {
        document += d.at("text").get<std::string>();
        if (detail::decode_utf8(document).code_points.size() >= 2500) break;
      }
      const auto decoded = detail::decode_utf8(document);
      if (decoded.code_points.size() < 2500)
        throw Error("not enough dev text for a 2,500-character document");
      document.resize(decoded.byte_starts[2500]);
      const Schema five =
          parse_schema(json::parse(R"(["人名", "地址", "公司", "组织机构", "职位"])"));
      std::vector<double> seconds;
      size_t found = 0;
      for (int r = 0; r < runs; ++r) {
        const auto start = std::chrono::steady_clock::now();
        const auto result = extractor.run({document}, five);
        seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        found = 0;
        for (const auto& [name, spans] : result[0]) found += spans.size();
      }
      std::sort(seconds.begin(), seconds.end());
      const size_t tokens = model.tokenizer().tokenize(document).size();
      const size_t windows =
          plan_windows(static_cast<int64_t>(tokens), max_seq_len - 3 - 4, options.window_overlap)
              .size();
      std::printf(
          "\n2,500-character document (%zu text tokens, %zu windows of %lld tokens per label), 5 "
          "labels, %zu spans: "
          "median %.3f s, best %.3f s over %d runs\n",
          tokens, windows, static_cast<long long>(max_seq_len), found, seconds[seconds.size() / 2],
          seconds[0], runs);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "quality_uie: error: " << e.what() << "\n";
    return 1;
  }
}
