/* tinybert's C API (C99): the engine inside programs written in C or in any language that binds
 * to C. Link with -ltinybert (pkg-config tinybert; CMake: find_package(tinybert), target
 * tinybert::c).
 *
 * Conventions
 * - Handles are opaque. Every call that can fail returns a tb_status; on failure the message is
 *   kept for the calling thread: tb_last_error() (text) and tb_last_error_json() (the HTTP API's
 *   error body, with input_index / position where known). A successful call does not clear it.
 * - Output buffers (strings, float arrays, token lists) are allocated by the library and freed
 *   with tb_free(); on failure no output is allocated and *out is set to NULL.
 * - Texts are UTF-8; invalid UTF-8 is refused with TB_INVALID_REQUEST, never read past.
 * - JSON calls take the body of the matching HTTP endpoint (docs/api.md: /v1/classify,
 *   /v1/fill-mask, /v1/extract) and give its response, without "latency_ms"; "model" names
 *   the model's file stem.
 *
 * Thread safety
 * - tb_model_load, tb_convert, tb_version, tb_last_error*, tb_free: safe from any thread.
 * - tb_model_info, tb_tokenize, tb_embed, tb_classify, tb_fill_mask, tb_extract: safe to call
 *   concurrently on one model from many threads; concurrent forward passes are merged into packed
 *   batches, so threads help throughput.
 * - tb_model_free: only when no other call on that model is running or will start.
 */
#ifndef TINYBERT_TINYBERT_H
#define TINYBERT_TINYBERT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TB_API
#elif defined(TINYBERT_C_BUILD)
#define TB_API __attribute__((visibility("default")))
#else
#define TB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Raised when a function is added (minor) or changed incompatibly (major, also the SONAME). */
#define TB_VERSION_MAJOR 0
#define TB_VERSION_MINOR 1

typedef enum tb_status {
  TB_OK = 0,
  TB_INVALID_ARGUMENT = 1, /* a NULL pointer or an unknown option value in the call itself */
  TB_MODEL_ERROR = 2,      /* a model file or folder that cannot be opened, read or converted */
  TB_INVALID_REQUEST = 3,  /* the request's content (HTTP 400): bad JSON, field, text, schema */
  TB_TOO_LARGE = 4,        /* over a request limit (HTTP 413) */
  TB_UNSUPPORTED = 5,      /* the model does not serve this task (HTTP 404) */
  TB_OVERLOADED = 6,       /* the model's queue is full (HTTP 503) */
  TB_INTERNAL = 7          /* a bug or resource exhaustion (HTTP 500) */
} tb_status;

typedef struct tb_model tb_model;

/* Tokens of one text (or pair) as the model reads them, in one block freed by tb_free(). */
typedef struct tb_tokens {
  size_t count;
  const int32_t* ids;
  const int32_t* type_ids;    /* 0 first text, 1 second text */
  const int64_t* char_begin;  /* code-point offsets into the text it came from; */
  const int64_t* char_end;    /* 0, 0 for [CLS] and [SEP] */
  const int8_t* sequence_ids; /* 0 first text, 1 second text, -1 added special token */
  const char* const* tokens;  /* vocabulary strings ("[CLS]", "中", "##ing") */
} tb_tokens;

/* "0.1.0": the library's version. */
TB_API const char* tb_version(void);

/* The message of this thread's last failed call ("" if none). Valid until its next failure. */
TB_API const char* tb_last_error(void);
/* The same failure as the HTTP API's error body:
 * {"error": {"status": 400, "type": "invalid_request", "message": ..., "input_index": 0}}. */
TB_API const char* tb_last_error_json(void);

/* Frees a buffer the library returned (NULL is ignored). */
TB_API void tb_free(void* buffer);

/* Opens a .tbw file (tinybert-convert's output; memory-mapped, not copied) for inference on
 * `backend`: "ref" (the plain fp32 reference), "f32", "bf16" or "int8" (oneDNN); NULL or "" is
 * the default ("f32" where oneDNN is built in, else "ref"); "cuda-f16", "cuda-bf16" or
 * "cuda-int8" load the CUDA plugin (docs/cuda.md) and run on the default CPU backend, with the
 * reason on stderr, when it or a GPU is missing. */
TB_API tb_status tb_model_load(const char* path, const char* backend, tb_model** out);
TB_API void tb_model_free(tb_model* model);

/* The model as JSON: the /v1/models entry (name, architecture, tasks, backend, hidden_size,
 * layers, max_length, file_bytes, load_ms) plus "dimension" (of tb_embed's vectors, 0 if the
 * model has no embedding). */
TB_API tb_status tb_model_info(tb_model* model, char** json_out);

/* Tokenizes `text` (and `text_pair` unless NULL) with [CLS] / [SEP] added, truncated longest-first
 * to `max_length` tokens (0: the model's maximum length). */
TB_API tb_status tb_tokenize(tb_model* model, const char* text, const char* text_pair,
                             size_t max_length, tb_tokens** out);

/* Sentence embeddings of `count` texts (an encoder model): *out holds count x *dimension floats,
 * row-major. normalize: -1 the model's default, 0 no, 1 unit length. */
TB_API tb_status tb_embed(tb_model* model, const char* const* texts, size_t count, int normalize,
                          float** out, size_t* dimension);

/* JSON in, JSON out: the bodies of POST /v1/classify, /v1/fill-mask and /v1/extract. */
TB_API tb_status tb_classify(tb_model* model, const char* request_json, char** response_json);
TB_API tb_status tb_fill_mask(tb_model* model, const char* request_json, char** response_json);
TB_API tb_status tb_extract(tb_model* model, const char* request_json, char** response_json);

/* tinybert-convert as a call: a HuggingFace / ModelScope / PaddleNLP model folder -> .tbw.
 * options_json (NULL for none): {"dtype": "auto|f32|f16|bf16|int8", "architecture": "...",
 * "weights": "path"}. report_json (may be NULL): what was converted, with notes. */
TB_API tb_status tb_convert(const char* model_dir, const char* out_path, const char* options_json,
                            char** report_json);

#ifdef __cplusplus
}
#endif

#endif /* TINYBERT_TINYBERT_H */
