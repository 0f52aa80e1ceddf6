// Zero-shot classification: texts + candidate labels -> scored labels, with a bi-encoder
// (embedding mode: cosine to cached label embeddings) or an NLI cross-encoder (NLI mode).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tinybert/runner.hpp"
#include "tinybert/tasks/label_cache.hpp"

namespace tinybert {

// nli: an NLI cross-encoder scored by HuggingFace's pipeline rules (entailment found by label
// name). modelscope_nli: a ModelScope zero-shot checkpoint scored by ModelScope's pipeline
// (entailment logit 0, contradiction logit 2 whatever the labels say; template "{}"; pairs
// truncated longest-first).
enum class ClassifyMode { embedding, nli, modelscope_nli };

inline const char* classify_mode_name(ClassifyMode m) {
  switch (m) {
    case ClassifyMode::embedding:
      return "embedding";
    case ClassifyMode::nli:
      return "nli";
    case ClassifyMode::modelscope_nli:
      return "modelscope-nli";
  }
  return "?";
}

// Defaults, chosen on FewCLUE TNEWS / EPRSTMT / ChnSentiCorp with bge-small-zh (bench/QUALITY.md).
inline constexpr const char* kDefaultEmbeddingTemplate = "这是一条关于{}的新闻";
inline constexpr const char* kDefaultNliTemplate = "这是一条关于{}的新闻。";
inline constexpr const char* kModelScopeNliTemplate =
    "{}";  // ZeroShotClassificationPipeline's default
inline constexpr int64_t kModelScopeEntailment = 0, kModelScopeContradiction = 2;
inline constexpr float kDefaultTemperature = 0.05f;
inline constexpr float kDefaultEmbeddingThreshold = 0.5f;  // cosine
inline constexpr float kDefaultNliThreshold = 0.5f;        // entailment probability

// Embedding mode, contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): texts with no
// content. A label's mean cosine to them is the pull the label (and its template) has on any text,
// whatever it says; calibration subtracts it. Zhao et al.'s three and the Chinese "none", averaged
// so that no one input's quirks (its tokens, its sense) become the baseline; the four beat the
// three on all three dev sets (bench/QUALITY.md).
inline constexpr const char* kContentFreeInputs[] = {"", "N/A", "[MASK]", "无"};
inline constexpr float kDefaultCalibratedThreshold = 0.0f;  // calibrated cosine, multi label
inline constexpr size_t kMaxLabelTemplates = 16;            // templates in one ensemble

struct ClassifyOptions {
  // Turns a label into the text that is embedded (embedding mode) or the hypothesis (NLI mode);
  // every "{}" is replaced by the label. Default: kDefaultEmbeddingTemplate / kDefaultNliTemplate.
  std::optional<std::string> label_template;
  // false: scores over the labels sum to 1 and only the best label is selected.
  // true: every label is scored on its own and selected when it passes the threshold.
  bool multi_label = false;
  // Embedding mode only: softmax(cosine / T) (single label) or sigmoid((cosine - threshold) / T)
  // (multi label). NLI mode follows HuggingFace's pipeline, which has no temperature.
  float temperature = kDefaultTemperature;
  // Multi label: embedding mode selects cosine >= threshold (score >= 0.5); NLI mode selects
  // entailment probability >= threshold. Default: kDefaultEmbeddingThreshold /
  // kDefaultNliThreshold.
  std::optional<float> threshold;
  size_t max_labels = 128;  // a request makes texts x labels sequences in NLI mode
  // NLI mode: the (text, label) pairs run as one packed batch, split into passes of at most this
  // many tokens only when larger (memory per pass, and a server's deadline checked between them).
  int64_t max_pass_tokens = 16384;
  // Embedding mode: a template ensemble, used instead of label_template when not empty (set one
  // or the other). A label's embedding is the mean of its templated texts' unit vectors.
  std::vector<std::string> label_templates;
  // Embedding mode: contextual calibration. Each label's cosine minus its mean cosine to
  // kContentFreeInputs; the scores, and the multi-label threshold (default
  // kDefaultCalibratedThreshold), then apply to that calibrated cosine. The content-free inputs are
  // embedded once per model and backend and kept in the label cache.
  bool calibrate = false;
};

struct LabelScore {
  std::string label;
  float score = 0;
  bool selected = false;
  float cosine = 0;           // embedding mode: cosine(text, templated label or template centroid)
  float content_free = 0;     // calibrate: the label's mean cosine to the content-free inputs
  std::vector<float> logits;  // NLI mode: the pair's class logits, in the model's label order
  friend bool operator==(const LabelScore&, const LabelScore&) = default;
};

// One per text: its labels sorted by score, best first (ties keep the request's order).
struct ClassifyResult {
  std::vector<LabelScore> labels;
  friend bool operator==(const ClassifyResult&, const ClassifyResult&) = default;
};

// ---------------------------------------------------------------- scoring, kept separate for tests

inline std::string apply_label_template(const std::string& label_template,
                                        const std::string& label) {
  std::string out;
  size_t from = 0;
  for (size_t at = label_template.find("{}"); at != std::string::npos;
       at = label_template.find("{}", from)) {
    out.append(label_template, from, at - from);
    out += label;
    from = at + 2;
  }
  out.append(label_template, from, std::string::npos);
  return out;
}

// Rejects what would make a request meaningless before any work is done.
inline void validate_classify_request(const std::vector<std::string>& labels,
                                      const std::string& label_template,
                                      const ClassifyOptions& options) {
  if (labels.empty()) throw Error("classify: no candidate labels");
  if (labels.size() > options.max_labels)
    throw Error("classify: " + std::to_string(labels.size()) + " labels, at most " +
                std::to_string(options.max_labels) + " allowed");
  std::set<std::string> seen;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].find_first_not_of(" \t\r\n") == std::string::npos)
      throw Error("classify: label " + std::to_string(i) + " is empty");
    if (!seen.insert(labels[i]).second)
      throw Error("classify: duplicate label '" + labels[i] + "'");
  }
  if (label_template.find("{}") == std::string::npos)
    throw Error("classify: template '" + label_template + "' has no {} for the label");
  if (!options.label_templates.empty()) {
    if (options.label_template)
      throw Error("classify: give one template or a list of templates, not both");
    if (options.label_templates.size() > kMaxLabelTemplates)
      throw Error("classify: " + std::to_string(options.label_templates.size()) +
                  " templates, at most " + std::to_string(kMaxLabelTemplates) + " allowed");
    std::set<std::string> seen_templates;
    for (size_t i = 0; i < options.label_templates.size(); ++i) {
      const std::string& t = options.label_templates[i];
      if (t.find("{}") == std::string::npos)
        throw Error("classify: template " + std::to_string(i) + " '" + t +
                    "' has no {} for the label");
      if (!seen_templates.insert(t).second) throw Error("classify: duplicate template '" + t + "'");
    }
  }
  if (!(options.temperature > 0.0f) || !std::isfinite(options.temperature))
    throw Error("classify: temperature must be a positive number, got " +
                std::to_string(options.temperature));
  if (options.threshold && !std::isfinite(*options.threshold))
    throw Error("classify: threshold must be finite");
}

