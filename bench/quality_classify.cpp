// quality_classify: zero-shot accuracy of embedding mode (bge-small-zh) on FewCLUE TNEWS, FewCLUE
// EPRSTMT and ChnSentiCorp: several templates and template ensembles, each plain and with
// contextual calibration; choices measured on the dev sets. Prints Markdown tables.
//
// usage: quality_classify --model models/bge-small-zh-v1.5.tbw [--data ../shared/data] [--limit N]
//
// Each split's texts are embedded once (chunks of 32 texts, one packed batch each); each
// template's label embeddings once. Single-label prediction = argmax softmax(c / T) = argmax c,
// with c the (calibrated) cosine, so accuracy does not depend on the temperature. As a check that
// this shortcut is the classifier's own result, the first 64 test texts of every row also go
// through ZeroShotClassifier::classify (plain and calibrated) and must agree.
//
// Besides what the classifier offers, two references that it cannot: batch calibration
// (subtracting each label's mean cosine over the whole test set: transductive, needs the test
// texts) and, for two labels, the best bias on the cosine margin chosen with the test labels
// (the most any per-label offset, calibration included, can give).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/embed.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

using Vectors = std::vector<std::vector<float>>;
using Matrix = std::vector<std::vector<double>>;  // [texts][labels] cosines

struct Split {
  std::string name;
  std::vector<std::string> texts;
  std::vector<size_t> gold;  // index into the label set
};

struct LabelSet {
  std::string name;
  std::vector<std::string> labels;  // same order as Split::gold indexes
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

void limit(Split& d, size_t n) {
  if (n == 0 || d.texts.size() <= n) return;
  // Keep a class-balanced prefix: every k-th row, since the files are grouped by class.
  Split out{d.name, {}, {}};
  const size_t step = d.texts.size() / n;
  for (size_t i = 0; i < d.texts.size() && out.texts.size() < n; i += step) {
    out.texts.push_back(d.texts[i]);
    out.gold.push_back(d.gold[i]);
  }
  d = std::move(out);
}

LabelSet tnews_labels(const std::filesystem::path& dir, std::map<int, size_t>& index) {
  LabelSet labels{"15 Chinese names (label_index2en2zh.json)", {}};
  for (const json& row : read_jsonl(dir / "label_index2en2zh.json")) {
    index[std::stoi(row.at("label").get<std::string>())] = labels.labels.size();
    labels.labels.push_back(row.at("label_zh").get<std::string>());
  }
  return labels;
}

Split load_tnews(const std::filesystem::path& file, const std::map<int, size_t>& index) {
  Split d{"FewCLUE TNEWS " + file.stem().string(), {}, {}};
  for (const json& row : read_jsonl(file)) {
    d.texts.push_back(row.at("sentence").get<std::string>());
    d.gold.push_back(index.at(row.at("label").get<int>()));
  }
  return d;
}

Split load_eprstmt(const std::filesystem::path& file) {
  Split d{"FewCLUE EPRSTMT " + file.stem().string(), {}, {}};
  for (const json& row : read_jsonl(file)) {
    d.texts.push_back(row.at("sentence").get<std::string>());
    d.gold.push_back(row.at("label").get<std::string>() == "Positive" ? 0 : 1);
  }
  return d;
}

Split load_chnsenticorp(const std::filesystem::path& file) {
  Split d{"ChnSentiCorp " + file.stem().string(), {}, {}};
  std::ifstream in(file);
  if (!in) throw Error("cannot open " + file.string());
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (tab == std::string::npos) throw Error("chnsenticorp: line without a tab");
    const std::string label = line.substr(tab + 1);
    if (label != "0" && label != "1") continue;  // a header line
    d.texts.push_back(line.substr(0, tab));
    d.gold.push_back(label == "1" ? 0 : 1);
  }
  return d;
}

Vectors embed(Runner& runner, const std::vector<std::string>& texts) {
  Vectors out;
  for (size_t i = 0; i < texts.size(); i += 32) {
    const std::vector<std::string> chunk(texts.begin() + i,
                                         texts.begin() + std::min(texts.size(), i + 32));
    for (auto& v : embed_texts(runner, chunk)) out.push_back(std::move(v));
  }
  return out;
}

Matrix cosines(const Vectors& texts, const Vectors& labels) {
  Matrix m(texts.size(), std::vector<double>(labels.size()));
  for (size_t i = 0; i < texts.size(); ++i)
    for (size_t l = 0; l < labels.size(); ++l) m[i][l] = cosine_similarity(texts[i], labels[l]);
  return m;
}

std::vector<double> column_means(const Matrix& m) {
  std::vector<double> mean(m.front().size(), 0.0);
  for (const auto& row : m)
    for (size_t l = 0; l < row.size(); ++l) mean[l] += row[l] / static_cast<double>(m.size());
  return mean;
}

