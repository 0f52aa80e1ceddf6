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

// Every value of a repeatable option, in order (parse_args keeps the last), skipping the values
// of other options as parse_args does.
std::vector<std::string> repeated_values(const std::vector<std::string>& raw,
                                         const std::vector<std::string>& with_value,
                                         const std::string& name) {
  std::vector<std::string> values;
  for (size_t i = 0; i + 1 < raw.size(); ++i)
    if (std::find(with_value.begin(), with_value.end(), raw[i]) != with_value.end()) {
      if (raw[i] == name) values.push_back(raw[i + 1]);
      ++i;
    }
  return values;
}

}  // namespace

int cmd_classify(const std::vector<std::string>& raw) {
  const std::vector<std::string> with_value = {"--model",      "--labels",      "--labels-file",
                                               "--template",   "--temperature", "--threshold",
                                               "--max-labels", "--backend"};
  const Args args = parse_args(raw, with_value, {"--multi-label", "--calibrate"});
  if (!args.has("--model")) throw Error("classify needs --model M.tbw");
  std::vector<std::string> labels;
  // split on "," and "，", items stripped, empty items dropped (as ModelScope's pipeline does)
  if (args.has("--labels")) labels = parse_label_list(args.value("--labels"));
  if (args.has("--labels-file")) {
    const auto more = read_label_file(args.value("--labels-file"));
    labels.insert(labels.end(), more.begin(), more.end());
  }
  if (labels.empty()) throw Error("classify needs --labels A,B,... or --labels-file F");
  ClassifyOptions options;
  // --template once: the template; several times: a template ensemble
  const auto templates = repeated_values(raw, with_value, "--template");
  if (templates.size() == 1) options.label_template = templates.front();
  if (templates.size() > 1) options.label_templates = templates;
  options.calibrate = args.has("--calibrate");
  options.multi_label = args.has("--multi-label");
  if (args.has("--temperature"))
    options.temperature = parse_float(args.value("--temperature"), "--temperature");
  if (args.has("--threshold"))
    options.threshold = parse_float(args.value("--threshold"), "--threshold");
  if (args.has("--max-labels"))
    options.max_labels =
        static_cast<size_t>(parse_int(args.value("--max-labels"), "--max-labels", 1, 100000));

  const Model model(args.value("--model"));
  const auto runner = make_cli_runner(model, args);
  ZeroShotClassifier classifier(*runner);
  // Check labels and options before reading stdin, so a bad request fails at once.
  classifier.validate(labels, options);
  const auto texts = input_texts(args);
  const auto results = classifier.classify(texts, labels, options);
  std::cout << classify_response(model.config().name, classifier, texts, results, options).dump()
            << "\n";
  return 0;
}

}  // namespace tinybert::cli
