// tinybert fill-mask: top-k tokens per [MASK], optional joint (whole-phrase) filling and
// attention attribution; JSON out, one object per text.
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "tinybert/tasks/task_json.hpp"
#include "tinybert/tinybert.hpp"

namespace tinybert::cli {

int cmd_fill_mask(const std::vector<std::string>& raw) {
  const Args args = parse_args(
      raw, {"--model", "--backend", "--top-k", "--attribution", "--max-masks"}, {"--joint"});
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
  const auto runner = make_cli_runner(model, args);
  const auto results = tinybert::fill_mask(*runner, texts, options);
  std::cout << fill_mask_results(texts, results, options).dump() << "\n";
  return 0;
}

}  // namespace tinybert::cli
