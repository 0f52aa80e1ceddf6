// The JSON shapes of every task's results, in one place: the CLI, the server (docs/api.md) and
// the C API print exactly these.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/extract.hpp"
#include "tinybert/tasks/fill_mask.hpp"
#include "tinybert/tasks/siamese_uie.hpp"

namespace tinybert {

inline nlohmann::json to_json(const ClassifyResult& result, ClassifyMode mode) {
  nlohmann::json labels = nlohmann::json::array();
  for (const LabelScore& s : result.labels) {
    nlohmann::json entry = {{"label", s.label}, {"score", s.score}, {"selected", s.selected}};
    if (mode == ClassifyMode::embedding) entry["cosine"] = s.cosine;
    labels.push_back(std::move(entry));
  }
  return labels;
}

inline nlohmann::json to_json(const TokenCandidate& c) {
  return {{"token", c.token}, {"id", c.id}, {"probability", c.probability}};
}

// One text's masks (and phrases, when joint filling ran).
inline nlohmann::json to_json(const FillMaskResult& r, bool joint, bool attribution) {
  nlohmann::json masks = nlohmann::json::array();
  for (const MaskPrediction& m : r.masks) {
    nlohmann::json candidates = nlohmann::json::array();
    for (const TokenCandidate& c : m.candidates) candidates.push_back(to_json(c));
    nlohmann::json mask = {{"token_index", m.token_index},
                           {"start", m.chars.start},
                           {"end", m.chars.end},
                           {"candidates", candidates}};
    if (attribution) {
      nlohmann::json attended = nlohmann::json::array();
      for (const AttributedToken& a : m.attribution)
        attended.push_back({{"token", a.token},
                            {"token_index", a.token_index},
                            {"start", a.chars.start},
                            {"end", a.chars.end},
                            {"weight", a.weight}});
      mask["attribution"] = attended;
    }
    masks.push_back(std::move(mask));
  }
  nlohmann::json out = {{"masks", masks}};
  if (joint) {
    nlohmann::json phrases = nlohmann::json::array();
    for (const PhraseCandidate& p : r.phrases) {
      nlohmann::json tokens = nlohmann::json::array();
      for (const TokenCandidate& t : p.tokens) tokens.push_back(to_json(t));
      phrases.push_back({{"text", p.text},
                         {"probability", p.probability},
                         {"tokens", tokens},
                         {"fill_order", p.fill_order}});
    }
    out["phrases"] = phrases;
  }
  return out;
}

// ---- classify ----------------------------------------------------------------------------------

// {"model", "mode", "template" (a list for an ensemble), "multi_label", "calibrate",
//  "results": [{"text", "labels": [{..., "content_free" when calibrated}]}]}
inline nlohmann::json classify_response(const std::string& model_name,
                                        const ZeroShotClassifier& classifier,
                                        const std::vector<std::string>& texts,
                                        const std::vector<ClassifyResult>& results,
                                        const ClassifyOptions& options) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t t = 0; t < texts.size(); ++t) {
    nlohmann::json labels = to_json(results[t], classifier.mode());
    if (options.calibrate)
      for (size_t l = 0; l < results[t].labels.size(); ++l)
        labels[l]["content_free"] = results[t].labels[l].content_free;
    out.push_back({{"text", texts[t]}, {"labels", std::move(labels)}});
  }
  const nlohmann::json label_template =
      options.label_templates.empty()
          ? nlohmann::json(options.label_template.value_or(classifier.default_template()))
          : nlohmann::json(options.label_templates);
  return {{"model", model_name},
          {"mode", classify_mode_name(classifier.mode())},
          {"template", label_template},
          {"multi_label", options.multi_label},
          {"calibrate", options.calibrate},
          {"results", out}};
}

// ---- fill-mask ---------------------------------------------------------------------------------

// One object per text: to_json(result) with the text added.
inline nlohmann::json fill_mask_results(const std::vector<std::string>& texts,
                                        const std::vector<FillMaskResult>& results,
                                        const FillMaskOptions& options) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t t = 0; t < texts.size(); ++t) {
    nlohmann::json r = to_json(results[t], options.joint, options.attribution > 0);
    r["text"] = texts[t];
    out.push_back(std::move(r));
  }
  return out;
}

// ---- extract -----------------------------------------------------------------------------------

inline nlohmann::json to_json(const Extraction& extraction);

inline nlohmann::json to_json(const ExtractedSpan& span) {
  nlohmann::json j = {{"text", span.text}};
  if (span.start >= 0) {
    j["start"] = span.start;
    j["end"] = span.end;
  }
  j["probability"] = span.probability;
  if (!span.relations.empty()) j["relations"] = to_json(span.relations);
  return j;
}

inline nlohmann::json to_json(const Extraction& extraction) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, spans] : extraction) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : spans) list.push_back(to_json(s));
    j[name] = std::move(list);
  }
  return j;
}

// ModelScope's SiameseUIE output for one text: {"output": [[{"type", "span", "offset"}, ...],
// ...]}.
inline nlohmann::json modelscope_output(const std::vector<SiameseChain>& chains) {
  nlohmann::json output = nlohmann::json::array();
  for (const SiameseChain& chain : chains) {
    nlohmann::json links = nlohmann::json::array();
    for (const SiameseSpan& s : chain)
      links.push_back({{"type", s.type}, {"span", s.span}, {"offset", {s.begin, s.end}}});
    output.push_back(std::move(links));
  }
  return {{"output", std::move(output)}};
}

// The shapes an extraction is returned in: "uie" (PaddleNLP's nested {name: [answers]}, for every
// extraction model) or "modelscope" (SiameseUIE models only).
enum class ExtractFormat { uie, modelscope };

inline ExtractFormat parse_extract_format(const std::string& name) {
  if (name == "uie") return ExtractFormat::uie;
  if (name == "modelscope") return ExtractFormat::modelscope;
  throw Error("format '" + name + "' (expected uie or modelscope)");
}

// SiameseUIE results per text in the chosen shape.
inline nlohmann::json to_json(const std::vector<std::vector<SiameseChain>>& results,
                              ExtractFormat format) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& chains : results)
    out.push_back(format == ExtractFormat::modelscope ? modelscope_output(chains)
                                                      : to_json(SiameseExtractor::nested(chains)));
  return out;
}

// PaddleNLP Taskflow's output: one {name: [answers]} object per text.
inline nlohmann::json to_json(const std::vector<Extraction>& extractions) {
  nlohmann::json out = nlohmann::json::array();
  for (const Extraction& e : extractions) out.push_back(to_json(e));
  return out;
}

}  // namespace tinybert