std::vector<size_t> predict(const Matrix& m, const std::vector<double>& baseline) {
  std::vector<size_t> predicted;
  for (const auto& row : m) {
    size_t best = 0;
    for (size_t l = 1; l < row.size(); ++l)
      if (row[l] - baseline[l] > row[best] - baseline[best]) best = l;
    predicted.push_back(best);
  }
  return predicted;
}

double accuracy(const std::vector<size_t>& predicted, const std::vector<size_t>& gold) {
  size_t correct = 0;
  for (size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == gold[i];
  return 100.0 * static_cast<double>(correct) / static_cast<double>(predicted.size());
}

// Two labels: the best accuracy of "label 0 when cos0 - cos1 > b" over all b.
double oracle_bias_accuracy(const Matrix& m, const std::vector<size_t>& gold) {
  std::vector<std::pair<double, bool>> margins;  // (margin, gold is label 0)
  size_t label0 = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    margins.push_back({m[i][0] - m[i][1], gold[i] == 0});
    label0 += gold[i] == 0;
  }
  std::sort(margins.begin(), margins.end());
  // b just below margins[k]: label 1 for the k lowest, label 0 for the rest
  size_t best = 0, label1_below = 0, label0_below = 0;
  for (size_t k = 0; k <= margins.size(); ++k) {
    best = std::max(best, label1_below + (label0 - label0_below));
    if (k < margins.size()) (margins[k].second ? label0_below : label1_below) += 1;
  }
  return 100.0 * static_cast<double>(best) / static_cast<double>(m.size());
}

// Embeddings by text, computed on first use.
struct EmbeddingCache {
  Runner& runner;
  std::map<std::string, std::vector<float>> vectors;

  Vectors get(const std::vector<std::string>& texts) {
    std::vector<std::string> missing;
    for (const auto& t : texts)
      if (!vectors.count(t) && std::find(missing.begin(), missing.end(), t) == missing.end())
        missing.push_back(t);
    if (!missing.empty()) {
      Vectors computed = embed(runner, missing);
      for (size_t i = 0; i < missing.size(); ++i) vectors[missing[i]] = std::move(computed[i]);
    }
    Vectors out;
    for (const auto& t : texts) out.push_back(vectors.at(t));
    return out;
  }
};

// How a row scores labels: one template, or an ensemble averaging the label embeddings (what
// the classifier does) or the cosines.
enum class Ensemble { none, embeddings, cosines };

struct Row {
  std::string name;
  std::vector<std::string> templates;
  Ensemble ensemble = Ensemble::none;
};

// One row's cosines of the given vectors (texts or content-free inputs) to each label.
Matrix row_cosines(EmbeddingCache& cache, const Vectors& vectors,
                   const std::vector<std::string>& labels, const Row& row) {
  std::vector<std::string> label_texts;  // template-major, as the classifier orders them
  for (const auto& t : row.templates)
    for (const auto& l : labels) label_texts.push_back(apply_label_template(t, l));
  const Vectors label_vectors = cache.get(label_texts);
  if (row.ensemble == Ensemble::embeddings) {
    Vectors centroids;
    for (size_t l = 0; l < labels.size(); ++l)
      centroids.push_back(mean_direction(label_vectors, l, labels.size(), row.templates.size()));
    return cosines(vectors, centroids);
  }
  Matrix sum(vectors.size(), std::vector<double>(labels.size(), 0.0));
  for (size_t t = 0; t < row.templates.size(); ++t) {
    const Vectors one(label_vectors.begin() + t * labels.size(),
                      label_vectors.begin() + (t + 1) * labels.size());
    const Matrix m = cosines(vectors, one);
    for (size_t i = 0; i < m.size(); ++i)
      for (size_t l = 0; l < labels.size(); ++l)
        sum[i][l] += m[i][l] / static_cast<double>(row.templates.size());
  }
  return sum;
}

std::vector<std::string> content_free_inputs() {
  return {std::begin(kContentFreeInputs), std::end(kContentFreeInputs)};
}

