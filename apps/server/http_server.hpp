// An event-driven HTTP/1.1 server on Boost.Beast: one I/O thread reads and writes every
// connection; only complete requests reach a worker. A slow or idle client holds a socket and a
// few KB, never a worker (issue 16, 2e: with one thread per connection, 70 clients sending one
// byte every 2 s made the server unavailable).
//
// Per connection:  idle wait (--keep-alive-timeout-ms)  ->  request read, headers and body under
// ONE deadline from the first byte (--read-timeout-ms; 408 when passed)  ->  handler (on the I/O
// thread when cheap, else on a worker)  ->  response write (deadline too)  ->  idle wait again.
// drain() stops accepting, closes idle connections and lets every request already being read or
// handled finish with "Connection: close"; serve() returns when the last connection has closed.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tinybert::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query string
  std::string content_type;
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/Length
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;   // 0: any free port
  int workers = 64;  // handlers that may run (and wait for their batch) at once
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 64 << 10;
  std::chrono::milliseconds read_timeout{10000};       // a whole request, from its first byte
  std::chrono::milliseconds keep_alive_timeout{5000};  // an idle connection between requests
  std::chrono::milliseconds write_timeout{10000};      // a whole response
};

// What the server does with a request: the handler, and whether it may block (run it on a worker;
// the I/O thread must never wait for a forward pass).
struct HttpRoute {
  std::function<HttpResponse(const HttpRequest&)> handle;
  bool blocking = false;
};

class HttpServer {
 public:
  // route: the handler of a request (never null: the caller answers unknown paths itself).
  // error: the response to a request the server refuses itself (status, type, message; 400 bad
  // HTTP, 408 too slow, 413 too large, 431 headers too large), and `path` when known.
  using Router = std::function<HttpRoute(const HttpRequest&)>;
  using ErrorResponder = std::function<HttpResponse(
      int status, const std::string& type, const std::string& message, const std::string& path)>;

  HttpServer(HttpServerOptions options, Router router, ErrorResponder error)
      : options_(std::move(options)),
        router_(std::move(router)),
        error_(std::move(error)),
        workers_(static_cast<size_t>(options_.workers)) {}

  ~HttpServer() { workers_.join(); }

  // Binds and listens (backlog SOMAXCONN) and returns the port. Throws std::runtime_error.
  int bind() {
    namespace net = boost::asio;
    const net::ip::tcp::endpoint endpoint(net::ip::make_address(options_.host),
                                          static_cast<unsigned short>(options_.port));
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(SOMAXCONN);
    return acceptor_.local_endpoint().port();
  }

  // Serves on the calling thread until drain() and the last connection's end.
  void serve() {
    accept();
    io_.run();
    workers_.join();
  }

  // From any thread, once serve() may have started: stop accepting, close idle connections,
  // finish the rest.
  void drain() {
    boost::asio::post(io_, [this] {
      draining_ = true;
      // Connections the kernel has completed but we have not accepted would be reset by the
      // close, after their clients may have sent a request: take them, and answer them.
      boost::system::error_code ec;
      acceptor_.non_blocking(true, ec);
      for (;;) {
        tcp::socket socket(io_);
        acceptor_.accept(socket, ec);
        if (ec) break;
        serve_connection(std::move(socket));
      }
      acceptor_.close(ec);
      // Copy: closing a connection may end it and remove it from the set.
      const std::vector<Connection*> open(connections_.begin(), connections_.end());
      for (Connection* c : open) c->drain();
    });
  }

  bool draining() const { return draining_; }

  // Requests read whole (and handed to a handler) and responses to them written, so far: equal
  // once serve() has returned, or an accepted request went unanswered.
  struct Counts {
    uint64_t requests = 0, answered = 0;
  };
  Counts counts() const { return {requests_read_, requests_answered_}; }

