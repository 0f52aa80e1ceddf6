// tinybert classify: zero-shot classification of texts into candidate labels, JSON out.
#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "commands.hpp"
#include "tinybert/runner.hpp"
#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/task_json.hpp"

namespace tinybert::cli {

namespace {

std::vector<std::string> split_labels(const std::string& list) {
  std::vector<std::string> labels;
  size_t from = 0;
  while (true) {
    const size_t comma = list.find(',', from);
    labels.push_back(
        list.substr(from, comma == std::string::npos ? std::string::npos : comma - from));
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  return labels;
}

std::vector<std::string> read_label_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open --labels-file " + path);
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) labels.push_back(line);
  }
  return labels;
}

}  // namespace

int cmd_classify(const std::vector<std::string>& raw) {
  const Args args = parse_args(raw,
                               {"--model", "--labels", "--labels-file", "--template",
                                "--temperature", "--threshold", "--max-labels", "--backend"},
                               {"--multi-label"});
  if (!args.has("--model")) throw Error("classify needs --model M.tbw");
  std::vector<std::string> labels;
  if (args.has("--labels")) labels = split_labels(args.value("--labels"));
  if (args.has("--labels-file")) {
    const auto more = read_label_file(args.value("--labels-file"));
    labels.insert(labels.end(), more.begin(), more.end());
  }
  if (labels.empty()) throw Error("classify needs --labels A,B,... or --labels-file F");
  ClassifyOptions options;
  if (args.has("--template")) options.label_template = args.value("--template");
  options.multi_label = args.has("--multi-label");
  if (args.has("--temperature"))
    options.temperature = parse_float(args.value("--temperature"), "--temperature");
  if (args.has("--threshold"))
    options.threshold = parse_float(args.value("--threshold"), "--threshold");
  if (args.has("--max-labels"))
    options.max_labels =
        static_cast<size_t>(parse_int(args.value("--max-labels"), "--max-labels", 1, 100000));

  const Model model(args.value("--model"));
  const auto runner = make_runner(model, args.value("--backend", default_backend()));
  ZeroShotClassifier classifier(*runner);
  // Check labels and options before reading stdin, so a bad request fails at once.
  validate_classify_request(labels, options.label_template.value_or(classifier.default_template()), options);
  const auto texts = input_texts(args);
  const auto results = classifier.classify(texts, labels, options);
  std::cout << classify_response(model.config().name, classifier, texts, results, options).dump() << "\n";
  return 0;
}

}  // namespace tinybert::cli
