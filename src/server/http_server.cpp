// Beast sessions and the acceptor; see http_server.h.
#include "server/http_server.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <chrono>
#include <deque>
#include <optional>
#include <sstream>

#include "server/api_error.h"

namespace invar::server {

namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// Shared by the acceptor and every session; sessions may outlive the HttpServer object.
struct Context {
  Context(HttpOptions o, Handler h, ServerCounters& c)
      : options(std::move(o)), handler(std::move(h)), counters(c) {}
  HttpOptions options;
  Handler handler;
  ServerCounters& counters;
  std::atomic<int64_t> active{0};
};

class Session : public Exchange, public std::enable_shared_from_this<Session> {
  static constexpr size_t kFirstReadBytes = 4096;  // what a keep-alive wait reads at once

 public:
  Session(tcp::socket socket, std::shared_ptr<Context> ctx)
      : stream_(std::move(socket)), executor_(stream_.get_executor()), ctx_(std::move(ctx)) {
    ctx_->counters.connections_total++;
    ctx_->counters.connections_open++;
  }
  ~Session() override {
    if (in_exchange_) ctx_->active--;
    ctx_->counters.connections_open--;
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
  }

  net::any_io_executor executor() const override { return executor_; }
  bool disconnected() const override { return closed_; }
  void on_disconnect(std::function<void()> callback) override {
    on_disconnect_ = std::move(callback);
  }

  void add_header(std::string name, std::string value) override {
    if (in_exchange_) exchange_headers_.push_back({std::move(name), std::move(value)});
  }

  void respond(http::status status, const std::string& content_type, std::string body,
               const HeaderList& extra_headers) override {
    if (closed_ || !in_exchange_ || finishing_) return;
    http::response<http::string_body> res{status, version_};
    res.set(http::field::server, "invar");
    if (!content_type.empty()) res.set(http::field::content_type, content_type);
    for (const auto& [name, value] : exchange_headers_) res.set(name, value);
    for (const auto& [name, value] : extra_headers) res.set(name, value);
    res.keep_alive(keep_alive_ && !close_after_);
    res.body() = std::move(body);
    res.prepare_payload();
    count_status(int(status));
    std::ostringstream os;
    os << res;
    enqueue(os.str(), /*last=*/true);
  }

  void begin_stream(const std::string& content_type) override {
    if (closed_ || !in_exchange_ || streaming_) return;
    streaming_ = true;
    chunked_ = version_ >= 11;  // HTTP/1.0 has no chunked encoding: the close ends the body
    if (!chunked_) close_after_ = true;
    count_status(200);
    std::string extra;
    for (const auto& [name, value] : exchange_headers_)
      extra += fmt::format("{}: {}\r\n", name, value);
    enqueue(fmt::format("HTTP/1.{} 200 OK\r\nServer: invar\r\nContent-Type: {}\r\n"
                        "Cache-Control: no-cache\r\n{}{}Connection: {}\r\n\r\n",
                        version_ >= 11 ? 1 : 0, content_type, extra,
                        chunked_ ? "Transfer-Encoding: chunked\r\n" : "",
                        keep_alive_ && !close_after_ ? "keep-alive" : "close"),
            false);
  }

  void send_chunk(std::string data) override {
    if (closed_ || !streaming_ || finishing_ || data.empty()) return;
    enqueue(chunked_ ? fmt::format("{:x}\r\n{}\r\n", data.size(), data) : std::move(data), false);
  }

  void end_stream() override {
    if (closed_ || !streaming_ || finishing_) return;
    enqueue(chunked_ ? std::string("0\r\n\r\n") : std::string(), true);
  }

 private:
  void count_status(int status) {
    if (status >= 500)
      ctx_->counters.http_5xx++;
    else if (status >= 400)
      ctx_->counters.http_4xx++;
  }

