// tinybert fill-mask: top-k tokens per [MASK], optional joint (whole-phrase) filling and
// attention attribution; JSON out, one object per text.
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "tinybert/tinybert.hpp"

namespace tinybert::cli {

namespace {

json candidate_json(const tinybert::TokenCandidate& c) {
  return {{"token", c.token}, {"id", c.id}, {"probability", c.probability}};
}

json result_json(const std::string& text, const tinybert::FillMaskResult& r, bool joint,
                 bool attribution) {
  json masks = json::array();
  for (const auto& m : r.masks) {
    json candidates = json::array();
    for (const auto& c : m.candidates) candidates.push_back(candidate_json(c));
    json mask = {{"token_index", m.token_index},
                 {"start", m.chars.start},
                 {"end", m.chars.end},
                 {"candidates", candidates}};
    if (attribution) {
      json attended = json::array();
      for (const auto& a : m.attribution)
        attended.push_back({{"token", a.token},
                            {"token_index", a.token_index},
                            {"start", a.chars.start},
                            {"end", a.chars.end},
                            {"weight", a.weight}});
      mask["attribution"] = attended;
    }
    masks.push_back(mask);
  }
  json out = {{"text", text}, {"masks", masks}};
  if (joint) {
    json phrases = json::array();
    for (const auto& p : r.phrases) {
      json tokens = json::array();
      for (const auto& t : p.tokens) tokens.push_back(candidate_json(t));
      phrases.push_back({{"text", p.text},
                         {"probability", p.probability},
                         {"tokens", tokens},
                         {"fill_order", p.fill_order}});
    }
    out["phrases"] = phrases;
  }
  return out;
}

}  // namespace

int cmd_fill_mask(const std::vector<std::string>& raw) {
  const Args args =
      parse_args(raw, {"--model", "--top-k", "--attribution", "--max-masks"}, {"--joint"});
  if (!args.has("--model")) throw Error("fill-mask needs --model M.tbw");
  tinybert::FillMaskOptions options;
  options.top_k = parse_int(args.value("--top-k", "5"), "--top-k", 1, 1000);
  options.attribution = parse_int(args.value("--attribution", "0"), "--attribution", 0, 1 << 20);
  options.max_masks = parse_int(args.value("--max-masks", "16"), "--max-masks", 1, 512);
  options.joint = args.has("--joint");
  const tinybert::Model model(args.value("--model"));
  if (model.config().architecture != tinybert::Architecture::masked_lm) {
    std::string s = args.value("--model");
    s += " is a ";
    s += tinybert::architecture_name(model.config().architecture);
    s += " model; fill-mask needs a masked_lm model";
    throw Error(s);
  }
  const auto texts = input_texts(args);
  return with_backend(args.value("--backend", default_backend()), [&](auto& backend) {
    using Backend = std::remove_reference_t<decltype(backend)>;
    const tinybert::Encoder encoder(model, backend);
    tinybert::Heads heads(model, backend);
    tinybert::Workspace<Backend> ws;
    const auto results = tinybert::fill_mask(model, encoder, heads, ws, texts, options);
    json out = json::array();
    for (size_t i = 0; i < texts.size(); ++i)
      out.push_back(result_json(texts[i], results[i], options.joint, options.attribution > 0));
    std::cout << out.dump() << "\n";
    return 0;
  });
}

}  // namespace tinybert::cli
