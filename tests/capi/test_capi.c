/* The C API as a C99 program uses it: every function, its errors, and one model shared by
 * threads. Run by CTest (and, in the sanitizer build, under ASan + LeakSanitizer: every buffer
 * the library returns is freed here, so any leak is the library's).
 * usage: test_capi TINY_MODELS_DIR (tests/data/tiny) */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tinybert/tinybert.h"

static int failures = 0;

#define CHECK(condition)                                                                           \
  do {                                                                                             \
    if (!(condition)) {                                                                            \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, #condition, \
              tb_last_error());                                                                    \
      ++failures;                                                                                  \
    }                                                                                              \
  } while (0)

/* A call that must succeed; the message says why it did not. */
#define CHECK_OK(call) CHECK((call) == TB_OK)

static int contains(const char* haystack, const char* needle) {
  return haystack && strstr(haystack, needle) != NULL;
}

static char scratch[256];
static const char* tiny_dir;

/* Converts tests/data/tiny/NAME to SCRATCH/NAME.tbw and opens it on `backend`. */
static tb_model* convert_and_load(const char* name, const char* backend) {
  char source[512], target[512];
  char* report = NULL;
  tb_model* model = NULL;
  snprintf(source, sizeof source, "%s/%s", tiny_dir, name);
  snprintf(target, sizeof target, "%s/%s.tbw", scratch, name);
  CHECK_OK(tb_convert(source, target, "{\"dtype\": \"f32\"}", &report));
  CHECK(contains(report, "\"tensors\""));
  tb_free(report);
  CHECK_OK(tb_model_load(target, backend, &model));
  return model;
}

static void test_errors(void) {
  tb_model* model = (tb_model*)1;
  char* report = (char*)1;
  CHECK(strcmp(tb_version(), "0.1.0") == 0);
  CHECK(tb_model_load("/nonexistent/model.tbw", "ref", &model) == TB_MODEL_ERROR);
  CHECK(model == NULL);
  CHECK(contains(tb_last_error(), "/nonexistent/model.tbw"));
  CHECK(contains(tb_last_error_json(), "\"error\""));
  CHECK(tb_model_load("x.tbw", "fp64", &model) == TB_INVALID_ARGUMENT);
  CHECK(contains(tb_last_error(), "unknown backend 'fp64'"));
  CHECK(tb_model_load(NULL, "ref", &model) == TB_INVALID_ARGUMENT);
  CHECK(tb_model_load("x.tbw", "ref", NULL) == TB_INVALID_ARGUMENT);
  CHECK(tb_convert("/nonexistent", "/tmp/x.tbw", NULL, &report) == TB_MODEL_ERROR);
  CHECK(report == NULL);
  CHECK(tb_convert("/nonexistent", "/tmp/x.tbw", "{\"dtype\": \"int4\"}", NULL) ==
        TB_INVALID_ARGUMENT);
  CHECK(contains(tb_last_error(), "int4"));
  CHECK(tb_convert("/nonexistent", "/tmp/x.tbw", "{\"speed\": \"fast\"}", NULL) ==
        TB_INVALID_ARGUMENT);
  CHECK(tb_convert("/nonexistent", "/tmp/x.tbw", "{not json", NULL) == TB_INVALID_ARGUMENT);
  tb_free(NULL);
  tb_model_free(NULL);
}

static void test_tokenize(tb_model* model) {
  tb_tokens* tokens = NULL;
  /* vocab.txt: 北 113, 京 114, 的 104, 天 110, 气 111 (tests/data/tiny/README.md) */
  static const int32_t expected[] = {101, 113, 114, 104, 110, 111, 102};
  size_t i;
  CHECK_OK(tb_tokenize(model, "北京的天气", NULL, 0, &tokens));
  CHECK(tokens && tokens->count == 7);
  if (tokens && tokens->count == 7) {
    for (i = 0; i < 7; ++i) CHECK(tokens->ids[i] == expected[i]);
    CHECK(strcmp(tokens->tokens[0], "[CLS]") == 0 && strcmp(tokens->tokens[1], "北") == 0);
    CHECK(tokens->char_begin[2] == 1 && tokens->char_end[2] == 2);
    CHECK(tokens->sequence_ids[0] == -1 && tokens->sequence_ids[1] == 0);
  }
  tb_free(tokens);

  CHECK_OK(tb_tokenize(model, "北京", "天气", 0, &tokens));
  CHECK(tokens && tokens->count == 7 && tokens->type_ids[4] == 1 && tokens->type_ids[3] == 0);
  tb_free(tokens);

  CHECK_OK(tb_tokenize(model, "北京的天气", NULL, 4, &tokens)); /* truncated */
  CHECK(tokens && tokens->count == 4 && tokens->ids[3] == 102);
  tb_free(tokens);

  tokens = (tb_tokens*)1;
  CHECK(tb_tokenize(model, "ok \xff bad", NULL, 0, &tokens) == TB_INVALID_REQUEST);
  CHECK(tokens == NULL);
  CHECK(contains(tb_last_error(), "UTF-8"));
  CHECK(tb_tokenize(model, "北京", NULL, 1, &tokens) == TB_INVALID_REQUEST);
}

