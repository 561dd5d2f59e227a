#include "net/http_client.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <optional>
#include <regex>
#include <thread>
#include <vector>

namespace invar::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr int kRetries = 6;                       // plain requests answered 429 / 503
constexpr size_t kBodyLimit = size_t(256) << 20;  // bytes of one response
}  // namespace

struct HttpClient::Impl {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  std::vector<std::thread> threads;
  tcp::resolver::results_type endpoints;
  std::string host;       // the Host header
  std::string base_path;  // "" or "/prefix"
  std::string api_key;
  std::chrono::milliseconds timeout{0};  // 0: none

  ~Impl() {
    work.reset();
    ioc.stop();
    for (auto& t : threads) t.join();
  }
};

namespace {

// One request on its own connection: connect, write, then read the whole response (plain) or
// read it piece by piece, handing each SSE event on as it arrives (stream).
class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(HttpClient::Impl& impl, http::verb verb, const std::string& path, std::string body,
       SseEvent on_event, std::function<void(HttpResponse)> done)
      : impl_(impl),
        stream_(asio::make_strand(impl.ioc)),
        on_event_(std::move(on_event)),
        done_(std::move(done)) {
    req_ = {verb, impl.base_path + path, 11};
    req_.set(http::field::host, impl.host);
    req_.set(http::field::user_agent, "invar");
    if (verb == http::verb::post) req_.set(http::field::content_type, "application/json");
    if (on_event_) req_.set(http::field::accept, "text/event-stream");
    if (!impl.api_key.empty()) req_.set(http::field::authorization, "Bearer " + impl.api_key);
    req_.keep_alive(false);
    req_.body() = std::move(body);
    req_.prepare_payload();
  }

