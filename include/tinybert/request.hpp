// ForwardRequest / ForwardResult: what a task asks of a model (one packed batch through the
// encoder and one head) and what comes back, and validate_request(), the one place where a
// request is checked against the model before any backend sees it. Backends trust what passed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tinybert/batch.hpp"
#include "tinybert/config.hpp"
#include "tinybert/error.hpp"

namespace tinybert {

enum class HeadKind {
  pooled,             // sentence vectors [sequences, hidden]
  classifier_logits,  // sequence classification logits [sequences, num_labels]
  mlm_logits,         // masked-LM logits [rows, vocab] for the requested token rows
  uie_spans,          // UIE start/end probabilities, [tokens] each
  // SiameseUIE, in two steps (tasks/siamese_uie.hpp): the text windows through the shared
  // layers once, [tokens, hidden]; then per (hint, window) pair the hint through the shared
  // layers, both through the cross layers, and head/tail logits on the window's tokens.
  siamese_text_states,
  siamese_logits,
};

inline const char* head_kind_name(HeadKind kind) {
  switch (kind) {
    case HeadKind::pooled:
      return "pooled";
    case HeadKind::classifier_logits:
      return "classifier_logits";
    case HeadKind::mlm_logits:
      return "mlm_logits";
    case HeadKind::uie_spans:
      return "uie_spans";
    case HeadKind::siamese_text_states:
      return "siamese_text_states";
    case HeadKind::siamese_logits:
      return "siamese_logits";
  }
  return "?";
}

// Which head, with its parameters. Two requests with equal heads can share one forward pass.
struct Head {
  HeadKind kind = HeadKind::pooled;
  Pooling pooling = Pooling::cls;  // pooled only
  bool normalize = false;          // pooled only
  bool operator==(const Head&) const = default;
};

struct ForwardRequest {
  Batch batch;  // packed sequences
  Head head;
  std::vector<int64_t> rows;      // mlm_logits: packed token rows (of this batch) to score
  bool record_attention = false;  // also return the last layer's attention probabilities
  // siamese_logits: `batch` holds the hints; text_states the windows' siamese_text_states result,
  // packed by text_cu_seqlens. Every hint is paired with every window, hint-major.
  std::vector<float> text_states;
  std::vector<int32_t> text_cu_seqlens;
};

struct ForwardResult {
  std::vector<float> values;  // pooled / classifier_logits / mlm_logits, row-major
  // uie_spans: per token of the batch. siamese_logits: head / tail logits, per hint the tokens
  // of its window in order.
  std::vector<float> start, end;
  // When recorded: for sequence s, head h, query i, key j at
  // attention[offset(s) + (h * len + i) * len + j], offset(s) = sum of heads * len^2 before s.
  std::vector<float> attention;
};

// Whether a model of this architecture has the head a request asks for.
inline bool has_head(const ModelConfig& config, HeadKind kind) {
  switch (kind) {
    case HeadKind::pooled:  // not SiameseUIE's: its layers mean something only as its two passes
      return config.architecture != Architecture::siamese_uie;
    case HeadKind::classifier_logits:
      return config.architecture == Architecture::sequence_classification;
    case HeadKind::mlm_logits:
      return config.architecture == Architecture::masked_lm;
    case HeadKind::uie_spans:
      return config.architecture == Architecture::uie;
    case HeadKind::siamese_text_states:
    case HeadKind::siamese_logits:
      return config.architecture == Architecture::siamese_uie;
  }
  return false;
}

// Checks everything a kernel would otherwise read out of bounds or compute nonsense from: the
// packing (cu_seqlens from 0 to the token count, no empty sequence, one type / task id per
// token), every id inside its embedding table, every sequence within the position table, every
// requested row inside the batch, and a head the model has. Throws Error saying what was found.
inline void validate_request(const ForwardRequest& request, const ModelConfig& config) {
  const Batch& batch = request.batch;
  const auto fail = [](const std::string& what) { throw Error("batch: " + what); };
  if (batch.num_sequences() < 1 || batch.cu_seqlens.front() != 0) fail("no sequences");
  const auto tokens = static_cast<size_t>(batch.num_tokens());
  if (static_cast<size_t>(batch.cu_seqlens.back()) != tokens)
    fail("cu_seqlens ends at " + std::to_string(batch.cu_seqlens.back()) + ", the batch has " +
         std::to_string(tokens) + " tokens");
  if (batch.token_type_ids.size() != tokens || batch.task_type_ids.size() != tokens)
    fail(std::to_string(batch.token_type_ids.size()) + " token type ids and " +
         std::to_string(batch.task_type_ids.size()) + " task type ids for " +
         std::to_string(tokens) + " tokens");
  if (batch.position_offsets.size() != static_cast<size_t>(batch.num_sequences()))
    fail(std::to_string(batch.position_offsets.size()) + " position offsets for " +
         std::to_string(batch.num_sequences()) + " sequences");
  for (int64_t s = 0; s < batch.num_sequences(); ++s) {
    if (batch.seq_len(s) < 1) fail("sequence " + std::to_string(s) + " is empty");
    if (batch.position_offsets[s] < 0 ||
        batch.position(s, batch.seq_len(s)) > config.max_position_embeddings)
      fail(
          "sequence " + std::to_string(s) + " has " + std::to_string(batch.seq_len(s)) + " tokens" +
          (batch.position_offsets[s] ? " from position " + std::to_string(batch.position_offsets[s])
                                     : "") +
          ", the model takes at most " + std::to_string(config.max_position_embeddings));
  }
  const auto check_ids = [&](const std::vector<int32_t>& ids, int64_t limit, const char* what) {
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= limit)
        fail(std::string(what) + " " + std::to_string(ids[i]) + " at token " + std::to_string(i) +
             " is outside 0.." + std::to_string(limit - 1));
  };
  check_ids(batch.input_ids, config.vocab_size, "token id");
  check_ids(batch.token_type_ids, config.type_vocab_size, "token type id");
  check_ids(batch.task_type_ids, std::max<int64_t>(config.task_type_vocab_size, 1), "task type id");
  for (int64_t row : request.rows)
    if (row < 0 || row >= batch.num_tokens())
      throw Error("row " + std::to_string(row) + " is outside the batch's " +
                  std::to_string(batch.num_tokens()) + " tokens");
  if (request.head.kind == HeadKind::siamese_logits) {
    const std::vector<int32_t>& cu = request.text_cu_seqlens;
    if (cu.size() < 2 || cu.front() != 0) throw Error("siamese_logits: no text windows");
    for (size_t w = 1; w < cu.size(); ++w)
      if (cu[w] <= cu[w - 1] || cu[w] - cu[w - 1] > config.max_position_embeddings)
        throw Error("siamese_logits: text window " + std::to_string(w - 1) + " has " +
                    std::to_string(cu[w] - cu[w - 1]) + " tokens (expected 1.." +
                    std::to_string(config.max_position_embeddings) + ")");
    if (request.text_states.size() !=
        static_cast<size_t>(cu.back()) * static_cast<size_t>(config.hidden_size))
      throw Error("siamese_logits: " + std::to_string(request.text_states.size()) +
                  " text state values for " + std::to_string(cu.back()) + " tokens of " +
                  std::to_string(config.hidden_size));
  } else if (!request.text_states.empty() || !request.text_cu_seqlens.empty()) {
    throw Error(std::string("text states are for the siamese_logits head, not ") +
                head_kind_name(request.head.kind));
  }
  if (request.record_attention && (request.head.kind == HeadKind::siamese_text_states ||
                                   request.head.kind == HeadKind::siamese_logits))
    throw Error("attention is not recorded for SiameseUIE's passes");
  if (!request.rows.empty() && request.head.kind != HeadKind::mlm_logits)
    throw Error(std::string("rows are for the mlm_logits head, not ") +
                head_kind_name(request.head.kind));
  if (!has_head(config, request.head.kind))
    throw Error(std::string("this ") + architecture_name(config.architecture) + " model has no " +
                head_kind_name(request.head.kind) + " head");
}

}  // namespace tinybert
