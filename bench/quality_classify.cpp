// quality_classify: zero-shot accuracy of embedding mode (bge-small-zh) on FewCLUE TNEWS, FewCLUE
// EPRSTMT and ChnSentiCorp, several templates per dataset; prints a Markdown table.
//
// usage: quality_classify --model models/bge-small-zh-v1.5.tbw [--data ../shared/data] [--limit N]
//
// Each dataset's texts are embedded once (chunks of 32 texts, one packed batch each); each
// template's label embeddings once. Single-label prediction = argmax softmax(cos / T) = argmax cos,
// so accuracy does not depend on the temperature. As a check that this shortcut is the
// classifier's own result, the first 64 texts of every dataset also go through
// ZeroShotClassifier::classify and must agree.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/embed.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

struct Dataset {
  std::string name;
  std::vector<std::string> texts;
  std::vector<size_t> gold;  // index into the label set
};

struct LabelSet {
  std::string name;
  std::vector<std::string> labels;  // same order as Dataset::gold indexes
};

std::vector<json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  std::vector<json> rows;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

void limit(Dataset& d, size_t n) {
  if (n == 0 || d.texts.size() <= n) return;
  // Keep a class-balanced prefix: every k-th row, since the files are grouped by class.
  Dataset out{d.name, {}, {}};
  const size_t step = d.texts.size() / n;
  for (size_t i = 0; i < d.texts.size() && out.texts.size() < n; i += step) {
    out.texts.push_back(d.texts[i]);
    out.gold.push_back(d.gold[i]);
  }
  d = std::move(out);
}

std::pair<Dataset, LabelSet> load_tnews(const std::filesystem::path& dir) {
  LabelSet labels{"15 Chinese names (label_index2en2zh.json)", {}};
  std::map<int, size_t> index;
  for (const json& row : read_jsonl(dir / "label_index2en2zh.json")) {
    index[std::stoi(row.at("label").get<std::string>())] = labels.labels.size();
    labels.labels.push_back(row.at("label_zh").get<std::string>());
  }
  Dataset d{"FewCLUE TNEWS test_public", {}, {}};
  for (const json& row : read_jsonl(dir / "test_public.json")) {
    d.texts.push_back(row.at("sentence").get<std::string>());
    d.gold.push_back(index.at(row.at("label").get<int>()));
  }
  return {d, labels};
}

Dataset load_eprstmt(const std::filesystem::path& dir) {
  Dataset d{"FewCLUE EPRSTMT test_public", {}, {}};
  for (const json& row : read_jsonl(dir / "test_public.json")) {
    d.texts.push_back(row.at("sentence").get<std::string>());
    d.gold.push_back(row.at("label").get<std::string>() == "Positive" ? 0 : 1);
  }
  return d;
}

Dataset load_chnsenticorp(const std::filesystem::path& dir) {
  Dataset d{"ChnSentiCorp test", {}, {}};
  std::ifstream in(dir / "test.txt");
  if (!in) throw Error("cannot open " + (dir / "test.txt").string());
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (tab == std::string::npos) throw Error("chnsenticorp: line without a tab");
    d.texts.push_back(line.substr(0, tab));
    d.gold.push_back(line.substr(tab + 1) == "1" ? 0 : 1);
  }
  return d;
}

struct Evaluator {
  Runner& runner;

