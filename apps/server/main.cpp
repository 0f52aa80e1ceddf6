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
// After Eigen (through service.hpp): httplib.h brings <resolv.h>, whose `_res` macro breaks
// Eigen's headers that name a parameter `_res`.
#include <httplib.h>

namespace {

using namespace tinybert;
using namespace tinybert::server;

class HttpFrontEnd {
 public:
  HttpFrontEnd(const ServerOptions& options, Service& service, Metrics& metrics)
      : options_(options), service_(service), metrics_(metrics) {
    http_.new_task_queue = [threads = options.threads] {
      return new httplib::ThreadPool(static_cast<size_t>(threads));
    };
    http_.set_keep_alive_max_count(100000);
    // Headers and body leave in two writes: without TCP_NODELAY each response waits for the
    // client's delayed ACK (~40 ms a request on one connection). Accepted sockets inherit it.
    http_.set_tcp_nodelay(true);
    http_.set_socket_options([this](socket_t socket) {
      httplib::default_socket_options(socket);
      if (listen_socket_ < 0) listen_socket_ = socket;  // the first: the listening one
    });
    // Bodies over the limit are refused while reading (413) instead of being buffered.
    http_.set_payload_max_length(options.limits.max_body_bytes);
    route_post("/v1/classify", [this](const std::string& body) { return service_.classify(body); });
    route_post("/v1/fill-mask",
               [this](const std::string& body) { return service_.fill_mask(body); });
    route_post("/v1/extract", [this](const std::string& body) { return service_.extract(body); });
    route_post("/v1/embeddings",
               [this](const std::string& body) { return service_.embeddings(body); });
    route_get("/v1/models",
              [this](httplib::Response& res) { send_json(res, 200, service_.models()); });
    route_get("/openapi.json",
              [](httplib::Response& res) { send_json(res, 200, openapi_document()); });
    route_get("/metrics", [this](httplib::Response& res) {
      res.set_content(metrics_.render(service_.queue_depths(), service_.label_cache_stats(),
                                      service_.model_health()),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    // Ready while not draining; "degraded" (still 200: it answers) while a model serves from
    // its fallback backend, with which and why.
    route_get("/health", [this](httplib::Response& res) {
      const bool ready = !draining_;
      json health = service_.health();
      if (!ready) health["status"] = "draining";
      health["live"] = true;
      health["ready"] = ready;
      send_json(res, ready ? 200 : 503, health);
    });
    for (const WebAsset& asset : web_assets()) {
      const auto serve_asset = [&asset](httplib::Response& res) {
        res.set_content(asset.data.data(), asset.data.size(), std::string(asset.content_type));
      };
      route_get("/" + std::string(asset.path), serve_asset);
      if (asset.path == "index.html") route_get("/", serve_asset);
    }
    if (!options.cors_origin.empty())
      http_.Options(R"(/.*)",
                    [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
    http_.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!options_.cors_origin.empty()) {
        res.set_header("Access-Control-Allow-Origin", options_.cors_origin);
        res.set_header("Access-Control-Allow-Headers", "Content-Type");
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      }
    });
    // Whatever no handler answered (unknown path, body over the limit) still gets a JSON error.
    http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 413) {
        send_json(res, 413, too_large("the body is over the server's limit").body());
      } else if (res.status == 404) {
        send_json(res, 404,
                  ApiError(404, "not_found", "no endpoint " + req.method + " " + req.path).body());
      } else {
        send_json(res, res.status,
                  ApiError(res.status, "http", "HTTP status " + std::to_string(res.status)).body());
      }
    });
  }

  // Binds (port 0: any free port) and returns the port.
  int bind() {
    const int port = options_.port == 0
                         ? http_.bind_to_any_port(options_.host)
                         : (http_.bind_to_port(options_.host, options_.port) ? options_.port : -1);
    if (port < 0)
      throw Error("cannot listen on " + options_.host + ":" + std::to_string(options_.port));
    // Debian's compiled cpp-httplib listens with a backlog of 5: a burst of new connections
    // (a load balancer reconnecting) overflows it and waits 1-3 s for SYN retries. Listening
    // again raises the backlog of the bound socket.
    if (listen_socket_ >= 0 && ::listen(listen_socket_, SOMAXCONN) != 0)
      throw Error("cannot raise the listen backlog: " + std::string(std::strerror(errno)));
    return port;
  }
  void serve() {
    http_.listen_after_bind();
    served_ = true;
  }
  // Stops accepting; serve() returns once the requests in flight are answered. A signal may
  // come before serve() has started listening, when stop() would do nothing: wait for it.
  void drain() {
    draining_ = true;
    while (!http_.is_running() && !served_)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    http_.stop();
  }

 private:
  static void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json; charset=utf-8");
  }

  // The body is read through a content reader, not by the library: httplib 0.11 refuses bodies
  // over 8 KB whose Content-Type is application/x-www-form-urlencoded (curl -d's default) with a
  // misleading 413, but only when it reads them itself. Any Content-Type is read as the JSON it
  // must be, up to --max-body-bytes; multipart bodies are refused (415).
  void route_post(const std::string& path, std::function<json(const std::string&)> handle) {
    http_.Post(path, [this, path, handle](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& content_reader) {
      if (req.is_multipart_form_data()) {
        send_json(res, 415,
                  ApiError(415, "unsupported_media_type",
                           "the body must be JSON (Content-Type: application/json), not "
                           "multipart/form-data")
                      .body());
        metrics_.record_request(path, 415, 0);
        return;
      }
      std::string request_body;
      const bool read = content_reader([&](const char* data, size_t size) {
        request_body.append(data, size);
        return true;
      });
      if (!read) {  // the library stops at --max-body-bytes (set_payload_max_length): a 413
        const ApiError e =
            res.status == 413
                ? too_large("the body is over --max-body-bytes (" +
                            std::to_string(options_.limits.max_body_bytes) + " bytes)")
                : bad_request("the body could not be read");
        send_json(res, e.status, e.body());
        metrics_.record_request(path, e.status, 0);
        return;
      }
      const auto started = SteadyClock::now();
      const DeadlineScope deadline(started +
                                   std::chrono::milliseconds(options_.request_timeout_ms));
      int status = 200;
      json body;
      try {
        body = handle(request_body);
        body["latency_ms"] =
            std::chrono::duration<double, std::milli>(SteadyClock::now() - started).count();
      } catch (...) {
        const ApiError e = current_api_error();
        status = e.status, body = e.body();
        if (status == 503) res.set_header("Retry-After", "1");
      }
      send_json(res, status, body);
      metrics_.record_request(path, status,
                              std::chrono::duration<double>(SteadyClock::now() - started).count());
    });
    http_.Get(path, [this, path](const httplib::Request&, httplib::Response& res) {
      send_json(res, 405, ApiError(405, "method_not_allowed", path + " takes POST").body());
      metrics_.record_request(path, 405, 0);
    });
  }

  void route_get(const std::string& path, std::function<void(httplib::Response&)> handle) {
    http_.Get(path, [handle](const httplib::Request&, httplib::Response& res) { handle(res); });
    http_.Post(path, [path](const httplib::Request&, httplib::Response& res) {
      send_json(res, 405, ApiError(405, "method_not_allowed", path + " takes GET").body());
    });
  }

  const ServerOptions& options_;
  Service& service_;
  Metrics& metrics_;
  httplib::Server http_;
  socket_t listen_socket_ = -1;
  std::atomic<bool> draining_{false}, served_{false};
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
  std::cerr << "tinybert-server: stopped" << std::endl;
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