// softmax(x / temperature), computed in double with the maximum subtracted.
inline std::vector<float> softmax(std::span<const float> x, double temperature = 1.0) {
  if (x.empty()) return {};
  const double top = *std::max_element(x.begin(), x.end()) / temperature;
  std::vector<double> e(x.size());
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += e[i] = std::exp(x[i] / temperature - top);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(e[i] / sum);
  return out;
}

inline float sigmoid(double x) { return static_cast<float>(1.0 / (1.0 + std::exp(-x))); }

// Embedding mode, one text: cosines [labels] -> scores [labels].
inline std::vector<float> embedding_scores(std::span<const float> cosines, bool multi_label,
                                           float temperature, float threshold) {
  if (!multi_label) return softmax(cosines, temperature);
  std::vector<float> scores(cosines.size());
  for (size_t i = 0; i < cosines.size(); ++i)
    scores[i] = sigmoid((double(cosines[i]) - threshold) / temperature);
  return scores;
}

// A label list written as one string, as ModelScope's pipeline takes it (and the CLI's --labels):
// "，" counts as ",", items are stripped of white space, empty items dropped. (ModelScope keeps
// duplicate labels; classify() refuses them.)
inline std::vector<std::string> parse_label_list(std::string_view list) {
  constexpr std::string_view kFullWidthComma = "，";
  std::vector<std::string> labels;
  std::string item;
  // Python's str.strip(): Unicode white space at both ends (U+3000 and U+00A0 included)
  const auto flush = [&] {
    const std::vector<char32_t> cps = detail::decode_utf8(item).code_points;
    size_t first = 0, last = cps.size();
    while (first < last && detail::is_whitespace(cps[first])) ++first;
    while (last > first && detail::is_whitespace(cps[last - 1])) --last;
    std::string stripped;
    for (size_t c = first; c < last; ++c) detail::append_utf8(stripped, cps[c]);
    if (!stripped.empty()) labels.push_back(std::move(stripped));
    item.clear();
  };
  for (size_t i = 0; i < list.size();) {
    if (list[i] == ',' || list.substr(i, kFullWidthComma.size()) == kFullWidthComma) {
      i += list[i] == ',' ? 1 : kFullWidthComma.size();
      flush();
    } else {
      item += list[i++];
    }
  }
  flush();
  return labels;
}

