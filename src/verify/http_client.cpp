#include "verify/http_client.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <regex>
#include <thread>
#include <vector>

namespace invar::verify {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {
constexpr int kRetries = 6;  // on 429 / 503
}

struct HttpClient::Impl {
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  std::vector<std::thread> threads;
  tcp::resolver::results_type endpoints;
  std::string host;       // the Host header
  std::string base_path;  // "" or "/prefix"
  std::string api_key;
  std::chrono::milliseconds timeout{0};

  ~Impl() {
    work.reset();
    ioc.stop();
    for (auto& t : threads) t.join();
  }
};

namespace {

class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(HttpClient::Impl& impl, http::verb verb, const std::string& path, std::string body,
       std::function<void(HttpResponse)> done)
      : impl_(impl), stream_(net::make_strand(impl.ioc)), done_(std::move(done)) {
    req_ = {verb, impl.base_path + path, 11};
    req_.set(http::field::host, impl.host);
    req_.set(http::field::user_agent, "invar-verify");
    if (verb == http::verb::post) req_.set(http::field::content_type, "application/json");
    if (!impl.api_key.empty()) req_.set(http::field::authorization, "Bearer " + impl.api_key);
    req_.keep_alive(false);
    req_.body() = std::move(body);
    req_.prepare_payload();
  }

  void start() {
    parser_.emplace();
    parser_->body_limit(256u << 20);
    buffer_.clear();
    stream_.expires_after(impl_.timeout);
    stream_.async_connect(impl_.endpoints,
                          [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                            if (ec) return self->finish({0, {}, "connect: " + ec.message()});
                            self->write();
                          });
  }

 private:
  void write() {
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->finish({0, {}, "write: " + ec.message()});
      http::async_read(self->stream_, self->buffer_, *self->parser_,
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->finish({0, {}, "read: " + ec.message()});
                         auto& res = self->parser_->get();
                         self->finish({int(res.result_int()), std::move(res.body()), {}});
                       });
    });
  }

  void finish(HttpResponse r) {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    if ((r.status == 429 || r.status == 503) && attempt_ < kRetries) {
      // Busy: retry after 0.25, 0.5, 1, ... seconds.
      auto timer = std::make_shared<net::steady_timer>(stream_.get_executor());
      timer->expires_after(std::chrono::milliseconds(250 << attempt_++));
      timer->async_wait([self = shared_from_this(), timer](beast::error_code) { self->start(); });
      return;
    }
    done_(std::move(r));
  }

  HttpClient::Impl& impl_;
  beast::tcp_stream stream_;
  std::function<void(HttpResponse)> done_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::string_body>> parser_;
  beast::flat_buffer buffer_;
  int attempt_ = 0;
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
  impl->timeout = std::chrono::milliseconds(int64_t(timeout_s * 1000));
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
  std::make_shared<Call>(*impl_, http::verb::post, path, std::move(body), std::move(done))->start();
}

HttpResponse HttpClient::post_sync(const std::string& path, std::string body) {
  std::promise<HttpResponse> p;
  post(path, std::move(body), [&p](HttpResponse r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

HttpResponse HttpClient::get_sync(const std::string& path) {
  std::promise<HttpResponse> p;
  std::make_shared<Call>(*impl_, http::verb::get, path, std::string(), [&p](HttpResponse r) {
    p.set_value(std::move(r));
  })->start();
  return p.get_future().get();
}

}  // namespace invar::verify
