// tinybert-server: the three tasks and embeddings over HTTP (docs/api.md), with micro-batching
// across connections and the embedded web page at /.
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "metrics.hpp"
#include "openapi.hpp"
#include "options.hpp"
#include "web_assets.hpp"
// After Eigen (through service.hpp): Asio brings <resolv.h>-style headers whose macros break
// Eigen's headers.
#include "http_server.hpp"

namespace {

using namespace tinybert;
using namespace tinybert::server;

// The routes: what each path and method does, and the JSON errors of everything else.
class HttpFrontEnd {
 public:
  HttpFrontEnd(const ServerOptions& options, Service& service, Metrics& metrics)
      : options_(options),
        service_(service),
        metrics_(metrics),
        http_(
            http_options(options), [this](const HttpRequest& r) { return route(r); },
            [this](int status, const std::string& type, const std::string& message,
                   const std::string& path) {
              if (is_task_path(path)) metrics_.record_request(path, status, 0);
              return error_response(status, type, message);
            }) {
    tasks_ = {
        {"/v1/classify", [this](const std::string& body) { return service_.classify(body); }},
        {"/v1/fill-mask", [this](const std::string& body) { return service_.fill_mask(body); }},
        {"/v1/extract", [this](const std::string& body) { return service_.extract(body); }},
        {"/v1/embeddings", [this](const std::string& body) { return service_.embeddings(body); }},
    };
  }

  int bind() {
    try {
      return http_.bind();
    } catch (const std::exception& e) {
      throw Error("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " +
                  e.what());
    }
  }
  void serve() { http_.serve(); }
  HttpServer::Counts counts() const { return http_.counts(); }
  void drain() { http_.drain(); }

 private:
  using Task = std::function<json(const std::string&)>;

  static HttpServerOptions http_options(const ServerOptions& o) {
    HttpServerOptions h;
    h.host = o.host;
    h.port = o.port;
    h.workers = o.threads;
    h.max_body_bytes = o.limits.max_body_bytes;
    h.read_timeout = std::chrono::milliseconds(o.read_timeout_ms);
    h.keep_alive_timeout = std::chrono::milliseconds(o.keep_alive_timeout_ms);
    h.write_timeout = std::chrono::milliseconds(o.read_timeout_ms);
    return h;
  }

  static HttpResponse json_response(int status, const json& body) {
    HttpResponse res;
    res.status = status;
    res.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    if (status == 503) res.headers.emplace_back("Retry-After", "1");
    return res;
  }
  static HttpResponse error_response(int status, const std::string& type,
                                     const std::string& message) {
    return json_response(status, ApiError(status, type, message).body());
  }

  bool is_task_path(const std::string& path) const { return tasks_.count(path) > 0; }

  // Task endpoints run on a worker (they wait for their forward pass); everything else is
  // answered on the I/O thread at once (/health must answer while every worker waits).
  HttpRoute route(const HttpRequest& request) {
    const bool get = request.method == "GET" || request.method == "HEAD";
    const bool post = request.method == "POST";
    if (request.method == "OPTIONS" && !options_.cors_origin.empty())
      return immediate([this] { return with_cors(HttpResponse{204, "text/plain", "", {}}); });
    if (const auto task = tasks_.find(request.path); task != tasks_.end()) {
      if (!post)
        return immediate([this, path = request.path] {
          metrics_.record_request(path, 405, 0);
          return with_cors(error_response(405, "method_not_allowed", path + " takes POST"));
        });
      return HttpRoute{[this, task = task->second](const HttpRequest& r) {
                         return with_cors(run_task(r, task));
                       },
                       /*blocking=*/true};
    }
    std::function<HttpResponse()> answer = get_handler(request.path);
    if (!answer)
      return immediate([this, request] {
        return with_cors(
            error_response(404, "not_found", "no endpoint " + request.method + " " + request.path));
      });
    if (!get)
      return immediate([this, path = request.path] {
        return with_cors(error_response(405, "method_not_allowed", path + " takes GET"));
      });
    return immediate([this, answer = std::move(answer)] { return with_cors(answer()); });
  }

  static HttpRoute immediate(std::function<HttpResponse()> answer) {
    return HttpRoute{[answer = std::move(answer)](const HttpRequest&) { return answer(); }, false};
  }