// HF's entailment_id: the first label that starts with "entail" in any case; -1 if none.
inline int64_t find_entailment_index(const std::vector<std::string>& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    std::string lower = labels[i];
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("entail", 0) == 0) return static_cast<int64_t>(i);
  }
  return -1;
}

// NLI mode, one text: logits [labels, classes] -> scores [labels]. HF's and ModelScope's
// ZeroShotClassificationPipeline agree on the rule: single label (and more than one label) =
// softmax over labels of the entailment logits; otherwise softmax([contradiction, entailment])
// = sigmoid(entailment - contradiction) per label. They differ in which logits those are: HF
// takes contradiction = the last class when entailment is class 0, else class 0 (pass -1);
// ModelScope fixes entailment 0 and contradiction 2.
inline std::vector<float> nli_scores(std::span<const float> logits, int64_t num_labels,
                                     int64_t num_classes, int64_t entailment, bool multi_label,
                                     int64_t contradiction = -1) {
  std::vector<float> entail(static_cast<size_t>(num_labels));
  for (int64_t l = 0; l < num_labels; ++l) entail[l] = logits[l * num_classes + entailment];
  if (!multi_label && num_labels > 1) return softmax(entail);
  if (contradiction < 0) contradiction = entailment == 0 ? num_classes - 1 : 0;
  std::vector<float> scores(static_cast<size_t>(num_labels));
  for (int64_t l = 0; l < num_labels; ++l) {
    const float pair[2] = {logits[l * num_classes + contradiction], entail[l]};
    scores[l] = softmax(pair)[1];
  }
  return scores;
}

// The mean of the unit vectors vectors[first], vectors[first + stride], ... (count of them).
inline std::vector<float> mean_direction(const std::vector<std::vector<float>>& vectors,
                                         size_t first, size_t stride, size_t count) {
  std::vector<double> sum(vectors[first].size(), 0.0);
  for (size_t i = 0; i < count; ++i) {
    const std::vector<float>& v = vectors[first + i * stride];
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    const double scale = norm > 0 ? 1.0 / (std::sqrt(norm) * static_cast<double>(count)) : 0.0;
    for (size_t d = 0; d < v.size(); ++d) sum[d] += v[d] * scale;
  }
  return std::vector<float>(sum.begin(), sum.end());
}

inline double cosine_similarity(std::span<const float> a, std::span<const float> b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += double(a[i]) * b[i];
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
  }
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0.0;
}

// ---------------------------------------------------------------- the classifier