  void start() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    buffer_.clear();
    scanned_ = 0;
    arm_timeout();
    stream_.async_connect(impl_.endpoints,
                          [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                            if (ec) return self->finish({0, {}, "connect: " + ec.message()});
                            self->write();
                          });
  }

 private:
  bool streaming() const { return bool(on_event_); }

  // A plain request's deadline covers all of it; a stream's is re-armed at every read, so it
  // bounds silence rather than the whole (arbitrarily long) stream.
  void arm_timeout() {
    if (impl_.timeout.count() > 0)
      stream_.expires_after(impl_.timeout);
    else
      stream_.expires_never();
  }

  void write() {
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->finish({0, {}, "write: " + ec.message()});
      if (self->streaming()) return self->read_some();
      http::async_read(self->stream_, self->buffer_, *self->parser_,
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->finish({0, {}, "read: " + ec.message()});
                         auto& res = self->parser_->get();
                         self->finish({int(res.result_int()), std::move(res.body()), {}});
                       });
    });
  }

  void read_some() {
    arm_timeout();
    http::async_read_some(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec && ec != http::error::end_of_stream) return finish({0, {}, "read: " + ec.message()});
    const bool done = parser_->is_done() || ec;
    if (parser_->is_header_done() && parser_->get().result() != http::status::ok) {
      if (!done) return read_some();  // an error body: read it whole
      auto& res = parser_->get();
      return finish({int(res.result_int()), std::move(res.body()), {}});
    }
    scan_events();
    if (!done) return read_some();
    const int status = parser_->is_header_done() ? int(parser_->get().result_int()) : 0;
    finish({status, {}, status ? "" : "read: the connection closed before a response"});
  }

  // Events are separated by a blank line; each `data:` line of one is handed on.
  void scan_events() {
    const std::string& body = parser_->get().body();
    const auto now = std::chrono::steady_clock::now();
    for (size_t end; (end = body.find("\n\n", scanned_)) != std::string::npos; scanned_ = end + 2) {
      std::string_view event(body.data() + scanned_, end - scanned_);
      while (!event.empty()) {
        const size_t eol = std::min(event.find('\n'), event.size());
        std::string_view line = event.substr(0, eol);
        event.remove_prefix(std::min(eol + 1, event.size()));
        if (!line.starts_with("data:")) continue;
        line.remove_prefix(5);
        if (line.starts_with(' ')) line.remove_prefix(1);
        on_event_(line, now);
      }
    }
  }

  void finish(HttpResponse r) {
    if (finished_) return;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    if (!streaming() && (r.status == 429 || r.status == 503) && attempt_ < kRetries) {
      // Busy: retry after 0.25, 0.5, 1, ... seconds.
      auto timer = std::make_shared<asio::steady_timer>(stream_.get_executor());
      timer->expires_after(std::chrono::milliseconds(250 << attempt_++));
      timer->async_wait([self = shared_from_this(), timer](beast::error_code) { self->start(); });
      return;
    }
    finished_ = true;
    done_(std::move(r));
  }

  HttpClient::Impl& impl_;
  beast::tcp_stream stream_;
  SseEvent on_event_;  // empty: a plain request
  std::function<void(HttpResponse)> done_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::string_body>> parser_;
  beast::flat_buffer buffer_;
  size_t scanned_ = 0;  // body bytes already split into events
  int attempt_ = 0;
  bool finished_ = false;
};

}  // namespace

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::create(const std::string& url, std::string api_key,
                                                       double timeout_s, int io_threads) {
  static const std::regex kUrl(R"(http://(\[[^\]]+\]|[^:/\[\]]+)(?::(\d+))?(/.*)?)");
  std::smatch m;
  if (!std::regex_match(url, m, kUrl))
    return Status::error(
        StatusCode::invalid_argument,
        "--url " + url + ": expected http://HOST[:PORT][/PATH] (https is not supported)");
  auto impl = std::make_unique<Impl>();
  std::string host = m[1].str();
  const std::string port = m[2].matched ? m[2].str() : "80";
  impl->host = host + ":" + port;
  impl->base_path = m[3].matched ? m[3].str() : "";
  while (impl->base_path.ends_with('/')) impl->base_path.pop_back();
  if (impl->base_path.ends_with("/v1")) impl->base_path.resize(impl->base_path.size() - 3);
  impl->api_key = std::move(api_key);
  impl->timeout = std::chrono::milliseconds(int64_t(std::max(0.0, timeout_s) * 1000));
  if (host.starts_with('[')) host = host.substr(1, host.size() - 2);
  try {
    tcp::resolver resolver(impl->ioc);
    impl->endpoints = resolver.resolve(host, port);
  } catch (const std::exception& e) {
    return Status::error(StatusCode::invalid_argument,
                         "--url " + url + ": cannot resolve " + host + ": " + e.what());
  }
  for (int i = 0; i < std::max(1, io_threads); ++i)
    impl->threads.emplace_back([ioc = &impl->ioc] { ioc->run(); });
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

void HttpClient::post(const std::string& path, std::string body,
                      std::function<void(HttpResponse)> done) {
  std::make_shared<Call>(*impl_, http::verb::post, path, std::move(body), nullptr, std::move(done))
      ->start();
}

void HttpClient::post_stream(const std::string& path, std::string body, SseEvent on_event,
                             std::function<void(HttpResponse)> done) {
  std::make_shared<Call>(*impl_, http::verb::post, path, std::move(body), std::move(on_event),
                         std::move(done))
      ->start();
}

HttpResponse HttpClient::post_sync(const std::string& path, std::string body) {
  std::promise<HttpResponse> p;
  post(path, std::move(body), [&p](HttpResponse r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

HttpResponse HttpClient::get_sync(const std::string& path) {
  std::promise<HttpResponse> p;
  std::make_shared<Call>(*impl_, http::verb::get, path, std::string(), nullptr,
                         [&p](HttpResponse r) { p.set_value(std::move(r)); })
      ->start();
  return p.get_future().get();
}

}  // namespace invar::net