  // The GET endpoints; null for an unknown path.
  std::function<HttpResponse()> get_handler(const std::string& path) {
    if (path == "/v1/models") return [this] { return json_response(200, service_.models()); };
    if (path == "/openapi.json") return [] { return json_response(200, openapi_document()); };
    if (path == "/metrics")
      return [this] {
        return HttpResponse{200,
                            "text/plain; version=0.0.4; charset=utf-8",
                            metrics_.render(service_.queue_depths(), service_.label_cache_stats(),
                                            service_.model_health()),
                            {}};
      };
    // Ready while not draining; "degraded" (still 200: it answers) while a model serves from
    // its fallback backend, with which and why.
    if (path == "/health")
      return [this] {
        const bool ready = !http_.draining();
        json health = service_.health();
        if (!ready) health["status"] = "draining";
        health["live"] = true;
        health["ready"] = ready;
        return json_response(ready ? 200 : 503, health);
      };
    for (const WebAsset& asset : web_assets())
      if (path == "/" + std::string(asset.path) || (path == "/" && asset.path == "index.html"))
        return [&asset] {
          return HttpResponse{200, std::string(asset.content_type), std::string(asset.data), {}};
        };
    return nullptr;
  }

  // Any Content-Type is read as the JSON the body must be (curl -d sends
  // application/x-www-form-urlencoded), up to --max-body-bytes; multipart bodies are refused.
  HttpResponse run_task(const HttpRequest& request, const Task& task) {
    const auto started = SteadyClock::now();
    HttpResponse response;
    if (request.content_type.rfind("multipart/", 0) == 0) {
      response = error_response(415, "unsupported_media_type",
                                "the body must be JSON (Content-Type: application/json), not " +
                                    request.content_type.substr(0, request.content_type.find(';')));
    } else {
      const DeadlineScope deadline(started +
                                   std::chrono::milliseconds(options_.request_timeout_ms));
      try {
        json body = task(request.body);
        body["latency_ms"] =
            std::chrono::duration<double, std::milli>(SteadyClock::now() - started).count();
        response = json_response(200, body);
      } catch (...) {
        const ApiError e = current_api_error();
        response = json_response(e.status, e.body());
      }
    }
    metrics_.record_request(request.path, response.status,
                            std::chrono::duration<double>(SteadyClock::now() - started).count());
    return response;
  }

  HttpResponse with_cors(HttpResponse response) const {
    if (!options_.cors_origin.empty()) {
      response.headers.emplace_back("Access-Control-Allow-Origin", options_.cors_origin);
      response.headers.emplace_back("Access-Control-Allow-Headers", "Content-Type");
      response.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    }
    return response;
  }

  const ServerOptions& options_;
  Service& service_;
  Metrics& metrics_;
  std::map<std::string, Task> tasks_;
  HttpServer http_;
};

int run(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kServerUsage;
    return args.empty() ? 2 : 0;
  }
  const ServerOptions options = parse_server_options(args);
  // SIGTERM / SIGINT are taken by one thread (sigwait), so every other thread, including the
  // ones the libraries start, must block them: set the mask before any thread exists.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is not a reason to die

  Metrics metrics;
  Service service(service_options(options, metrics));
  HttpFrontEnd front_end(options, service, metrics);
  const int port = front_end.bind();
  std::cerr << "tinybert-server: " << service.models()["models"].size()
            << " models, listening on http://" << options.host << ":" << port << "/ ("
            << options.backend << ", batching " << (options.batching ? "on" : "off") << ")"
            << std::endl;
  if (!options.port_file.empty()) {
    std::ofstream(options.port_file) << port << "\n";
  }
  std::atomic<bool> signalled{false};
  std::thread signal_waiter([&] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    signalled = true;
    std::cerr << "tinybert-server: signal " << signal << ", finishing requests in flight"
              << std::endl;
    front_end.drain();
  });
  front_end.serve();
  service.stop();
  // serve() returned without a signal only if listening failed; wake the waiter so it can end.
  if (!signalled) pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  const HttpServer::Counts counts = front_end.counts();
  std::cerr << "tinybert-server: stopped; " << counts.requests << " requests read, "
            << counts.answered << " answered" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "tinybert-server: " << e.what() << std::endl;
    return 1;
  }
}
