// Fill-mask quality of demo-mlm: (1) masked-token top-1/top-5 on CLUENER dev text (never seen
// in training), (2) FewCLUE ChID idiom cloze as ../shared/models/demo-mlm/SOURCE.txt describes.
//
// usage: quality_fill_mask [--shared ../shared] [--model M.tbw] [--limit N]
// Without --model, demo-mlm is converted from ../shared/models/demo-mlm into a temp file.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "convert.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<json> read_json_lines(const std::filesystem::path& path, size_t limit) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  std::vector<json> rows;
  std::string line;
  while (rows.size() < limit && std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

// (1) Each text: the tokens that are one CJK character are the candidates; 15 % of them
// (rounded, at least 1) become [MASK], chosen by a Fisher-Yates shuffle from a fixed-seed
// mt19937. Every target is [MASK] (no 10 % random / 10 % kept noise), as SOURCE.txt's eval.
void masked_token_accuracy(Runner& runner, const std::filesystem::path& path, size_t limit) {
  const Model& model = runner.model();
  const auto rows = read_json_lines(path, limit);
  const Tokenizer& tokenizer = model.tokenizer();
  std::mt19937 rng(20240615);
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> targets;  // per text, the hidden token ids in text order
  for (const auto& row : rows) {
    const std::string text = row["text"].get<std::string>();
    const Encoding e = tokenizer.encode(text, 0);
    if (static_cast<int64_t>(e.size()) > model.max_length()) continue;
    const detail::DecodedText decoded = detail::decode_utf8(text);
    std::vector<size_t> candidates;
    for (size_t t = 1; t + 1 < e.size(); ++t)
      if (e.offsets[t].end - e.offsets[t].start == 1 &&
          detail::is_chinese_char(decoded.code_points[static_cast<size_t>(e.offsets[t].start)]) &&
          e.ids[t] != tokenizer.unk_id())
        candidates.push_back(t);
    if (candidates.empty()) continue;
    const size_t n = std::max<size_t>(
        1, static_cast<size_t>(std::lround(0.15 * static_cast<double>(candidates.size()))));
    for (size_t i = candidates.size() - 1; i > 0; --i)
      std::swap(candidates[i], candidates[std::uniform_int_distribution<size_t>(0, i)(rng)]);
    candidates.resize(n);
    std::sort(candidates.begin(), candidates.end());
    std::string masked;
    std::vector<int32_t> hidden;
    size_t next = 0;  // code point
    for (size_t t : candidates) {
      const size_t start = static_cast<size_t>(e.offsets[t].start);
      masked.append(text, decoded.byte_starts[next],
                    decoded.byte_starts[start] - decoded.byte_starts[next]);
      masked += "[MASK]";
      hidden.push_back(e.ids[t]);
      next = start + 1;
    }
    masked.append(text, decoded.byte_starts[next], std::string::npos);
    texts.push_back(masked);
    targets.push_back(hidden);
  }
  const auto start = Clock::now();
  size_t top1 = 0, top5 = 0, total = 0;
  FillMaskOptions options;
  options.top_k = 5;
  options.max_masks = 512;
  const size_t batch = 32;
  for (size_t b = 0; b < texts.size(); b += batch) {
    const std::vector<std::string> part(texts.begin() + b,
                                        texts.begin() + std::min(texts.size(), b + batch));
    const auto results = fill_mask(runner, part, options);
    for (size_t i = 0; i < part.size(); ++i) {
      const auto& want = targets[b + i];
      if (results[i].masks.size() != want.size()) throw Error("mask count mismatch in " + part[i]);
      for (size_t m = 0; m < want.size(); ++m, ++total) {
        const auto& c = results[i].masks[m].candidates;
        top1 += c[0].id == want[m];
        for (const auto& k : c) top5 += k.id == want[m];
      }
    }
  }
  std::printf("CLUENER dev: %zu texts, %zu targets (15%% of single-CJK tokens, seed 20240615)\n",
              texts.size(), total);
  std::printf("  top-1 %.1f %% (%zu)   top-5 %.1f %% (%zu)   %.1f s, %.0f texts/s\n",
              100.0 * double(top1) / double(total), top1, 100.0 * double(top5) / double(total),
              top5, seconds_since(start), double(texts.size()) / seconds_since(start));
}

// (2) ChID, as tools/train_mlm.py chid_inputs / eval_chid: #idiom# -> 4 [MASK]; left and
// right contexts tokenized separately and cut to 128 tokens in all, balanced around the blank;
// score of a candidate = sum over its 4 characters of the log-softmax at the 4 masks
// (a character outside the vocabulary scores as [UNK]); the best of 7, first on ties.
void chid_accuracy(Runner& runner, const std::filesystem::path& path, size_t limit) {
  const Model& model = runner.model();
  const auto rows = read_json_lines(path, limit);
  const Tokenizer& tokenizer = model.tokenizer();
  const int64_t vocab = model.config().vocab_size;
  const auto start = Clock::now();
  size_t correct = 0, unk_candidates = 0;
  const size_t batch_size = 16;
  for (size_t b = 0; b < rows.size(); b += batch_size) {
    ForwardRequest request;
    request.head.kind = HeadKind::mlm_logits;
    const size_t end = std::min(rows.size(), b + batch_size);
    for (size_t r = b; r < end; ++r) {
      const std::string content = rows[r]["content"].get<std::string>();
      const size_t blank = content.find("#idiom#");
      if (blank == std::string::npos) throw Error("ChID item without #idiom#");
      const Encoding left = tokenizer.tokenize(std::string_view(content).substr(0, blank));
      const Encoding right = tokenizer.tokenize(std::string_view(content).substr(blank + 7));
      const int64_t room = 128 - 2 - 4, nl_all = static_cast<int64_t>(left.size()),
                    nr_all = static_cast<int64_t>(right.size());
      const int64_t nl = std::min(nl_all, std::max(room / 2, room - nr_all));
      const int64_t nr = std::min(nr_all, room - nl);
      std::vector<int32_t> ids{tokenizer.cls_id()};
      ids.insert(ids.end(), left.ids.end() - nl, left.ids.end());
      for (int k = 0; k < 4; ++k) {
        request.rows.push_back(request.batch.num_tokens() + static_cast<int64_t>(ids.size()));
        ids.push_back(tokenizer.mask_id());
      }
      ids.insert(ids.end(), right.ids.begin(), right.ids.begin() + nr);
      ids.push_back(tokenizer.sep_id());
      request.batch.add(ids);
    }
    const std::vector<float> logits = runner.run(std::move(request)).values;
    for (size_t r = b; r < end; ++r) {
      // log-softmax of the 4 mask rows
      std::vector<double> log_norm(4);
      const float* item = logits.data() + (r - b) * 4 * static_cast<size_t>(vocab);
      for (size_t k = 0; k < 4; ++k) {
        const float* row = item + k * static_cast<size_t>(vocab);
        const float max_logit = *std::max_element(row, row + vocab);
        double sum = 0;
        for (int64_t v = 0; v < vocab; ++v)
          sum += std::exp(static_cast<double>(row[v] - max_logit));
        log_norm[k] = max_logit + std::log(sum);
      }
      double best_score = -1e300;
      int64_t best = -1;
      const auto& candidates = rows[r]["candidates"];
      for (size_t c = 0; c < candidates.size(); ++c) {
        const detail::DecodedText chars = detail::decode_utf8(candidates[c].get<std::string>());
        if (chars.code_points.size() != 4) throw Error("ChID candidate is not 4 characters");
        double score = 0;
        bool unk = false;
        for (size_t k = 0; k < 4; ++k) {
          std::string ch;
          detail::append_utf8(ch, chars.code_points[k]);
          int32_t id = tokenizer.token_to_id(ch);
          if (id < 0) id = tokenizer.unk_id(), unk = true;
          score += item[k * static_cast<size_t>(vocab) + static_cast<size_t>(id)] - log_norm[k];
        }
        unk_candidates += unk;
        if (score > best_score) best_score = score, best = static_cast<int64_t>(c);
      }
      correct += best == rows[r]["answer"].get<int64_t>();
    }
  }
  std::printf("ChID test_public: accuracy %.1f %% (%zu / %zu), %zu candidates with [UNK], %.1f s\n",
              100.0 * double(correct) / double(rows.size()), correct, rows.size(), unk_candidates,
              seconds_since(start));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::filesystem::path shared = "../shared";
    std::string model_path;
    size_t limit = SIZE_MAX;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--shared" && i + 1 < argc)
        shared = argv[++i];
      else if (a == "--model" && i + 1 < argc)
        model_path = argv[++i];
      else if (a == "--limit" && i + 1 < argc)
        limit = std::stoul(argv[++i]);
      else
        throw Error("usage: quality_fill_mask [--shared DIR] [--model M.tbw] [--limit N]");
    }
    if (model_path.empty()) {
      model_path =
          (std::filesystem::temp_directory_path() / "quality_fill_mask_demo-mlm.tbw").string();
      convert::convert_folder(shared / "models/demo-mlm", model_path, convert::ConvertOptions{});
    }
    const Model model(model_path);
    CpuRefBackend backend;
    DirectRunner runner(model, backend);
    masked_token_accuracy(runner, shared / "data/cluener2020/dev.json", limit);
    chid_accuracy(runner, shared / "data/fewclue_chid/test_public.json", limit);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quality_fill_mask: %s\n", e.what());
    return 1;
  }
  return 0;
}
