// Service: loaded models and what each task does with a request body, independent of transport:
// JSON in, JSON out, ApiError for what the caller got wrong. tinybert-server puts HTTP in front
// of it; the C API (include/tinybert/tinybert.h) and the Python package call it directly, so all
// three take and give the same JSON.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tinybert/backend/select.hpp"
#include "tinybert/serving/batching_runner.hpp"
#include "tinybert/serving/circuit_breaker.hpp"
#include "tinybert/serving/request_body.hpp"
#include "tinybert/tasks/embed.hpp"
#include "tinybert/tasks/extract.hpp"
#include "tinybert/tasks/task_json.hpp"

namespace tinybert {

inline constexpr const char* kTasks[] = {"classify", "fill-mask", "extract", "embeddings"};

struct ModelSpec {
  std::string name, path;
};

struct ServiceOptions {
  std::vector<ModelSpec> models;
  std::string backend = default_backend();
  BatchingOptions batching;
  size_t label_cache_size = 4096;
  std::shared_ptr<RemoteLabelTier> label_tier;  // shared tier behind the local label cache
  RequestLimits limits;
  // Called on the scheduler thread after every forward pass of a model (metrics).
  std::function<void(const std::string& model, const BatchRecord&)> on_batch;
  // The backend that takes a model's passes over when its own keeps failing or passing the pass
  // deadline (CircuitBreakerRunner); "" for none. Unset: int8 behind a CUDA backend, else none.
  std::optional<std::string> fallback_backend;
  BreakerOptions breaker;
  // How a model's runner on a backend is made (tests put a fault-injecting runner here).
  std::function<std::unique_ptr<Runner>(const Model&, const std::string& backend)> runner_factory =
      [](const Model& model, const std::string& backend) { return make_runner(model, backend); };
};

inline std::string fallback_backend_of(const ServiceOptions& o) {
  if (o.fallback_backend) return *o.fallback_backend == o.backend ? "" : *o.fallback_backend;
  return o.backend.rfind("cuda-", 0) == 0 ? "int8" : "";
}

// One --model: the opened file, its batching runner, and the task objects it serves.
struct LoadedModel {
  std::string name, path;
  std::unique_ptr<Model> model;
  std::unique_ptr<BatchingRunner> runner;
  const CircuitBreakerRunner* breaker = nullptr;   // inside runner, when there is a fallback
  std::unique_ptr<ZeroShotClassifier> classifier;  // encoder (embedding) or NLI models
  std::unique_ptr<Extractor> extractor;            // uie models, default options
  std::unique_ptr<SiameseExtractor> siamese;       // siamese_uie models, default options
  std::vector<std::string> tasks;
  double load_ms = 0;
};

// Tasks a model can serve, from its architecture.
inline std::vector<std::string> tasks_of(const Model& model) {
  switch (model.config().architecture) {
    case Architecture::encoder:
      return {"classify", "embeddings"};
    case Architecture::masked_lm:
      return {"fill-mask"};
    case Architecture::uie:
    case Architecture::siamese_uie:
      return {"extract"};
    case Architecture::sequence_classification:
      // ModelScope's zero-shot checkpoints fix the entailment logit whatever their labels say
      if (model.config().modelscope_nli || find_entailment_index(model.config().labels) >= 0)
        return {"classify"};
      return {};
  }
  return {};
}

// A task's error as a 400; an InputError's location becomes input_index / position.
inline ApiError task_error(const Error& e) {
  ApiError error = bad_request(e.what());
  if (const auto* located = dynamic_cast<const InputError*>(&e)) {
    error.input_index = located->input_index();
    error.position = located->character();
  }
  return error;
}

// Runs task code, turning its input errors into 400s (Overloaded / DeadlineExceeded pass).
template <class Fn>
auto run_task(Fn&& fn) {
  try {
    return fn();
  } catch (const Overloaded&) {
    throw;
  } catch (const DeadlineExceeded&) {
    throw;
  } catch (const Error& e) {
    throw task_error(e);
  }
}

// The exception being handled as the ApiError a caller sees: its own status, 503 for an
// overloaded queue, 504 for a passed deadline, 400 for other engine errors, 500 for the rest.
inline ApiError current_api_error() {
  try {
    throw;
  } catch (const ApiError& e) {
    return e;
  } catch (const Overloaded& e) {
    return {503, "overloaded", e.what()};
  } catch (const DeadlineExceeded& e) {
    return {504, "timeout", e.what()};
  } catch (const Error& e) {
    return task_error(e);
  } catch (const std::exception& e) {
    return {500, "internal", e.what()};
  } catch (...) {
    return {500, "internal", "an unknown exception"};
  }
}

class Service {
 public:
  explicit Service(ServiceOptions options)
      : options_(std::move(options)),
        label_cache_(std::make_shared<LabelCache>(options_.label_cache_size)) {
    label_cache_->set_remote_tier(options_.label_tier);
    for (const ModelSpec& spec : options_.models) load(spec);
    for (const char* task : kTasks)
      for (const auto& m : models_)
        if (std::find(m->tasks.begin(), m->tasks.end(), task) != m->tasks.end() &&
            !defaults_.count(task)) {
          // classify prefers an embedding model over an NLI one: it is much cheaper per label
          if (std::string(task) == "classify" &&
              m->model->config().architecture != Architecture::encoder && has_encoder())
            continue;
          defaults_[task] = m.get();
        }
  }