static float dot(const float* a, const float* b, size_t n) {
  float sum = 0;
  size_t i;
  for (i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

static void test_embed(tb_model* model) {
  const char* texts[] = {"北京的天气", "我是中国人", "the quick fox"};
  float *all = NULL, *one = NULL;
  size_t dim = 0, i;
  char* info = NULL;
  CHECK_OK(tb_model_info(model, &info));
  CHECK(contains(info, "\"architecture\":\"encoder\"") && contains(info, "\"dimension\":32"));
  CHECK(contains(info, "\"backend\":\"ref\""));
  tb_free(info);

  CHECK_OK(tb_embed(model, texts, 3, 1, &all, &dim));
  CHECK(dim == 32);
  if (all) {
    for (i = 0; i < 3; ++i) CHECK(fabsf(dot(all + i * 32, all + i * 32, 32) - 1.0f) < 1e-5f);
    /* each text alone gives its row of the batch */
    for (i = 0; i < 3; ++i) {
      size_t j;
      CHECK_OK(tb_embed(model, texts + i, 1, 1, &one, &dim));
      for (j = 0; one && j < 32; ++j) CHECK(fabsf(one[j] - all[i * 32 + j]) < 1e-5f);
      tb_free(one);
      one = NULL;
    }
  }
  tb_free(all);

  CHECK(tb_embed(model, texts, 0, 1, &all, &dim) == TB_INVALID_ARGUMENT);
  CHECK(tb_embed(model, texts, 1, 2, &all, &dim) == TB_INVALID_ARGUMENT);
  {
    const char* with_null[] = {"ok", NULL};
    CHECK(tb_embed(model, with_null, 2, 1, &all, &dim) == TB_INVALID_ARGUMENT);
    CHECK(contains(tb_last_error(), "texts[1]"));
  }
  {
    const char* bad[] = {"fine", "not \xc3 fine"};
    CHECK(tb_embed(model, bad, 2, 1, &all, &dim) == TB_INVALID_REQUEST);
    CHECK(all == NULL);
    CHECK(contains(tb_last_error_json(), "\"input_index\":1"));
  }
}

static void test_json_calls(tb_model* encoder, tb_model* mlm, tb_model* uie) {
  char* response = NULL;
  const char* classify = "{\"input\": \"北京的天气\", \"labels\": [\"天气\", \"人\"]}";
  const char* extract =
      "{\"input\": [\"北京的天气\", \"我是中国人\"], "
      "\"schema\": [\"天气\"]}";
  CHECK_OK(tb_classify(encoder, classify, &response));
  CHECK(contains(response, "\"results\"") && contains(response, "\"mode\":\"embedding\""));
  CHECK(!contains(response, "latency_ms"));
  tb_free(response);

  CHECK(tb_classify(encoder, "{\"input\": ", &response) == TB_INVALID_REQUEST);
  CHECK(response == NULL);
  CHECK(contains(tb_last_error_json(), "\"invalid_json\""));
  CHECK(tb_classify(encoder, "{\"input\": \"x\", \"labels\": [\"a\"], \"top-k\": 1}", &response) ==
        TB_INVALID_REQUEST);
  CHECK(contains(tb_last_error(), "unknown field 'top-k'"));
  CHECK(tb_fill_mask(encoder, "{\"input\": \"北[MASK]\"}", &response) == TB_UNSUPPORTED);
  CHECK(tb_classify(NULL, "{}", &response) == TB_INVALID_ARGUMENT);

  CHECK_OK(tb_fill_mask(mlm, "{\"input\": \"北京[MASK]天气\", \"top_k\": 3}", &response));
  CHECK(contains(response, "\"results\"") && contains(response, "\"probability\""));
  tb_free(response);
  CHECK(tb_fill_mask(mlm, "{\"input\": \"no mask here\"}", &response) == TB_INVALID_REQUEST);
  CHECK(contains(tb_last_error(), "[MASK]"));
  {
    float* vectors = NULL;
    size_t dim = 0;
    const char* text = "x";
    CHECK(tb_embed(mlm, &text, 1, -1, &vectors, &dim) == TB_UNSUPPORTED);
  }

  CHECK_OK(tb_extract(uie, extract, &response));
  CHECK(contains(response, "\"format\":\"uie\"") && contains(response, "\"results\":["));
  tb_free(response);
  CHECK(tb_extract(uie, "{\"input\": \"北京\", \"schema\": 7}", &response) == TB_INVALID_REQUEST);
}

/* Threads share one model: each embeds the same texts and must get the serial result. */
struct thread_work {
  tb_model* model;
  const float* expected;
  int mismatches;
};

static void* embed_repeatedly(void* arg) {
  struct thread_work* work = (struct thread_work*)arg;
  const char* texts[] = {"北京的天气", "我是中国人", "the quick fox"};
  int round;
  for (round = 0; round < 20; ++round) {
    float* out = NULL;
    size_t dim = 0, j;
    if (tb_embed(work->model, texts, 3, 1, &out, &dim) != TB_OK) {
      ++work->mismatches;
      continue;
    }
    for (j = 0; j < 3 * dim; ++j)
      if (fabsf(out[j] - work->expected[j]) > 1e-5f) ++work->mismatches;
    tb_free(out);
  }
  /* this thread's failure stays with this thread */
  if (tb_model_load("/nonexistent.tbw", "ref", NULL) != TB_INVALID_ARGUMENT) ++work->mismatches;
  return NULL;
}

static void test_threads(tb_model* model) {
  const char* texts[] = {"北京的天气", "我是中国人", "the quick fox"};
  pthread_t threads[8];
  struct thread_work work[8];
  float* expected = NULL;
  size_t dim = 0;
  int i;
  tb_model* ok = NULL;
  CHECK_OK(tb_embed(model, texts, 3, 1, &expected, &dim));
  CHECK(tb_model_load("/nonexistent-but-valid-args.tbw", NULL, &ok) == TB_MODEL_ERROR);
  for (i = 0; i < 8; ++i) {
    work[i].model = model;
    work[i].expected = expected;
    work[i].mismatches = 0;
    CHECK(pthread_create(&threads[i], NULL, embed_repeatedly, &work[i]) == 0);
  }
  for (i = 0; i < 8; ++i) {
    pthread_join(threads[i], NULL);
    CHECK(work[i].mismatches == 0);
  }
  /* the other threads' failures did not replace this thread's message */
  CHECK(contains(tb_last_error(), "nonexistent-but-valid-args"));
  tb_free(expected);
}

static void remove_scratch(void) {
  char command[300];
  snprintf(command, sizeof command, "rm -rf '%s'", scratch);
  if (system(command) != 0) fprintf(stderr, "could not remove %s\n", scratch);
}

int main(int argc, char** argv) {
  tb_model *encoder, *mlm, *uie;
  if (argc != 2) {
    fprintf(stderr, "usage: test_capi TINY_MODELS_DIR\n");
    return 2;
  }
  tiny_dir = argv[1];
  snprintf(scratch, sizeof scratch, "%s/tinybert-capi-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(scratch)) {
    perror("mkdtemp");
    return 2;
  }
  test_errors();
  encoder = convert_and_load("tiny-bert", "ref");
  mlm = convert_and_load("tiny-mlm", "ref");
  uie = convert_and_load("tiny-uie", NULL); /* the default backend */
  if (encoder && mlm && uie) {
    test_tokenize(encoder);
    test_embed(encoder);
    test_json_calls(encoder, mlm, uie);
    test_threads(encoder);
  }
  tb_model_free(encoder);
  tb_model_free(mlm);
  tb_model_free(uie);
  remove_scratch();
  if (failures)
    fprintf(stderr, "test_capi: %d check(s) failed\n", failures);
  else
    printf("test_capi: all checks passed\n");
  return failures ? 1 : 0;
}