// Checks the shortcut against ZeroShotClassifier on the first texts: same best label, unless the
// two best are tied within float rounding.
void cross_check(ZeroShotClassifier& classifier, const Split& split, const LabelSet& labels,
                 const Row& row, bool calibrate, const std::vector<size_t>& predicted,
                 const Matrix& m, const std::vector<double>& baseline) {
  ClassifyOptions options;
  if (row.templates.size() == 1)
    options.label_template = row.templates.front();
  else
    options.label_templates = row.templates;
  options.calibrate = calibrate;
  const size_t check = std::min<size_t>(64, split.texts.size());
  const auto results = classifier.classify(
      std::vector<std::string>(split.texts.begin(), split.texts.begin() + check), labels.labels,
      options);
  for (size_t i = 0; i < check; ++i) {
    const LabelScore& top = results[i].labels[0];
    const auto it = std::find(labels.labels.begin(), labels.labels.end(), top.label);
    const auto l = static_cast<size_t>(it - labels.labels.begin());
    const double gap = (m[i][predicted[i]] - baseline[predicted[i]]) - (m[i][l] - baseline[l]);
    if (l != predicted[i] && gap > 1e-5)
      throw Error("classifier and evaluation disagree on " + split.name + " row " +
                  std::to_string(i) + " (" + row.name + (calibrate ? ", calibrated)" : ")"));
    if (std::abs(top.cosine - m[i][l]) > 1e-4 || std::abs(top.content_free - baseline[l]) > 1e-4)
      throw Error("classifier cosines differ from the evaluation's on " + split.name + " row " +
                  std::to_string(i) + " (" + row.name + ")");
  }
}