  // Waits up to idle_timeout_s for the first byte of the next request, then gives its header
  // read_timeout_s to arrive.
  void read_header() {
    parser_.emplace();
    parser_->header_limit(ctx_->options.max_header_bytes);
    parser_->body_limit(ctx_->options.max_body_bytes);
    if (buffer_.size() > 0) return read_request_header();  // pipelined: already here
    stream_.expires_after(seconds(ctx_->options.idle_timeout_s));
    stream_.async_read_some(buffer_.prepare(kFirstReadBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->read_failed(ec);
                              self->buffer_.commit(n);
                              self->read_request_header();
                            });
  }

  void read_request_header() {
    stream_.expires_after(seconds(ctx_->options.read_timeout_s));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) return read_failed(ec);
    auto& req = parser_->get();
    if (auto length = parser_->content_length(); length && *length > ctx_->options.max_body_bytes)
      return read_failed(http::error::body_limit);
    // curl sends larger bodies only after "100 Continue".
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue),
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (ec) return self->close();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_.expires_after(seconds(ctx_->options.read_timeout_s));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  // A request that could not be read: answer what can be answered, then close.
  void read_failed(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset ||
        ec == net::error::eof) {
      return close();
    }
    ApiError error;
    http::status status = http::status::bad_request;
    if (ec == http::error::body_limit) {
      status = http::status::payload_too_large;
      error = {
          413,
          fmt::format("the request body is larger than {} bytes", ctx_->options.max_body_bytes),
          "invalid_request_error", "", "request_too_large"};
    } else if (ec == http::error::header_limit) {
      status = http::status::request_header_fields_too_large;
      error = {431, "the request headers are too large", "invalid_request_error", "", ""};
    } else {
      error = ApiError::bad_request("", fmt::format("malformed HTTP request: {}", ec.message()));
    }
    begin_exchange(11, false);
    close_after_ = true;
    respond(status, "application/json", error_body(error), {});
  }

  void on_read(beast::error_code ec) {
    if (ec) return read_failed(ec);
    stream_.expires_never();
    HttpRequest req = parser_->release();
    parser_.reset();
    begin_exchange(req.version(), req.keep_alive());
    ctx_->counters.http_requests++;
    watch_for_disconnect();
    try {
      ctx_->handler(std::move(req), shared_from_this());
    } catch (const std::exception& e) {
      // A bug in a handler must cost one request, never the server.
      respond(
          http::status::internal_server_error, "application/json",
          error_body({500, fmt::format("internal error: {}", e.what()), "server_error", "", ""}),
          {});
    }
  }

  void begin_exchange(unsigned version, bool keep_alive) {
    version_ = version;
    keep_alive_ = keep_alive;
    in_exchange_ = true;
    streaming_ = finishing_ = close_after_ = false;
    exchange_headers_.clear();
    ++exchange_;
    ctx_->active++;
  }

  void end_exchange() {
    if (!in_exchange_) return;
    in_exchange_ = streaming_ = finishing_ = false;
    on_disconnect_ = nullptr;
    ctx_->active--;
  }

  // While a request is answered nothing is read from the socket, so a client that leaves would
  // go unnoticed until the next write. Waiting for readability and peeking tells EOF (gone) from
  // a pipelined next request (left in the socket for later).
  void watch_for_disconnect() {
    stream_.socket().async_wait(
        tcp::socket::wait_read,
        [self = shared_from_this(), exchange = exchange_](beast::error_code ec) {
          if (ec == net::error::operation_aborted || exchange != self->exchange_ ||
              !self->in_exchange_ || self->closed_) {
            return;
          }
          if (ec) return self->client_gone();
          char c;
          ssize_t n =
              ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            self->client_gone();
          } else if (n < 0) {
            self->watch_for_disconnect();
          }
        });
  }

  void client_gone() {
    if (closed_) return;
    auto callback = std::move(on_disconnect_);
    on_disconnect_ = nullptr;
    close();
    if (callback) callback();
  }

  void enqueue(std::string data, bool last) {
    if (last) finishing_ = true;
    if (!data.empty()) queue_.push_back(std::move(data));
    if (!writing_) write_next();
  }

  void write_next() {
    if (queue_.empty()) {
      if (finishing_) finished_writing();
      return;
    }
    writing_ = true;
    stream_.expires_after(seconds(ctx_->options.write_timeout_s));
    net::async_write(stream_, net::buffer(queue_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       if (self->closed_) {  // close() left the buffer alive for this write
                         self->queue_.clear();
                         return;
                       }
                       self->stream_.expires_never();
                       if (ec) return self->client_gone();
                       self->queue_.pop_front();
                       self->write_next();
                     });
  }

  void finished_writing() {
    bool keep = keep_alive_ && !close_after_;
    end_exchange();
    if (!keep) return close();
    beast::error_code ignored;
    stream_.socket().cancel(ignored);  // the disconnect watch of the exchange that ended
    read_header();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    if (!writing_) queue_.clear();  // else the write in flight still reads queue_.front()
    end_exchange();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  net::any_io_executor executor_;  // the connection's strand
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Context> ctx_;
  std::deque<std::string> queue_;
  std::function<void()> on_disconnect_;
  HeaderList exchange_headers_;  // add_header's, for this exchange's response
  uint64_t exchange_ = 0;  // which request the disconnect watch belongs to
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool in_exchange_ = false;
  bool streaming_ = false;
  bool chunked_ = true;
  bool finishing_ = false;    // the last bytes of the exchange are queued
  bool close_after_ = false;  // close the connection when the exchange ends
  bool writing_ = false;
  bool closed_ = false;
};

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(net::io_context& io, std::shared_ptr<Context> c)
      : ioc(io),
        ctx(std::move(c)),
        acceptor(net::make_strand(io)),
        retry(acceptor.get_executor()) {}

  void accept() {
    acceptor.async_accept(net::make_strand(ioc),
                          [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                            self->on_accept(ec, std::move(socket));
                          });
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (ec) {
      // Out of file descriptors or similar: back off instead of spinning, keep serving.
      fmt::print(stderr, "invar serve: accept failed: {}\n", ec.message());
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([self = shared_from_this()](beast::error_code) { self->accept(); });
      return;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // SSE chunks are small and latency matters
    std::make_shared<Session>(std::move(socket), ctx)->start();
    accept();
  }

  net::io_context& ioc;
  std::shared_ptr<Context> ctx;
  tcp::acceptor acceptor;
  net::steady_timer retry;
  uint16_t port = 0;
};

