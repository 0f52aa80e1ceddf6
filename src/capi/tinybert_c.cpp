// The C API (include/tinybert/tinybert.h) over the C++ engine: a tb_model is a Service holding one
// model, so the JSON calls take and give exactly what the HTTP server does. Every entry point
// catches everything: no C++ exception crosses into C.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "convert.hpp"
#include "tinybert/serving/service.hpp"
#include "tinybert/tasks/embed.hpp"
#include "tinybert/tinybert.h"

struct tb_model {
  std::unique_ptr<tinybert::Service> service;
};

namespace {

using nlohmann::json;
using tinybert::ApiError;

struct LastError {
  std::string message, body;
};
LastError& last_error() {
  thread_local LastError error;
  return error;
}

tb_status status_of(const ApiError& e) {
  switch (e.status) {
    case 400:
      return TB_INVALID_REQUEST;
    case 404:
      return TB_UNSUPPORTED;
    case 413:
      return TB_TOO_LARGE;
    case 503:
      return TB_OVERLOADED;
    default:
      return TB_INTERNAL;
  }
}

tb_status fail(tb_status status, const ApiError& e) {
  last_error() = {e.what(), e.body().dump(-1, ' ', false, json::error_handler_t::replace)};
  return status;
}
tb_status fail(const ApiError& e) { return fail(status_of(e), e); }
tb_status invalid_argument(const std::string& message) {
  return fail(TB_INVALID_ARGUMENT, ApiError(400, "invalid_argument", message));
}

// The exception being handled: an engine or request error as its status, anything else
// (allocation failure, a bug) as TB_INTERNAL.
tb_status fail_current() {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return fail(ApiError(500, "internal", "out of memory"));
  } catch (...) {
    return fail(tinybert::current_api_error());
  }
}

// A copy the caller frees with tb_free().
char* malloc_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) throw std::bad_alloc();
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Limits of one call: a library's caller is trusted more than an HTTP client, but a mistake
// (a whole corpus in one call) still gets a clear error instead of exhausting memory.
tinybert::RequestLimits library_limits() {
  tinybert::RequestLimits limits;
  limits.max_body_bytes = 64 << 20;
  limits.max_inputs = 1024;
  limits.max_chars = 100000;
  limits.max_labels = 256;
  limits.max_schema_names = 256;
  return limits;
}

bool known_backend(const std::string& name) {
  for (const char* known : {"ref", "f32", "bf16", "int8", "cuda-f16", "cuda-bf16", "cuda-int8"})
    if (name == known) return true;
  return false;
}

template <class Call>
tb_status json_call(tb_model* model, const char* request, char** response, Call call) {
  if (response) *response = nullptr;
  if (!model || !request || !response)
    return invalid_argument("model, request_json and response_json must not be NULL");
  try {
    *response = malloc_string(dump(call(*model->service, std::string(request))));
    return TB_OK;
  } catch (...) {
    return fail_current();
  }
}

// One malloc'd block: the tb_tokens header, then the arrays, then the token strings.
tb_tokens* pack_tokens(const tinybert::Encoding& e) {
  const size_t n = e.size();
  size_t text_bytes = 0;
  for (const auto& t : e.tokens) text_bytes += t.size() + 1;
  const auto align = [](size_t bytes) { return (bytes + 7) & ~size_t{7}; };
  const size_t ids = align(sizeof(tb_tokens)), type_ids = ids + align(n * sizeof(int32_t)),
               begins = type_ids + align(n * sizeof(int32_t)), ends = begins + n * sizeof(int64_t),
               pointers = ends + n * sizeof(int64_t), sequence_ids = pointers + n * sizeof(char*),
               strings = sequence_ids + align(n * sizeof(int8_t));
  char* block = static_cast<char*>(std::malloc(strings + text_bytes));
  if (!block) throw std::bad_alloc();
  auto* out = reinterpret_cast<tb_tokens*>(block);
  auto* id = reinterpret_cast<int32_t*>(block + ids);
  auto* type_id = reinterpret_cast<int32_t*>(block + type_ids);
  auto* begin = reinterpret_cast<int64_t*>(block + begins);
  auto* end = reinterpret_cast<int64_t*>(block + ends);
  auto* token = reinterpret_cast<const char**>(block + pointers);
  auto* sequence_id = reinterpret_cast<int8_t*>(block + sequence_ids);
  char* text = block + strings;
  for (size_t i = 0; i < n; ++i) {
    id[i] = e.ids[i];
    type_id[i] = e.type_ids[i];
    begin[i] = e.offsets[i].start;
    end[i] = e.offsets[i].end;
    sequence_id[i] = e.sequence_ids[i];
    std::memcpy(text, e.tokens[i].c_str(), e.tokens[i].size() + 1);
    token[i] = text;
    text += e.tokens[i].size() + 1;
  }
  *out = {n, id, type_id, begin, end, sequence_id, token};
  return out;
}

}  // namespace