 private:
  using tcp = boost::asio::ip::tcp;
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  class Connection : public std::enable_shared_from_this<Connection> {
   public:
    Connection(HttpServer& server, tcp::socket socket)
        : server_(server), stream_(std::move(socket)), read_deadline_(stream_.get_executor()) {
      server_.connections_.insert(this);
    }
    ~Connection() { server_.connections_.erase(this); }

    void start() { wait_for_request(); }

    // Idle between requests (no byte of the next one yet): stop waiting, which closes it. A
    // request already read or waiting in the socket is answered first, with "Connection:
    // close", and so is the first request of a connection that has not sent it yet.
    void drain() {
      boost::beast::error_code ignored;
      if (state_ == State::idle && answered_ && stream_.socket().available(ignored) == 0)
        stream_.socket().cancel(ignored);  // a read that has already completed still proceeds
    }

   private:
    enum class State { idle, reading, handling, writing };

    void wait_for_request() {
      state_ = State::idle;
      // Draining: a connection that has had its answer is done; a new one (taken from the
      // backlog by drain()) gets a short wait for the request its client has surely sent.
      if (server_.draining_ && answered_) return close();
      if (buffer_.size() > 0) return read_headers();  // pipelined: the next request is here
      const auto idle_limit = server_.options_.keep_alive_timeout;
      stream_.expires_after(server_.draining_ ? std::min<std::chrono::milliseconds>(
                                                    idle_limit, std::chrono::seconds(1))
                                              : idle_limit);
      stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](
                                                         boost::beast::error_code ec, size_t n) {
        if (ec) return self->close();  // timed out, closed by the peer, or drained
        self->buffer_.commit(n);
        self->read_headers();
      });
    }

    void read_headers() {
      namespace http = boost::beast::http;
      state_ = State::reading;
      parser_.emplace();
      parser_->header_limit(static_cast<uint32_t>(server_.options_.max_header_bytes));
      parser_->body_limit(server_.options_.max_body_bytes);
      // One deadline for headers and body: restarting it with every byte is what let a client
      // sending a byte every 2 s hold a connection thread forever. Our own timer, not the
      // stream's: the stream closes the socket at its deadline, and we still want to say 408.
      stream_.expires_never();
      read_timed_out_ = false;
      read_deadline_.expires_after(server_.options_.read_timeout);
      read_deadline_.async_wait([weak = weak_from_this()](boost::beast::error_code ec) {
        if (ec) return;  // cancelled: the request was read in time
        if (auto self = weak.lock()) {
          self->read_timed_out_ = true;
          boost::beast::error_code ignored;
          self->stream_.socket().cancel(ignored);
        }
      });
      http::async_read_header(stream_, buffer_, *parser_,
                              [self = shared_from_this()](boost::beast::error_code ec, size_t) {
                                self->on_headers(ec);
                              });
    }

    void on_headers(boost::beast::error_code ec) {
      namespace http = boost::beast::http;
      if (ec) return refuse_read(ec);
      const Request& request = parser_->get();
      if (const auto length = parser_->content_length();
          length && *length > server_.options_.max_body_bytes)
        return refuse(413, "too_large", over_limit_message());
      // curl sends "Expect: 100-continue" for bodies over 1 KB and waits a second for this.
      if (boost::beast::iequals(request[http::field::expect], "100-continue")) {
        auto interim = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                          request.version());
        http::async_write(
            stream_, *interim,
            [self = shared_from_this(), interim](boost::beast::error_code ec, size_t) {
              if (ec) return self->close();
              self->read_body();
            });
        return;
      }
      read_body();
    }

    void read_body() {
      boost::beast::http::async_read(
          stream_, buffer_, *parser_,
          [self = shared_from_this()](boost::beast::error_code ec, size_t) {
            if (ec) return self->refuse_read(ec);
            self->handle();
          });
    }

    // A request that could not be read: answer why where that is useful, then close.
    void refuse_read(boost::beast::error_code ec) {
      namespace http = boost::beast::http;
      if (read_timed_out_)
        return refuse(408, "timeout",
                      "the request was not received within --read-timeout-ms (" +
                          std::to_string(server_.options_.read_timeout.count()) + " ms)");
      if (ec == http::error::body_limit) return refuse(413, "too_large", over_limit_message());
      if (ec == http::error::header_limit)
        return refuse(431, "too_large",
                      "the request headers are over " +
                          std::to_string(server_.options_.max_header_bytes) + " bytes");
      if (ec == http::error::end_of_stream || ec == boost::asio::error::eof ||
          ec == boost::asio::error::operation_aborted || ec == boost::asio::error::bad_descriptor ||
          ec == boost::asio::error::connection_reset)
        return close();  // the peer or drain() closed it: nobody to answer
      refuse(400, "bad_http", "malformed HTTP request: " + ec.message());
    }

    std::string over_limit_message() const {
      return "the body is over --max-body-bytes (" +
             std::to_string(server_.options_.max_body_bytes) + " bytes)";
    }

    HttpRequest to_http_request() const {
      namespace http = boost::beast::http;
      const Request& r = parser_->get();
      HttpRequest request;
      request.method = std::string(r.method_string());
      const auto target = r.target();  // Boost's string_view in 1.74
      request.path = std::string(target.substr(0, target.find('?')));
      request.content_type = std::string(r[http::field::content_type]);
      return request;
    }

    void refuse(int status, const std::string& type, const std::string& message) {
      read_deadline_.cancel();
      const std::string path = parser_ && parser_->is_header_done() ? to_http_request().path : "";
      keep_alive_ = false;  // the rest of the request was not read: the connection is unusable
      unread_input_ = true;
      write(server_.error_(status, type, message, path));
    }

    void handle() {
      ++server_.requests_read_;
      read_deadline_.cancel();
      state_ = State::handling;
      keep_alive_ = parser_->get().keep_alive();
      HttpRequest request = to_http_request();
      request.body = std::move(parser_->get().body());
      HttpRoute route = server_.router_(request);
      if (!route.blocking) return write(route.handle(request));
      stream_.expires_never();  // the handler's own deadline applies while it runs
      // The worker holds a work guard: the I/O loop must not end while a handler runs.
      boost::asio::post(
          server_.workers_,
          [self = shared_from_this(), route = std::move(route), request = std::move(request),
           work = boost::asio::make_work_guard(server_.io_)]() mutable {
            HttpResponse response = route.handle(request);
            // self moves along: a connection ends on the I/O thread only.
            auto& io = self->server_.io_;
            boost::asio::post(io,
                              [self = std::move(self), response = std::move(response)]() mutable {
                                self->write(std::move(response));
                              });
          });
    }

    void write(HttpResponse response) {
      namespace http = boost::beast::http;
      state_ = State::writing;
      const unsigned version = parser_ ? parser_->get().version() : 11;
      auto out = std::make_shared<Response>(static_cast<http::status>(response.status), version);
      out->set(http::field::content_type, response.content_type);
      for (const auto& [name, value] : response.headers) out->set(name, value);
      out->body() = std::move(response.body);
      out->keep_alive(keep_alive_ && !server_.draining_);
      out->prepare_payload();
      if (parser_ && parser_->is_header_done() && parser_->get().method() == http::verb::head)
        out->body().clear();  // Content-Length stays that of the GET
      stream_.expires_after(server_.options_.write_timeout);
      http::async_write(stream_, *out,
                        [self = shared_from_this(), out](boost::beast::error_code ec, size_t) {
                          if (!ec && !self->unread_input_) ++self->server_.requests_answered_;
                          if (!ec && self->unread_input_) return self->linger();
                          if (ec || !out->keep_alive()) return self->close();
                          self->parser_.reset();
                          self->answered_ = true;
                          self->wait_for_request();
                        });
    }

    // After refusing a request whose body was not read: closing at once with unread data in the
    // socket sends a reset, which may destroy the response before the client reads it. Stop
    // sending, discard what still arrives for a moment, then close (nginx's lingering close).
    void linger() {
      boost::beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      stream_.expires_after(std::chrono::seconds(2));
      discard();
    }
    void discard() {
      buffer_.clear();
      stream_.async_read_some(buffer_.prepare(16384),
                              [self = shared_from_this()](boost::beast::error_code ec, size_t) {
                                if (ec) return self->close();
                                self->discard();
                              });
    }

    void close() {
      boost::beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      stream_.socket().close(ignored);
    }

    HttpServer& server_;
    boost::beast::tcp_stream stream_;
    boost::asio::steady_timer read_deadline_;
    bool read_timed_out_ = false;
    boost::beast::flat_buffer buffer_;
    std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
    State state_ = State::idle;
    bool keep_alive_ = true;
    bool unread_input_ = false;  // a refused request's rest may still arrive
    bool answered_ = false;      // at least one response written
  };

  void accept() {
    acceptor_.async_accept([this](boost::beast::error_code ec, tcp::socket socket) {
      // Accepted before drain() closed the acceptor: served like the rest of the backlog.
      if (!ec) serve_connection(std::move(socket));
      if (draining_ || !acceptor_.is_open()) return;
      if (ec == boost::asio::error::no_descriptors) {  // out of file descriptors: retry shortly
        retry_accept_.expires_after(std::chrono::milliseconds(50));
        retry_accept_.async_wait([this](boost::beast::error_code) { accept(); });
        return;
      }
      accept();
    });
  }

  void serve_connection(tcp::socket socket) {
    // Headers and body may leave in two writes: without TCP_NODELAY each response waits for the
    // client's delayed ACK (~40 ms a request on one connection).
    boost::beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<Connection>(*this, std::move(socket))->start();
  }

  HttpServerOptions options_;
  Router router_;
  ErrorResponder error_;
  // Declared before io_: pending handlers own connections, destroyed with io_, and a
  // connection's destructor removes itself from this set.
  std::unordered_set<Connection*> connections_;
  std::atomic<bool> draining_{false};  // set on the I/O thread
  std::atomic<uint64_t> requests_read_{0}, requests_answered_{0};
  boost::asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  boost::asio::steady_timer retry_accept_{io_};
  boost::asio::thread_pool workers_;
};

}  // namespace tinybert::server