  // Refuses new work, finishes what waits (SIGTERM).
  void stop() {
    for (auto& m : models_) m->runner->stop();
  }

  json classify(const std::string& body) {
    const RequestBody request(
        body,
        {"input", "labels", "multi_label", "template", "temperature", "threshold", "calibrate"},
        options_.limits);
    LoadedModel& m = model_for(request, "classify");
    const std::vector<std::string> texts = request.inputs();
    // a list, or one string split on "," and "，" as ModelScope's pipeline takes it
    const std::vector<std::string> labels =
        request.has("labels") && request.raw()["labels"].is_string()
            ? parse_label_list(*request.string("labels"))
            : request.string_list("labels", options_.limits.max_labels);
    if (labels.size() > options_.limits.max_labels)
      throw too_large("'labels' has " + std::to_string(labels.size()) + " items, the limit is " +
                      std::to_string(options_.limits.max_labels));
    ClassifyOptions o;
    // "template": one string, or a list of them (a template ensemble, echoed back as a list)
    if (request.has("template") && request.raw()["template"].is_array())
      o.label_templates = request.string_list("template", kMaxLabelTemplates);
    else if (request.has("template") && !request.raw()["template"].is_string())
      throw bad_request(std::string("'template' must be a string or a list of strings, found ") +
                        request.raw()["template"].type_name());
    else
      o.label_template = request.string("template");
    o.calibrate = request.boolean("calibrate").value_or(false);
    o.multi_label = request.boolean("multi_label").value_or(false);
    if (auto t = request.number("temperature", 1e-4, 100)) o.temperature = static_cast<float>(*t);
    if (auto t = request.number("threshold", -1, 1)) o.threshold = static_cast<float>(*t);
    o.max_labels = options_.limits.max_labels;
    const auto results = run_task([&] { return m.classifier->classify(texts, labels, o); });
    return classify_response(m.name, *m.classifier, texts, results, o);
  }

  json fill_mask(const std::string& body) {
    const RequestBody request(body, {"input", "top_k", "attribution", "joint"}, options_.limits);
    LoadedModel& m = model_for(request, "fill-mask");
    const std::vector<std::string> texts = request.inputs();
    FillMaskOptions o;
    o.top_k = request.integer("top_k", 1, 50).value_or(5);
    o.attribution = request.integer("attribution", 0, 64).value_or(0);
    o.joint = request.boolean("joint").value_or(false);
    const auto results = run_task([&] { return tinybert::fill_mask(*m.runner, texts, o); });
    return {{"model", m.name}, {"results", fill_mask_results(texts, results, o)}};
  }

