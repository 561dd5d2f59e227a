// HTTP/1.1 transport on Boost.Beast: an acceptor, one session per connection on its own strand,
// keep-alive, body limits, complete and chunked (SSE) responses, and disconnect detection while
// a request is being answered. It knows nothing of OpenAI or the engine: each request goes to a
// Handler with an Exchange to answer it through.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "server/metrics.h"

namespace invar::server {

namespace net = boost::asio;
namespace http = boost::beast::http;

using HttpRequest = http::request<http::string_body>;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// The answer side of one request. Every method must be called on executor() (the connection's
// strand); after the client is gone they do nothing.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual net::any_io_executor executor() const = 0;
  // A header for the response of this exchange, whichever way it is answered (CORS).
  virtual void add_header(std::string name, std::string value) = 0;
  // A complete response; ends the exchange.
  virtual void respond(http::status status, const std::string& content_type, std::string body,
                       const HeaderList& extra_headers = {}) = 0;
  // A streamed response: the head, any number of chunks, then the end.
  virtual void begin_stream(const std::string& content_type) = 0;
  virtual void send_chunk(std::string data) = 0;
  virtual void end_stream() = 0;
  // Runs once, on the strand, if the client goes away before the exchange has ended.
  virtual void on_disconnect(std::function<void()> callback) = 0;
  virtual bool disconnected() const = 0;
};

using Handler = std::function<void(HttpRequest&& request, std::shared_ptr<Exchange> exchange)>;

struct HttpOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: any free port (see HttpServer::port())
  size_t max_body_bytes = 4u << 20;
  uint32_t max_header_bytes = 16u << 10;
  double idle_timeout_s = 75;  // keep-alive connection waiting for its next request
  // From the first byte of a request, its header must arrive within this, and then its body
  // within as long again: a client that dribbles a request (slowloris) loses the connection
  // instead of holding it.
  double read_timeout_s = 30;
  double write_timeout_s = 60;  // a client that reads nothing for this long is dropped
};

// Destroy it only after the io_context's threads have stopped.
class HttpServer {
 public:
  HttpServer(net::io_context& ioc, HttpOptions options, Handler handler, ServerCounters& counters);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts accepting (on the io_context's threads).
  Status listen();
  uint16_t port() const;
  // Closes the listening socket: no new connections. Thread-safe.
  void stop_accepting();
  // Requests read and not yet fully answered (the last byte written or the client gone).
  int64_t active_exchanges() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace invar::server
