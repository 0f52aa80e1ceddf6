// Batch: sequences of different lengths packed one after another, no padding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tinybert/error.hpp"

namespace tinybert {

// tokens[num_tokens] with cu_seqlens[num_sequences + 1]: sequence s owns tokens
// cu_seqlens[s] .. cu_seqlens[s+1]-1. Token-wise ops run on all tokens at once; only attention
// looks at the boundaries. Position ids count from position_offsets[s] in sequence s: 0, except
// where a model continues positions from another sequence (SiameseUIE's hints follow the text).
struct Batch {
  std::vector<int32_t> input_ids, token_type_ids, task_type_ids;
  std::vector<int32_t> cu_seqlens{0};
  std::vector<int32_t> position_offsets;  // per sequence

  // type/task ids may be empty (all zeros).
  void add(std::span<const int32_t> ids, std::span<const int32_t> type_ids = {},
           std::span<const int32_t> task_ids = {}, int32_t position_offset = 0) {
    if (ids.empty()) throw Error("batch: empty sequence");
    if (!type_ids.empty() && type_ids.size() != ids.size())
      throw Error("batch: " + std::to_string(type_ids.size()) + " token type ids for " +
                  std::to_string(ids.size()) + " tokens");
    if (!task_ids.empty() && task_ids.size() != ids.size())
      throw Error("batch: " + std::to_string(task_ids.size()) + " task type ids for " +
                  std::to_string(ids.size()) + " tokens");
    input_ids.insert(input_ids.end(), ids.begin(), ids.end());
    if (type_ids.empty())
      token_type_ids.resize(input_ids.size(), 0);
    else
      token_type_ids.insert(token_type_ids.end(), type_ids.begin(), type_ids.end());
    if (task_ids.empty())
      task_type_ids.resize(input_ids.size(), 0);
    else
      task_type_ids.insert(task_type_ids.end(), task_ids.begin(), task_ids.end());
    cu_seqlens.push_back(static_cast<int32_t>(input_ids.size()));
    position_offsets.push_back(position_offset);
  }

  int64_t num_sequences() const { return static_cast<int64_t>(cu_seqlens.size()) - 1; }
  int64_t num_tokens() const { return static_cast<int64_t>(input_ids.size()); }
  int64_t seq_begin(int64_t s) const { return cu_seqlens[s]; }
  int64_t seq_len(int64_t s) const { return cu_seqlens[s + 1] - cu_seqlens[s]; }
  // The position id of token `pos` of sequence s.
  int64_t position(int64_t s, int64_t pos) const { return position_offsets[s] + pos; }
  int64_t max_seq_len() const {
    int64_t longest = 0;
    for (int64_t s = 0; s < num_sequences(); ++s) longest = std::max(longest, seq_len(s));
    return longest;
  }
  void clear() {
    input_ids.clear();
    token_type_ids.clear();
    task_type_ids.clear();
    cu_seqlens.assign(1, 0);
    position_offsets.clear();
  }
};

}  // namespace tinybert