  json extract(const std::string& body) {
    const RequestBody request(body, {"input", "schema", "threshold", "format"}, options_.limits);
    LoadedModel& m = model_for(request, "extract");
    const std::vector<std::string> texts = request.inputs();
    if (!request.has("schema"))
      throw bad_request("missing field 'schema' (a name, a list or an object)");
    SchemaLimits limits;
    limits.max_nodes = options_.limits.max_schema_names;
    const Schema schema = run_task([&] {
      try {
        return parse_schema(request.ordered("schema", 4 * limits.max_nodes), limits);
      } catch (const SchemaTooLarge& e) {
        throw too_large(e.what());
      }
    });
    const ExtractFormat format =
        run_task([&] { return parse_extract_format(request.string("format").value_or("uie")); });
    if (m.siamese) {
      // SiameseUIE compares raw logits with its threshold (ModelScope's 0.5)
      std::unique_ptr<SiameseExtractor> custom;
      if (auto threshold = request.number("threshold", -1e4, 1e4)) {
        SiameseOptions o;
        o.threshold = static_cast<float>(*threshold);
        custom = std::make_unique<SiameseExtractor>(*m.runner, o);
      }
      const SiameseExtractor& extractor = custom ? *custom : *m.siamese;
      const auto results = run_task([&] { return extractor.run(texts, schema); });
      return {{"model", m.name},
              {"format", format == ExtractFormat::uie ? "uie" : "modelscope"},
              {"results", to_json(results, format)}};
    }
    if (format != ExtractFormat::uie)
      throw bad_request("'format': \"modelscope\" is for SiameseUIE models; model '" + m.name +
                        "' is a UIE model");
    std::unique_ptr<Extractor> custom;
    if (auto threshold = request.number("threshold", 0, 1)) {
      if (*threshold <= 0 || *threshold >= 1) throw bad_request("'threshold' must be in (0, 1)");
      ExtractOptions o;
      o.threshold = static_cast<float>(*threshold);
      custom = std::make_unique<Extractor>(*m.runner, o);
    }
    const Extractor& extractor = custom ? *custom : *m.extractor;
    const auto results = run_task([&] { return extractor.run(texts, schema); });
    return {{"model", m.name}, {"format", "uie"}, {"results", to_json(results)}};
  }

