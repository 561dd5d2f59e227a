// A minimal SSE client on Beast for `invar bench serve`; see bench_serve_client.h.
#include "cli/bench_serve_client.h"

#include <boost/asio/connect.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <nlohmann/json.hpp>

namespace invar::cli {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(net::io_context& ioc, const StreamTarget& target, std::string body,
         std::function<void(StreamResult)> done)
      : socket_(ioc), target_(target), done_(std::move(done)) {
    request_ = {http::verb::post, target.base_path + "/v1/completions", 11};
    request_.set(http::field::host, target.host);
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::accept, "text/event-stream");
    if (!target.api_key.empty())
      request_.set(http::field::authorization, "Bearer " + target.api_key);
    request_.keep_alive(false);
    request_.body() = std::move(body);
    request_.prepare_payload();
    parser_.body_limit(64u << 20);
  }

  void start() {
    result_.start = BenchClock::now();
    socket_.async_connect(target_.endpoint, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->fail("connect: " + ec.message());
      http::async_write(self->socket_, self->request_, [self](beast::error_code ec, size_t) {
        if (ec) return self->fail("write: " + ec.message());
        self->read();
      });
    });
  }

 private:
  void read() {
    http::async_read_some(
        socket_, buffer_, parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec && ec != http::error::end_of_stream) return fail("read: " + ec.message());
    if (parser_.is_header_done() && parser_.get().result() != http::status::ok) {
      if (!parser_.is_done() && !ec) return read();
      return fail("HTTP " + std::to_string(parser_.get().result_int()) + ": " +
                  parser_.get().body());
    }
    scan_events();
    if (parser_.is_done() || ec) {
      result_.ok = saw_done_;
      if (!saw_done_) result_.error = "the stream ended without [DONE]";
      return finish();
    }
    read();
  }

  // SSE events are separated by a blank line; each `data:` line is one chunk.
  void scan_events() {
    const std::string& body = parser_.get().body();
    const auto now = BenchClock::now();
    for (size_t end; (end = body.find("\n\n", scanned_)) != std::string::npos; scanned_ = end + 2) {
      std::string_view event(body.data() + scanned_, end - scanned_);
      if (!event.starts_with("data: ")) continue;
      event.remove_prefix(6);
      if (event == "[DONE]") {
        saw_done_ = true;
        continue;
      }
      auto chunk = nlohmann::json::parse(event, nullptr, false);
      if (chunk.is_discarded()) continue;
      if (result_.fingerprint.empty() && chunk.contains("system_fingerprint") &&
          chunk["system_fingerprint"].is_string()) {
        result_.fingerprint = chunk["system_fingerprint"];
      }
      if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
        result_.prompt_tokens = usage->value("prompt_tokens", 0);
        result_.completion_tokens = usage->value("completion_tokens", 0);
      }
      auto choices = chunk.find("choices");
      if (choices == chunk.end() || !choices->is_array() || choices->empty()) continue;
      // A token arrived if the chunk carries text, or carries none but is not the closing
      // chunk (a token whose text is empty or held back: a byte tokenizer's id past 255, half a
      // UTF-8 character).
      const nlohmann::json& choice = (*choices)[0];
      const auto text = choice.find("text");
      const bool has_text = text != choice.end() && text->is_string() &&
                            !text->get_ref<const std::string&>().empty();
      const auto finish = choice.find("finish_reason");
      const bool closing = finish != choice.end() && !finish->is_null();
      if (has_text || (text != choice.end() && !closing)) result_.chunk_times.push_back(now);
    }
  }

  void fail(std::string why) {
    result_.ok = false;
    result_.error = std::move(why);
    finish();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    done_(std::move(result_));
  }

  tcp::socket socket_;
  StreamTarget target_;
  std::function<void(StreamResult)> done_;
  http::request<http::string_body> request_;
  http::response_parser<http::string_body> parser_;
  beast::flat_buffer buffer_;
  StreamResult result_;
  size_t scanned_ = 0;
  bool saw_done_ = false;
  bool finished_ = false;
};

}  // namespace

void start_stream(net::io_context& ioc, const StreamTarget& target, std::string body,
                  std::function<void(StreamResult)> done) {
  std::make_shared<Stream>(ioc, target, std::move(body), std::move(done))->start();
}

std::string http_get(const StreamTarget& target, const std::string& path) {
  try {
    net::io_context ioc;
    tcp::socket socket(ioc);
    socket.connect(target.endpoint);
    http::request<http::empty_body> req{http::verb::get, target.base_path + path, 11};
    req.set(http::field::host, target.host);
    if (!target.api_key.empty()) req.set(http::field::authorization, "Bearer " + target.api_key);
    req.keep_alive(false);
    http::write(socket, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    return res.result() == http::status::ok ? res.body() : std::string();
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace invar::cli