struct Job {
  Split dev, test;
  std::vector<LabelSet> label_sets;
  std::vector<std::string> templates;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const char* usage = "usage: quality_classify --model M.tbw [--data DIR] [--limit N]";
    std::string model_path, data = "../shared/data";
    size_t max_rows = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--model" && i + 1 < argc)
        model_path = argv[++i];
      else if (a == "--data" && i + 1 < argc)
        data = argv[++i];
      else if (a == "--limit" && i + 1 < argc)
        max_rows = std::stoul(argv[++i]);
      else
        throw Error(usage);
    }
    if (model_path.empty()) throw Error(usage);
    const Model model(model_path);
    CpuRefBackend backend;
    DirectRunner runner(model, backend);
    EmbeddingCache cache{runner, {}};
    ZeroShotClassifier classifier(runner);

    const std::filesystem::path root(data);
    std::map<int, size_t> tnews_index;
    const LabelSet tnews = tnews_labels(root / "fewclue_tnews", tnews_index);
    const std::vector<LabelSet> sentiment = {{"正面 / 负面", {"正面", "负面"}},
                                             {"好评 / 差评", {"好评", "差评"}}};
    const std::vector<std::string> sentiment_templates = {"{}", "这是一条{}评价",  //
                                                          "这条评论的情感是{}的",  //
                                                          "总之，{}。"};
    std::vector<Job> jobs;
    jobs.push_back({load_tnews(root / "fewclue_tnews" / "dev_few_all.json", tnews_index),
                    load_tnews(root / "fewclue_tnews" / "test_public.json", tnews_index),
                    {tnews},
                    {"{}", "这是一条关于{}的新闻", "{}新闻", "新闻类别：{}"}});
    jobs.push_back({load_eprstmt(root / "fewclue_eprstmt" / "dev_few_all.json"),
                    load_eprstmt(root / "fewclue_eprstmt" / "test_public.json"), sentiment,
                    sentiment_templates});
    jobs.push_back({load_chnsenticorp(root / "chnsenticorp" / "dev.txt"),
                    load_chnsenticorp(root / "chnsenticorp" / "test.txt"), sentiment,
                    sentiment_templates});

    // Content-free sets compared on the dev sets; the classifier's own (kContentFreeInputs) first.
    const std::vector<std::vector<std::string>> content_free_sets = {
        content_free_inputs(), {"", "N/A", "[MASK]"}, {""}, {"N/A"}, {"[MASK]"}, {"无"}};
    const auto set_name = [](const std::vector<std::string>& set) {
      std::string out;
      for (const auto& s : set) out += (out.empty() ? "`\"" : ", `\"") + s + "\"`";
      return out;
    };

    const auto start = std::chrono::steady_clock::now();
    std::string test_table =
        "| dataset | rows | labels | template | plain | calibrated | batch-calibrated (ref.) | "
        "best bias (ref.) | chance |\n|---|---|---|---|---|---|---|---|---|\n";
    // dev means over each dataset's (label set x single template) rows, per choice
    std::map<std::string, std::vector<double>> dev_means;
    std::vector<std::string> dev_order;
    const auto add_dev = [&](const std::string& choice, size_t job, double value, size_t count) {
      if (!dev_means.count(choice)) {
        dev_means[choice] = std::vector<double>(jobs.size(), 0.0);
        dev_order.push_back(choice);
      }
      dev_means[choice][job] += value / static_cast<double>(count);
    };
    std::vector<std::string> dev_names;

    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      limit(job.dev, max_rows);
      limit(job.test, max_rows);
      dev_names.push_back(job.dev.name + " (" + std::to_string(job.dev.texts.size()) + ")");
      const Vectors dev_vectors = cache.get(job.dev.texts);
      const Vectors test_vectors = cache.get(job.test.texts);
      std::map<size_t, size_t> per_class;
      for (size_t g : job.test.gold) ++per_class[g];
      size_t majority = 0;
      for (auto [_, n] : per_class) majority = std::max(majority, n);

      std::vector<Row> rows;
      for (const auto& t : job.templates) rows.push_back({"`" + t + "`", {t}, Ensemble::none});
      rows.push_back(
          {"ensemble of the " + std::to_string(job.templates.size()) + ", mean embedding",
           job.templates, Ensemble::embeddings});
      rows.push_back({"ensemble of the " + std::to_string(job.templates.size()) + ", mean cosine",
                      job.templates, Ensemble::cosines});
      const size_t single_rows = job.templates.size() * job.label_sets.size();

      for (const LabelSet& labels : job.label_sets) {
        for (const Row& row : rows) {
          const Vectors content_free = cache.get(content_free_inputs());
          // test: plain, calibrated, and the two references
          const Matrix test = row_cosines(cache, test_vectors, labels.labels, row);
          const std::vector<double> zero(labels.labels.size(), 0.0);
          const std::vector<double> baseline =
              column_means(row_cosines(cache, content_free, labels.labels, row));
          const auto plain = predict(test, zero), calibrated = predict(test, baseline);
          if (row.ensemble != Ensemble::cosines) {
            cross_check(classifier, job.test, labels, row, false, plain, test, zero);
            cross_check(classifier, job.test, labels, row, true, calibrated, test, baseline);
          }
          char oracle[32] = "–";
          if (labels.labels.size() == 2)
            std::snprintf(oracle, sizeof oracle, "%.1f%%",
                          oracle_bias_accuracy(test, job.test.gold));
          char line[1024];
          std::snprintf(
              line, sizeof line,
              "| %s | %zu | %s | %s | %.1f%% | %.1f%% | %.1f%% | %s | %.1f%% / %.1f%% |\n",
              job.test.name.c_str(), job.test.texts.size(), labels.name.c_str(), row.name.c_str(),
              accuracy(plain, job.test.gold), accuracy(calibrated, job.test.gold),
              accuracy(predict(test, column_means(test)), job.test.gold), oracle,
              100.0 / static_cast<double>(labels.labels.size()),
              100.0 * static_cast<double>(majority) / static_cast<double>(job.test.texts.size()));
          test_table += line;
          std::fputs(line, stderr);

          // dev: plain and each content-free set (single templates), ensemble kinds
          const Matrix dev = row_cosines(cache, dev_vectors, labels.labels, row);
          if (row.ensemble == Ensemble::none) {
            add_dev("plain", j, accuracy(predict(dev, zero), job.dev.gold), single_rows);
            for (const auto& set : content_free_sets) {
              const std::vector<double> b =
                  column_means(row_cosines(cache, cache.get(set), labels.labels, row));
              add_dev("calibrated, " + set_name(set), j, accuracy(predict(dev, b), job.dev.gold),
                      single_rows);
            }
          } else {
            const std::string kind =
                row.ensemble == Ensemble::embeddings ? "mean embedding" : "mean cosine";
            add_dev("ensemble, " + kind + ", plain", j, accuracy(predict(dev, zero), job.dev.gold),
                    job.label_sets.size());
            add_dev("ensemble, " + kind + ", calibrated", j,
                    accuracy(predict(dev, baseline), job.dev.gold), job.label_sets.size());
          }
        }
      }
    }

    std::printf(
        "Test sets; calibrated = content-free inputs %s; chance = uniform / majority.\n\n%s\n",
        set_name(content_free_inputs()).c_str(), test_table.c_str());
    std::printf(
        "Dev sets: mean accuracy over the single-template rows (ensemble rows: over the label "
        "sets).\n\n| choice |");
    for (const auto& n : dev_names) std::printf(" %s |", n.c_str());
    std::printf("\n|---|");
    for (size_t j = 0; j < jobs.size(); ++j) std::printf("---|");
    std::printf("\n");
    for (const auto& choice : dev_order) {
      std::printf("| %s |", choice.c_str());
      for (double v : dev_means[choice]) std::printf(" %.1f%% |", v);
      std::printf("\n");
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const LabelCacheStats stats = classifier.cache_stats();
    std::printf("\n%.0f s in all; label cache after the cross-checks: %llu hits, %llu misses\n",
                seconds, static_cast<unsigned long long>(stats.hits),
                static_cast<unsigned long long>(stats.misses));
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "quality_classify: error: " << e.what() << "\n";
    return 1;
  }
}