HttpServer::HttpServer(net::io_context& ioc, HttpOptions options, Handler handler,
                       ServerCounters& counters)
    : impl_(std::make_shared<Impl>(
          ioc, std::make_shared<Context>(std::move(options), std::move(handler), counters))) {}

// Runs after the io_context's threads have stopped (see the header): no handler can race here.
HttpServer::~HttpServer() {
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

Status HttpServer::listen() {
  const HttpOptions& o = impl_->ctx->options;
  beast::error_code ec;
  auto address = net::ip::make_address(o.host, ec);
  if (ec) return Status::errorf("--host {}: not an IP address ({})", o.host, ec.message());
  tcp::endpoint endpoint(address, o.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::errorf("cannot listen on {}:{}: {} (is the port in use? try another --port)",
                          o.host, o.port, ec.message());
  }
  impl_->port = acceptor.local_endpoint().port();
  net::dispatch(acceptor.get_executor(), [self = impl_] { self->accept(); });
  return {};
}

uint16_t HttpServer::port() const {
  return impl_->port;
}

void HttpServer::stop_accepting() {
  net::post(impl_->acceptor.get_executor(), [self = impl_] {
    beast::error_code ignored;
    self->acceptor.close(ignored);
    self->retry.cancel();
  });
}

int64_t HttpServer::active_exchanges() const {
  return impl_->ctx->active.load();
}

}  // namespace invar::server