extern "C" {

const char* tb_version(void) { return "0.1.0"; }
const char* tb_last_error(void) { return last_error().message.c_str(); }
const char* tb_last_error_json(void) { return last_error().body.c_str(); }
void tb_free(void* buffer) { std::free(buffer); }

tb_status tb_model_load(const char* path, const char* backend, tb_model** out) {
  if (out) *out = nullptr;
  if (!path || !out) return invalid_argument("path and out must not be NULL");
  tinybert::ServiceOptions options;
  if (backend && *backend) options.backend = backend;
  if (!known_backend(options.backend))
    return invalid_argument("unknown backend '" + options.backend +
                            "' (ref, f32, bf16, int8, cuda-f16, cuda-bf16 or cuda-int8)");
  options.models = {{std::filesystem::path(path).stem().string(), path}};
  options.limits = library_limits();
  // A lone call runs at once; calls from other threads that arrive meanwhile share the next pass.
  options.batching.max_wait = std::chrono::microseconds(0);
  try {
    auto model = std::make_unique<tb_model>();
    model->service = std::make_unique<tinybert::Service>(std::move(options));
    *out = model.release();
    return TB_OK;
  } catch (const std::bad_alloc&) {
    return fail_current();
  } catch (const std::exception& e) {
    return fail(TB_MODEL_ERROR, ApiError(400, "model_error", e.what()));
  }
}

void tb_model_free(tb_model* model) { delete model; }

tb_status tb_model_info(tb_model* model, char** json_out) {
  if (json_out) *json_out = nullptr;
  if (!model || !json_out) return invalid_argument("model and json_out must not be NULL");
  try {
    json info = model->service->models()["models"][0];
    const tinybert::ModelConfig& c = model->service->only_model().config();
    info["dimension"] = c.architecture == tinybert::Architecture::encoder ? c.hidden_size : 0;
    *json_out = malloc_string(dump(info));
    return TB_OK;
  } catch (...) {
    return fail_current();
  }
}

tb_status tb_tokenize(tb_model* model, const char* text, const char* text_pair, size_t max_length,
                      tb_tokens** out) {
  if (out) *out = nullptr;
  if (!model || !text || !out) return invalid_argument("model, text and out must not be NULL");
  try {
    const tinybert::Model& m = model->service->only_model();
    const size_t limit = max_length ? max_length : static_cast<size_t>(m.max_length());
    const tinybert::Encoding e = text_pair ? m.tokenizer().encode_pair(text, text_pair, limit)
                                           : m.tokenizer().encode(text, limit);
    *out = pack_tokens(e);
    return TB_OK;
  } catch (...) {
    return fail_current();
  }
}

tb_status tb_embed(tb_model* model, const char* const* texts, size_t count, int normalize,
                   float** out, size_t* dimension) {
  if (out) *out = nullptr;
  if (!model || !texts || !out || !dimension)
    return invalid_argument("model, texts, out and dimension must not be NULL");
  if (count == 0) return invalid_argument("no texts to embed (count is 0)");
  if (normalize < -1 || normalize > 1)
    return invalid_argument("normalize must be -1 (the model's default), 0 or 1");
  try {
    const tinybert::Model& m = model->service->only_model();
    if (m.config().architecture != tinybert::Architecture::encoder)
      return fail(ApiError(404, "not_found",
                           std::string("embeddings need an encoder model; this one is ") +
                               tinybert::architecture_name(m.config().architecture)));
    std::vector<std::string> inputs;
    for (size_t i = 0; i < count; ++i) {
      if (!texts[i]) return invalid_argument("texts[" + std::to_string(i) + "] is NULL");
      inputs.emplace_back(texts[i]);
    }
    tinybert::EmbedOptions options;
    if (normalize >= 0) options.normalize = normalize == 1;
    const auto rows = tinybert::embed_batch(model->service->only_runner(),
                                            tinybert::encode_texts(m, inputs), options);
    const size_t dim = static_cast<size_t>(m.config().hidden_size);
    auto* buffer = static_cast<float*>(std::malloc(count * dim * sizeof(float)));
    if (!buffer) throw std::bad_alloc();
    for (size_t i = 0; i < count; ++i) std::memcpy(buffer + i * dim, rows[i].data(), dim * 4);
    *out = buffer;
    *dimension = dim;
    return TB_OK;
  } catch (...) {
    return fail_current();
  }
}

tb_status tb_classify(tb_model* model, const char* request_json, char** response_json) {
  return json_call(model, request_json, response_json,
                   [](tinybert::Service& s, const std::string& body) { return s.classify(body); });
}

tb_status tb_fill_mask(tb_model* model, const char* request_json, char** response_json) {
  return json_call(model, request_json, response_json,
                   [](tinybert::Service& s, const std::string& body) { return s.fill_mask(body); });
}

tb_status tb_extract(tb_model* model, const char* request_json, char** response_json) {
  return json_call(model, request_json, response_json,
                   [](tinybert::Service& s, const std::string& body) { return s.extract(body); });
}

tb_status tb_convert(const char* model_dir, const char* out_path, const char* options_json,
                     char** report_json) {
  if (report_json) *report_json = nullptr;
  if (!model_dir || !out_path) return invalid_argument("model_dir and out_path must not be NULL");
  tinybert::convert::ConvertOptions options;
  try {
    const json o = options_json ? json::parse(options_json) : json::object();
    if (!o.is_object()) return invalid_argument("options_json must be a JSON object");
    for (const auto& [key, value] : o.items()) {
      if (!value.is_string()) return invalid_argument("option '" + key + "' must be a string");
      const std::string v = value.get<std::string>();
      if (key == "dtype") {
        if (v != "auto" && v != "f32" && v != "f16" && v != "bf16" && v != "int8")
          return invalid_argument("dtype must be auto, f32, f16, bf16 or int8, got '" + v + "'");
        options.dtype = v;
      } else if (key == "architecture") {
        options.architecture = tinybert::parse_architecture(v);
      } else if (key == "weights") {
        options.weights = v;
      } else {
        return invalid_argument("unknown option '" + key + "' (dtype, architecture, weights)");
      }
    }
  } catch (const std::exception& e) {
    return invalid_argument(std::string("options_json: ") + e.what());
  }
  try {
    const auto report = tinybert::convert::convert_folder(model_dir, out_path, options);
    if (report_json) {
      const tinybert::ModelConfig& c = report.config;
      *report_json = malloc_string(dump({{"path", out_path},
                                         {"architecture", architecture_name(c.architecture)},
                                         {"layers", c.num_layers},
                                         {"hidden_size", c.hidden_size},
                                         {"tensors", report.tensors},
                                         {"bytes", report.bytes},
                                         {"dtype", report.dtype},
                                         {"source_format", report.source_format},
                                         {"weights", report.weights_path},
                                         {"notes", report.notes}}));
    }
    return TB_OK;
  } catch (const std::bad_alloc&) {
    return fail_current();
  } catch (const std::exception& e) {
    return fail(TB_MODEL_ERROR, ApiError(400, "model_error", e.what()));
  }
}

}  // extern "C"
