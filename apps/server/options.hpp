// tinybert-server's command line: models, address, threads, batching knobs and request limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../cli.hpp"
#include "metrics.hpp"
#include "redis_label_tier.hpp"
#include "tinybert/serving/service.hpp"

namespace tinybert::server {

struct ServerOptions {
  std::vector<ModelSpec> models;
  std::string host = "127.0.0.1";
  int port = 8080;        // 0: any free port (see port_file)
  std::string port_file;  // the port actually bound is written here once listening
  int threads = 64;       // workers: task requests handled at once (each waits for its batch)
  int64_t read_timeout_ms = 10000;       // a whole request, from its first byte
  int64_t keep_alive_timeout_ms = 5000;  // an idle connection
  std::string backend = default_backend();
  bool batching = true;
  int64_t max_batch_tokens = 8192;
  int64_t max_wait_us = 2000;
  size_t queue_size = 1024;
  int64_t request_timeout_ms = 30000;
  size_t label_cache_size = 4096;
  std::optional<RedisAddress> label_cache_redis;  // the shared second tier (redis://host:port/db)
  int64_t label_cache_ttl_s = 7 * 24 * 3600;
  int64_t label_cache_redis_timeout_ms = 5;
  std::string cors_origin;  // empty: no CORS headers
  RequestLimits limits;
  std::optional<std::string> fallback_backend;  // unset: the Service's default
  BreakerOptions breaker;
};

inline const char* kServerUsage =
    R"(usage: tinybert-server --model NAME=PATH.tbw [--model ...] [options]

The first model of each kind is the default of its tasks: an encoder (bge) for classify and
embeddings, a masked_lm for fill-mask, a uie for extract, an NLI sequence_classification model
for classify when no encoder is given. The web page is at http://HOST:PORT/ (API: docs/api.md).

  --host H                 address to listen on (default 127.0.0.1)
  --port P                 port (default 8080; 0 = any free port)
  --port-file F            write the bound port to F once listening
  --threads N              workers: task requests handled at once, each waiting for its
                           forward pass (default 64); connections are not threads: one I/O
                           thread serves them all
  --read-timeout-ms N      deadline of reading a whole request, headers and body, from its
                           first byte (default 10000; 408 when passed)
  --keep-alive-timeout-ms N
                           an idle connection is closed after this (default 5000)
  --backend B              ref | f32 | bf16 | int8 (default f32 with oneDNN); in a CUDA build
                           also cuda-f16 | cuda-bf16 | cuda-int8 (on the CPU when no GPU works)
  --max-batch-tokens N     token budget of one merged forward pass (default 8192)
  --max-wait-ms X          how long the oldest waiting pass may wait for company (default 2)
  --no-batching            run every forward pass alone (for comparison)
  --queue-size N           waiting passes per model before 503 (default 1024)
  --request-timeout-ms N   deadline of a request (default 30000; 504 when passed)
  --label-cache N          cached label embeddings (default 4096)
  --label-cache-redis URL  a second label-cache tier shared by replicas: redis://host:port/db
  --label-cache-ttl-s N    expiry of its entries (default 604800, a week; 0: never)
  --label-cache-redis-timeout-ms N
                           connect and command timeout (default 5); Redis down or slow never
                           fails a request: the local tier or a forward pass answers
  --max-body-bytes N       (default 1048576)   --max-inputs N       (default 64)
  --max-chars N            (default 10000)     --max-labels N       (default 64)
  --max-schema-names N     (default 64)
  --cors-origin ORIGIN     send Access-Control-Allow-Origin: ORIGIN (default: no CORS)
  --fallback-backend B     CPU backend that takes a model's passes over while its backend keeps
                           failing (default int8 behind a cuda-* backend; none: off)
  --breaker-failures N     failed or late passes in a row that move a model (default 3)
  --pass-deadline-ms N     a slower pass counts as failed (default 10000)
  --breaker-cool-down-ms N time on the fallback before one probe pass (default 30000)
)";