// Mode from the model: an `encoder` model is a bi-encoder (embedding mode); a
// `sequence_classification` model with an entailment label is an NLI cross-encoder.
// classify() may be called from many threads at once: a request's state lives on its own stack,
// the forward passes go through the runner and the label cache locks itself. The cache may be
// shared by several classifiers.
class ZeroShotClassifier {
 public:
  explicit ZeroShotClassifier(Runner& runner, std::shared_ptr<LabelCache> cache = nullptr)
      : runner_(runner),
        model_(runner.model()),
        mode_(mode_for(model_)),
        cache_(cache ? std::move(cache) : std::make_shared<LabelCache>()),
        entailment_(mode_ == ClassifyMode::modelscope_nli
                        ? kModelScopeEntailment
                        : find_entailment_index(model_.config().labels)) {}

  ClassifyMode mode() const { return mode_; }
  const std::string& default_template() const { return default_template_for(mode_); }
  LabelCacheStats cache_stats() const { return cache_->stats(); }
  LabelCache& cache() { return *cache_; }

  // The templates a request uses: its list (an ensemble), else its template, else the default.
  std::vector<std::string> templates(const ClassifyOptions& options) const {
    if (!options.label_templates.empty()) return options.label_templates;
    return {options.label_template.value_or(default_template())};
  }

  // What classify() checks before any work: labels, templates, options, and what the mode allows.
  void validate(const std::vector<std::string>& labels, const ClassifyOptions& options) const {
    validate_classify_request(labels, options.label_template.value_or(default_template()), options);
    if (mode_ != ClassifyMode::embedding &&
        (options.calibrate || options.label_templates.size() > 1))
      throw Error(std::string("classify: ") +
                  (options.calibrate ? "calibration" : "a list of templates") +
                  " is for embedding mode; model '" + model_.config().name + "' is an NLI model");
  }

  // All work of one request is ONE forward pass (one runner.run): texts + uncached labels and
  // content-free inputs (embedding mode), or texts x labels (text, hypothesis) pairs (NLI mode).
  std::vector<ClassifyResult> classify(const std::vector<std::string>& texts,
                                       const std::vector<std::string>& labels,
                                       const ClassifyOptions& options = {}) {
    validate(labels, options);
    if (texts.empty()) return {};
    return mode_ == ClassifyMode::embedding
               ? classify_embedding(texts, labels, templates(options), options)
               : classify_nli(texts, labels, templates(options).front(), options);
  }

  static ClassifyMode mode_for(const Model& model) {
    const ModelConfig& c = model.config();
    if (c.architecture == Architecture::encoder) return ClassifyMode::embedding;
    if (c.architecture == Architecture::sequence_classification && c.modelscope_nli)
      return ClassifyMode::modelscope_nli;
    if (c.architecture == Architecture::sequence_classification) {
      if (find_entailment_index(c.labels) < 0) {
        std::string names;
        for (const auto& l : c.labels) {
          if (!names.empty()) names += ", ";
          names += l;
        }
        std::string message = "classify: model '";
        message += c.name;
        message += "' has no entailment label (labels: ";
        message += names;
        message += "); NLI mode needs one";
        throw Error(message);
      }
      return ClassifyMode::nli;
    }
    std::string message = "classify: model '";
    message += c.name;
    message += "' is a ";
    message += architecture_name(c.architecture);
    message +=
        " model; zero-shot classification needs an encoder (embedding) or an NLI "
        "sequence_classification model";
    throw Error(message);
  }

 private:
  static const std::string& default_template_for(ClassifyMode mode) {
    static const std::string embedding = kDefaultEmbeddingTemplate, nli = kDefaultNliTemplate,
                             modelscope = kModelScopeNliTemplate;
    switch (mode) {
      case ClassifyMode::embedding:
        return embedding;
      case ClassifyMode::nli:
        return nli;
      case ClassifyMode::modelscope_nli:
        return modelscope;
    }
    return nli;
  }