  json embeddings(const std::string& body) {
    const RequestBody request(body, {"input", "normalize"}, options_.limits);
    LoadedModel& m = model_for(request, "embeddings");
    const std::vector<std::string> texts = request.inputs();
    EmbedOptions o;
    o.normalize = request.boolean("normalize");
    int64_t tokens = 0;
    const auto vectors = run_task([&] {
      Batch batch = encode_texts(*m.model, texts);
      tokens = batch.num_tokens();  // usage: what the model read, after truncation
      return embed_batch(*m.runner, std::move(batch), o);
    });
    json data = json::array();
    for (size_t i = 0; i < vectors.size(); ++i)
      data.push_back(json{{"object", "embedding"}, {"index", i}, {"embedding", vectors[i]}});
    return {{"model", m.name},
            {"object", "list"},
            {"data", data},
            {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
  }

  json models() const {
    json list = json::array();
    for (const auto& m : models_) {
      const ModelConfig& c = m->model->config();
      json default_for = json::array();
      for (const auto& [task, model] : defaults_)
        if (model == m.get()) default_for.push_back(task);
      const std::string attention = m->runner->attention_kernel();
      list.push_back({{"name", m->name},
                      {"path", m->path},
                      {"architecture", architecture_name(c.architecture)},
                      {"tasks", m->tasks},
                      {"default_for", default_for},
                      {"backend", options_.backend},
                      // what computes (f32 where the CPU lacks bf16) and why, or the int8 path
                      {"computes_in", m->runner->backend_name()},
                      {"backend_note", m->runner->backend_note()},
                      {"attention", attention.empty() ? json(nullptr) : json(attention)},
                      {"hidden_size", c.hidden_size},
                      {"layers", c.num_layers},
                      {"max_length", m->model->max_length()},
                      {"file_bytes", m->model->file().file_bytes()},
                      {"load_ms", m->load_ms}});
    }
    json tasks = json::object();
    for (const char* task : kTasks)
      tasks[task] = defaults_.count(task) ? json(defaults_.at(task)->name) : json(nullptr);
    return {{"models", list}, {"tasks", tasks}};
  }

  const ServiceOptions& options() const { return options_; }
  std::vector<std::pair<std::string, size_t>> queue_depths() const {
    std::vector<std::pair<std::string, size_t>> depths;
    for (const auto& m : models_) depths.emplace_back(m->name, m->runner->queue_depth());
    return depths;
  }
  LabelCacheStats label_cache_stats() const { return label_cache_->stats(); }

  // Per model: its circuit breaker (if it has a fallback) and accelerator memory (if any).
  struct ModelHealth {
    std::string name;
    std::optional<BreakerStatus> breaker;
    std::optional<DeviceMemory> device_memory;
  };
  std::vector<ModelHealth> model_health() const {
    std::vector<ModelHealth> out;
    for (const auto& m : models_) {
      ModelHealth h{m->name, std::nullopt, m->runner->device_memory()};
      if (m->breaker) h.breaker = m->breaker->status();
      out.push_back(std::move(h));
    }
    return out;
  }
  // "ready", or "degraded" with why while any model serves from its fallback.
  json health() const {
    json degraded = json::array();
    for (const ModelHealth& h : model_health())
      if (h.breaker && h.breaker->state != BreakerState::closed)
        degraded.push_back({{"model", h.name},
                            {"backend", h.breaker->primary},
                            {"serving_on", h.breaker->fallback},
                            {"state", breaker_state_name(h.breaker->state)},
                            {"reason", h.breaker->reason}});
    json out = {{"status", degraded.empty() ? "ready" : "degraded"}};
    if (!degraded.empty()) out["degraded"] = degraded;
    return out;
  }
  // The model of a single-model service (the C API's handle).
  const Model& only_model() const {
    if (models_.size() != 1)
      throw Error("the service holds " + std::to_string(models_.size()) + " models");
    return *models_.front()->model;
  }
  Runner& only_runner() {
    only_model();
    return *models_.front()->runner;
  }

 private:
  bool has_encoder() const {
    for (const auto& m : models_)
      if (m->model->config().architecture == Architecture::encoder) return true;
    return false;
  }

  void load(const ModelSpec& spec) {
    const auto started = SteadyClock::now();
    auto m = std::make_unique<LoadedModel>();
    m->name = spec.name;
    m->path = spec.path;
    try {
      m->model = std::make_unique<Model>(spec.path);
    } catch (const Error& e) {
      throw Error("model '" + spec.name + "': " + e.what());  // the message names the file
    }
    m->tasks = tasks_of(*m->model);
    if (m->tasks.empty())
      throw Error("model '" + spec.name + "': a " +
                  architecture_name(m->model->config().architecture) +
                  " model without an entailment label serves no task");
    m->runner = std::make_unique<BatchingRunner>(guarded_runner(*m), options_.batching,
                                                 [this, name = spec.name](const BatchRecord& r) {
                                                   if (options_.on_batch)
                                                     options_.on_batch(name, r);
                                                 });
    const Architecture a = m->model->config().architecture;
    if (a == Architecture::encoder || a == Architecture::sequence_classification)
      m->classifier = std::make_unique<ZeroShotClassifier>(*m->runner, label_cache_);
    if (a == Architecture::uie) m->extractor = std::make_unique<Extractor>(*m->runner);
    if (a == Architecture::siamese_uie) m->siamese = std::make_unique<SiameseExtractor>(*m->runner);
    warm_up(*m);
    m->load_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - started).count();
    models_.push_back(std::move(m));
  }

  // The model's runner on the service's backend, behind a circuit breaker when it has a fallback.
  std::unique_ptr<Runner> guarded_runner(LoadedModel& m) const {
    // weights are prepared (oneDNN reorders, OpenMP) on the thread that will run the passes
    std::unique_ptr<Runner> primary = ComputeThread::instance().run(
        [&] { return options_.runner_factory(*m.model, options_.backend); });
    // the log says what the CPU made of the backend asked for (bf16 as f32, the int8 path)
    if (const std::string note = primary->backend_note(); !note.empty())
      std::cerr << "tinybert: model '" << m.name << "': " << note << std::endl;
    const std::string fallback = fallback_backend_of(options_);
    if (fallback.empty()) return primary;
    auto breaker = std::make_unique<CircuitBreakerRunner>(
        std::move(primary),
        [factory = options_.runner_factory, &model = *m.model, fallback] {
          return factory(model, fallback);
        },
        fallback, options_.breaker,
        [name = m.name](const std::string& line) {
          std::cerr << "tinybert: model '" << name << "': " << line << std::endl;
        });
    m.breaker = breaker.get();
    return breaker;
  }

  // One small forward pass, so the first request does not pay for first-touch page faults
  // and oneDNN's kernel generation.
  static void warm_up(LoadedModel& m) {
    const Tokenizer& tokenizer = m.model->tokenizer();
    const Encoding e = tokenizer.encode("预热", static_cast<size_t>(m.model->max_length()));
    ForwardRequest request;
    request.batch.add(e.ids, e.type_ids);
    switch (m.model->config().architecture) {
      case Architecture::encoder:
        request.head = pooled_head(*m.model);
        break;
      case Architecture::sequence_classification:
        request.head.kind = HeadKind::classifier_logits;
        break;
      case Architecture::masked_lm:
        request.head.kind = HeadKind::mlm_logits;
        request.rows = {1};
        break;
      case Architecture::uie:
        request.head.kind = HeadKind::uie_spans;
        break;
      case Architecture::siamese_uie:
        request.head.kind = HeadKind::siamese_text_states;
        break;
    }
    m.runner->run(std::move(request));
  }

  LoadedModel& model_for(const RequestBody& request, const std::string& task) {
    if (auto name = request.string("model")) {
      for (auto& m : models_) {
        if (m->name != *name) continue;
        if (std::find(m->tasks.begin(), m->tasks.end(), task) == m->tasks.end())
          throw bad_request("model '" + *name + "' (" +
                            architecture_name(m->model->config().architecture) +
                            ") does not serve " + task);
        return *m;
      }
      throw ApiError(404, "not_found", "unknown model '" + *name + "'");
    }
    auto it = defaults_.find(task);
    if (it == defaults_.end()) {
      std::string message = "no model serves " + task + " here";
      if (models_.size() == 1) {  // e.g. the C API's one model: say what it is
        const LoadedModel& only = *models_[0];
        message += ": '" + only.name + "' is a " +
                   architecture_name(only.model->config().architecture) + " model (";
        for (size_t i = 0; i < only.tasks.size(); ++i) message += (i ? ", " : "") + only.tasks[i];
        message += ")";
      }
      throw ApiError(404, "not_found", message);
    }
    return *it->second;
  }

  const ServiceOptions options_;
  std::shared_ptr<LabelCache> label_cache_;
  std::vector<std::unique_ptr<LoadedModel>> models_;
  std::map<std::string, LoadedModel*> defaults_;
};

}  // namespace tinybert
