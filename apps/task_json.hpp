// JSON forms of task results, shared by the CLI and the server (docs/api.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/fill_mask.hpp"

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
    nlohmann::json mask = {
        {"token_index", m.token_index}, {"start", m.chars.start}, {"end", m.chars.end}, {"candidates", candidates}};
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
      phrases.push_back(
          {{"text", p.text}, {"probability", p.probability}, {"tokens", tokens}, {"fill_order", p.fill_order}});
    }
    out["phrases"] = phrases;
  }
  return out;
}

}  // namespace tinybert