  static ClassifyResult sorted_result(const std::vector<std::string>& labels,
                                      std::vector<LabelScore> scored, bool multi_label) {
    for (size_t i = 0; i < scored.size(); ++i) scored[i].label = labels[i];
    std::stable_sort(scored.begin(), scored.end(),
                     [](const LabelScore& a, const LabelScore& b) { return a.score > b.score; });
    if (!multi_label) scored.front().selected = true;
    return {std::move(scored)};
  }

  std::vector<ClassifyResult> classify_embedding(const std::vector<std::string>& texts,
                                                 const std::vector<std::string>& labels,
                                                 const std::vector<std::string>& templates,
                                                 const ClassifyOptions& options) const {
    const Tokenizer& tokenizer = model_.tokenizer();
    const auto max_length = static_cast<size_t>(model_.max_length());
    ForwardRequest request;
    request.head = pooled_head(model_);
    for (const auto& text : texts) {
      const Encoding e = tokenizer.encode(text, max_length);
      request.batch.add(e.ids, e.type_ids);
    }
    // Cached or computed with the texts: every template x label (template-major), then, when
    // calibrating, the content-free inputs.
    std::vector<std::string> sequences, keys;
    // per call: a FallbackRunner's backend changes when the GPU fails
    const std::string model_id = model_identity(model_, runner_.backend_name());
    for (const auto& label_template : templates)
      for (const auto& label : labels) {
        sequences.push_back(apply_label_template(label_template, label));
        keys.push_back(LabelCache::key(model_id, label_template, label));
      }
    if (options.calibrate)
      for (const char* input : kContentFreeInputs) {
        sequences.emplace_back(input);
        keys.push_back(LabelCache::content_free_key(model_id, input));
      }
    std::vector<std::vector<float>> vectors(keys.size());
    std::vector<size_t> uncached;
    std::vector<std::optional<std::vector<float>>> cached = cache_->get_many(keys);
    const auto hidden = static_cast<size_t>(model_.config().hidden_size);
    for (size_t k = 0; k < keys.size(); ++k) {
      if (cached[k] && cached[k]->size() == hidden) {  // a shared tier's entry could be foreign
        vectors[k] = std::move(*cached[k]);
      } else {
        const Encoding e = tokenizer.encode(sequences[k], max_length);
        request.batch.add(e.ids, e.type_ids);
        uncached.push_back(k);
      }
    }
    const std::vector<float> pooled = runner_.run(std::move(request)).values;
    for (size_t u = 0; u < uncached.size(); ++u) {
      const size_t row = texts.size() + u;
      vectors[uncached[u]].assign(pooled.begin() + row * hidden,
                                  pooled.begin() + (row + 1) * hidden);
      cache_->put(keys[uncached[u]], vectors[uncached[u]]);
    }
    // A label's embedding: its templated text's; with several templates, the mean of their unit
    // vectors. That centroid scores like the mean cosine (bench/QUALITY.md) and keeps cosines and
    // thresholds on one scale however many templates there are.
    const size_t num_labels = labels.size();
    std::vector<std::vector<float>> label_vectors(vectors.begin(), vectors.begin() + num_labels);
    if (templates.size() > 1)
      for (size_t l = 0; l < num_labels; ++l)
        label_vectors[l] = mean_direction(vectors, l, num_labels, templates.size());
    const auto label_cosines = [&](std::span<const float> v) {
      std::vector<float> cosines(num_labels);
      for (size_t l = 0; l < num_labels; ++l)
        cosines[l] = static_cast<float>(cosine_similarity(v, label_vectors[l]));
      return cosines;
    };
    std::vector<float> content_free(num_labels, 0.0f);
    if (options.calibrate) {
      const size_t first = templates.size() * num_labels, count = vectors.size() - first;
      std::vector<double> sum(num_labels, 0.0);
      for (size_t k = first; k < vectors.size(); ++k) {
        const std::vector<float> cosines = label_cosines(vectors[k]);
        for (size_t l = 0; l < num_labels; ++l) sum[l] += cosines[l];
      }
      for (size_t l = 0; l < num_labels; ++l)
        content_free[l] = static_cast<float>(sum[l] / static_cast<double>(count));
    }
    const float threshold = options.threshold.value_or(
        options.calibrate ? kDefaultCalibratedThreshold : kDefaultEmbeddingThreshold);
    std::vector<ClassifyResult> results;
    for (size_t t = 0; t < texts.size(); ++t) {
      const std::vector<float> cosines =
          label_cosines(std::span<const float>(pooled.data() + t * hidden, hidden));
      std::vector<float> calibrated(num_labels);
      for (size_t l = 0; l < num_labels; ++l) calibrated[l] = cosines[l] - content_free[l];
      const std::vector<float> scores =
          embedding_scores(calibrated, options.multi_label, options.temperature, threshold);
      std::vector<LabelScore> scored(num_labels);
      for (size_t l = 0; l < num_labels; ++l) {
        scored[l].score = scores[l];
        scored[l].cosine = cosines[l];
        scored[l].content_free = content_free[l];
        scored[l].selected = options.multi_label && calibrated[l] >= threshold;
      }
      results.push_back(sorted_result(labels, std::move(scored), options.multi_label));
    }
    return results;
  }