  std::vector<std::vector<float>> embed(const std::vector<std::string>& texts) {
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < texts.size(); i += 32) {
      const std::vector<std::string> chunk(texts.begin() + i, texts.begin() + std::min(texts.size(), i + 32));
      for (auto& v : embed_texts(runner, chunk)) out.push_back(std::move(v));
    }
    return out;
  }

  // Predictions: argmax over labels of cosine(text, templated label).
  std::vector<size_t> predict(const std::vector<std::vector<float>>& text_vectors, const std::vector<std::string>& labels,
                              const std::string& label_template) {
    std::vector<std::string> label_texts;
    for (const auto& l : labels) label_texts.push_back(apply_label_template(label_template, l));
    const auto label_vectors = embed(label_texts);
    std::vector<size_t> predicted;
    for (const auto& t : text_vectors) {
      size_t best = 0;
      double best_cos = -2;
      for (size_t l = 0; l < labels.size(); ++l) {
        const double c = cosine_similarity(t, label_vectors[l]);
        if (c > best_cos) best_cos = c, best = l;
      }
      predicted.push_back(best);
    }
    return predicted;
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string model_path, data = "../shared/data";
    size_t max_rows = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--model" && i + 1 < argc) model_path = argv[++i];
      else if (a == "--data" && i + 1 < argc) data = argv[++i];
      else if (a == "--limit" && i + 1 < argc) max_rows = std::stoul(argv[++i]);
      else throw Error("usage: quality_classify --model M.tbw [--data DIR] [--limit N]");
    }
    if (model_path.empty()) throw Error("usage: quality_classify --model M.tbw [--data DIR] [--limit N]");
    const Model model(model_path);
    CpuRefBackend backend;
    DirectRunner runner(model, backend);
    Evaluator eval{runner};
    ZeroShotClassifier classifier(runner);

    auto [tnews, tnews_labels] = load_tnews(std::filesystem::path(data) / "fewclue_tnews");
    struct Job {
      Dataset data;
      std::vector<LabelSet> label_sets;
      std::vector<std::string> templates;
    };
    std::vector<Job> jobs;
    jobs.push_back({tnews, {tnews_labels}, {"{}", "这是一条关于{}的新闻", "{}新闻", "新闻类别：{}"}});
    const std::vector<LabelSet> sentiment = {{"正面 / 负面", {"正面", "负面"}}, {"好评 / 差评", {"好评", "差评"}}};
    const std::vector<std::string> sentiment_templates = {"{}", "这是一条{}评价", "这条评论的情感是{}的", "总之，{}。"};
    jobs.push_back({load_eprstmt(std::filesystem::path(data) / "fewclue_eprstmt"), sentiment, sentiment_templates});
    jobs.push_back({load_chnsenticorp(std::filesystem::path(data) / "chnsenticorp"), sentiment, sentiment_templates});

    std::printf("| dataset | rows | labels | template | accuracy | chance |\n|---|---|---|---|---|---|\n");
    const auto start = std::chrono::steady_clock::now();
    for (Job& job : jobs) {
      limit(job.data, max_rows);
      const auto text_vectors = eval.embed(job.data.texts);
      std::map<size_t, size_t> per_class;
      for (size_t g : job.data.gold) ++per_class[g];
      size_t majority = 0;
      for (auto [_, n] : per_class) majority = std::max(majority, n);
      for (const LabelSet& labels : job.label_sets) {
        for (const std::string& label_template : job.templates) {
          const auto predicted = eval.predict(text_vectors, labels.labels, label_template);
          size_t correct = 0;
          for (size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == job.data.gold[i];
          // Cross-check the shortcut against the classifier on the first texts.
          const size_t check = std::min<size_t>(64, job.data.texts.size());
          ClassifyOptions options;
          options.label_template = label_template;
          const auto results = classifier.classify(
              std::vector<std::string>(job.data.texts.begin(), job.data.texts.begin() + check), labels.labels, options);
          for (size_t i = 0; i < check; ++i)
            if (results[i].labels[0].label != labels.labels[predicted[i]] &&
                std::abs(results[i].labels[0].cosine - results[i].labels[1].cosine) > 1e-6f)
              throw Error("classifier and evaluation disagree on " + job.data.name + " row " + std::to_string(i));
          std::printf("| %s | %zu | %s | `%s` | %.1f%% | %.1f%% (uniform) / %.1f%% (majority) |\n",
                      job.data.name.c_str(), predicted.size(), labels.name.c_str(), label_template.c_str(),
                      100.0 * correct / predicted.size(), 100.0 / labels.labels.size(),
                      100.0 * majority / predicted.size());
          std::fflush(stdout);
        }
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("\n%.0f s in all; label cache after the cross-checks: %llu hits, %llu misses\n", seconds,
                static_cast<unsigned long long>(classifier.cache_stats().hits),
                static_cast<unsigned long long>(classifier.cache_stats().misses));
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "quality_classify: error: " << e.what() << "\n";
    return 1;
  }
}