inline ServerOptions parse_server_options(const std::vector<std::string>& raw) {
  using cli::parse_int;
  // --model may repeat: collect those first, parse_args keeps one value per name.
  ServerOptions o;
  std::vector<std::string> rest;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != "--model") {
      rest.push_back(raw[i]);
      continue;
    }
    if (i + 1 >= raw.size()) throw Error("--model needs NAME=PATH.tbw");
    const std::string& spec = raw[++i];
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw Error("--model needs NAME=PATH.tbw, got '" + spec + "'");
    ModelSpec m{spec.substr(0, eq), spec.substr(eq + 1)};
    for (const ModelSpec& other : o.models)
      if (other.name == m.name) throw Error("--model: the name '" + m.name + "' is given twice");
    o.models.push_back(m);
  }
  const std::vector<std::string> value_options = {"--host",
                                                  "--port",
                                                  "--port-file",
                                                  "--threads",
                                                  "--read-timeout-ms",
                                                  "--keep-alive-timeout-ms",
                                                  "--backend",
                                                  "--max-batch-tokens",
                                                  "--max-wait-ms",
                                                  "--queue-size",
                                                  "--request-timeout-ms",
                                                  "--label-cache",
                                                  "--max-body-bytes",
                                                  "--max-inputs",
                                                  "--max-chars",
                                                  "--max-labels",
                                                  "--max-schema-names",
                                                  "--cors-origin",
                                                  "--fallback-backend",
                                                  "--breaker-failures",
                                                  "--pass-deadline-ms",
                                                  "--breaker-cool-down-ms",
                                                  "--label-cache-redis",
                                                  "--label-cache-ttl-s",
                                                  "--label-cache-redis-timeout-ms"};
  const cli::Args args = cli::parse_args(rest, value_options, {"--no-batching"});
  if (!args.positional.empty())
    throw Error("unexpected argument '" + args.positional.front() + "'");
  if (o.models.empty()) throw Error("give at least one --model NAME=PATH.tbw");
  o.host = args.value("--host", o.host);
  o.port = static_cast<int>(parse_int(args.value("--port", "8080"), "--port", 0, 65535));
  o.port_file = args.value("--port-file");
  o.threads = static_cast<int>(parse_int(args.value("--threads", "64"), "--threads", 1, 4096));
  o.read_timeout_ms = parse_int(args.value("--read-timeout-ms", "10000"), "--read-timeout-ms", 1,
                                24LL * 3600 * 1000);
  o.keep_alive_timeout_ms = parse_int(args.value("--keep-alive-timeout-ms", "5000"),
                                      "--keep-alive-timeout-ms", 1, 24LL * 3600 * 1000);
  o.backend = args.value("--backend", o.backend);
  o.batching = !args.has("--no-batching");
  o.max_batch_tokens =
      parse_int(args.value("--max-batch-tokens", "8192"), "--max-batch-tokens", 1, 1 << 24);
  o.max_wait_us = static_cast<int64_t>(
      cli::parse_float(args.value("--max-wait-ms", "2"), "--max-wait-ms") * 1000);
  if (o.max_wait_us < 0 || o.max_wait_us > 10'000'000)
    throw Error("--max-wait-ms must be in 0..10000");
  o.queue_size = static_cast<size_t>(
      parse_int(args.value("--queue-size", "1024"), "--queue-size", 1, 1 << 20));
  o.request_timeout_ms = parse_int(args.value("--request-timeout-ms", "30000"),
                                   "--request-timeout-ms", 1, 24LL * 3600 * 1000);
  o.label_cache_size = static_cast<size_t>(
      parse_int(args.value("--label-cache", "4096"), "--label-cache", 1, 1 << 24));
  o.cors_origin = args.value("--cors-origin");
  if (const std::string url = args.value("--label-cache-redis"); !url.empty())
    o.label_cache_redis = parse_redis_url(url);  // a bad URL fails at start
  o.label_cache_ttl_s =
      parse_int(args.value("--label-cache-ttl-s", "604800"), "--label-cache-ttl-s", 0, 1LL << 31);
  o.label_cache_redis_timeout_ms = parse_int(args.value("--label-cache-redis-timeout-ms", "5"),
                                             "--label-cache-redis-timeout-ms", 1, 60000);
  if (args.has("--fallback-backend")) {
    const std::string fallback = args.value("--fallback-backend");
    o.fallback_backend = fallback == "none" ? "" : fallback;
  }
  o.breaker.failures_to_trip = static_cast<int>(
      parse_int(args.value("--breaker-failures", "3"), "--breaker-failures", 1, 1000));
  o.breaker.pass_deadline = std::chrono::milliseconds(parse_int(
      args.value("--pass-deadline-ms", "10000"), "--pass-deadline-ms", 1, 24LL * 3600 * 1000));
  o.breaker.cool_down =
      std::chrono::milliseconds(parse_int(args.value("--breaker-cool-down-ms", "30000"),
                                          "--breaker-cool-down-ms", 1, 24LL * 3600 * 1000));
  RequestLimits& l = o.limits;
  l.max_body_bytes = static_cast<size_t>(
      parse_int(args.value("--max-body-bytes", "1048576"), "--max-body-bytes", 64, 1LL << 30));
  l.max_inputs =
      static_cast<size_t>(parse_int(args.value("--max-inputs", "64"), "--max-inputs", 1, 1 << 20));
  l.max_chars =
      static_cast<size_t>(parse_int(args.value("--max-chars", "10000"), "--max-chars", 1, 1 << 24));
  l.max_labels =
      static_cast<size_t>(parse_int(args.value("--max-labels", "64"), "--max-labels", 1, 1 << 20));
  l.max_schema_names = static_cast<size_t>(
      parse_int(args.value("--max-schema-names", "64"), "--max-schema-names", 1, 1 << 16));
  return o;
}

// The Service's part of the options; its passes are recorded in `metrics`.
inline ServiceOptions service_options(const ServerOptions& o, Metrics& metrics) {
  ServiceOptions s;
  s.models = o.models;
  s.backend = o.backend;
  s.batching.enabled = o.batching;
  s.batching.max_batch_tokens = o.max_batch_tokens;
  s.batching.max_wait = std::chrono::microseconds(o.max_wait_us);
  s.batching.queue_capacity = o.queue_size;
  s.label_cache_size = o.label_cache_size;
  if (o.label_cache_redis) {
    RedisTierOptions redis;
    redis.address = *o.label_cache_redis;
    redis.ttl_seconds = o.label_cache_ttl_s;
    redis.timeout = std::chrono::milliseconds(o.label_cache_redis_timeout_ms);
    s.label_tier = std::make_shared<RedisLabelTier>(redis);
  }
  s.limits = o.limits;
  s.fallback_backend = o.fallback_backend;
  s.breaker = o.breaker;
  s.on_batch = [&metrics](const std::string& model, const BatchRecord& r) {
    metrics.record_batch(model, r);
  };
  return s;
}

}  // namespace tinybert::server