  std::vector<ClassifyResult> classify_nli(const std::vector<std::string>& texts,
                                           const std::vector<std::string>& labels,
                                           const std::string& label_template,
                                           const ClassifyOptions& options) const {
    const Tokenizer& tokenizer = model_.tokenizer();
    const auto max_length = static_cast<size_t>(model_.max_length());
    std::vector<std::string> hypotheses;
    for (const auto& label : labels)
      hypotheses.push_back(apply_label_template(label_template, label));
    std::vector<ForwardRequest> passes(1);
    for (const auto& text : texts) {
      for (const auto& hypothesis : hypotheses) {
        // HF truncates only the text: the hypothesis carries the label. ModelScope asks for that
        // too, but its tokenizer wrapper drops the argument: longest-first
        // (tools/modelscope/NOTES.md).
        const Encoding e =
            tokenizer.encode_pair(text, hypothesis, max_length,
                                  mode_ == ClassifyMode::modelscope_nli ? Truncation::longest_first
                                                                        : Truncation::only_first);
        if (passes.back().batch.num_sequences() > 0 &&
            passes.back().batch.num_tokens() + static_cast<int64_t>(e.size()) >
                options.max_pass_tokens)
          passes.emplace_back();
        passes.back().batch.add(e.ids, e.type_ids);
      }
    }
    std::vector<float> logits;  // [texts x labels, classes], pairs in order
    for (ForwardRequest& pass : passes) {
      pass.head.kind = HeadKind::classifier_logits;
      const std::vector<float> part = runner_.run(std::move(pass)).values;
      logits.insert(logits.end(), part.begin(), part.end());
    }
    const int64_t num_classes = model_.config().num_labels();
    const auto num_labels = static_cast<int64_t>(labels.size());
    const float threshold = options.threshold.value_or(kDefaultNliThreshold);
    std::vector<ClassifyResult> results;
    for (size_t t = 0; t < texts.size(); ++t) {
      const std::span<const float> text_logits(logits.data() + t * num_labels * num_classes,
                                               static_cast<size_t>(num_labels * num_classes));
      const std::vector<float> scores =
          nli_scores(text_logits, num_labels, num_classes, entailment_, options.multi_label,
                     mode_ == ClassifyMode::modelscope_nli ? kModelScopeContradiction : -1);
      std::vector<LabelScore> scored(labels.size());
      for (int64_t l = 0; l < num_labels; ++l) {
        scored[l].score = scores[l];
        scored[l].selected = options.multi_label && scores[l] >= threshold;
        scored[l].logits.assign(text_logits.begin() + l * num_classes,
                                text_logits.begin() + (l + 1) * num_classes);
      }
      results.push_back(sorted_result(labels, std::move(scored), options.multi_label));
    }
    return results;
  }

  Runner& runner_;
  const Model& model_;
  ClassifyMode mode_;
  std::shared_ptr<LabelCache> cache_;
  int64_t entailment_;
};

}  // namespace tinybert
