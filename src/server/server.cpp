// Routes, authentication and the graceful shutdown of `invar serve`; see server.h.
#include "server/server.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <csignal>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "server/completion_job.h"
#include "server/completion_request.h"
#include "server/completion_response.h"
#include "server/metrics.h"
#include "server/tokenize.h"
#include "tokenizer/chat_template.h"

namespace invar::server {

namespace {

// Compares every byte whatever the first difference, so timing does not leak the key.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

void send_error(Exchange& ex, const ApiError& e, const HeaderList& extra = {}) {
  ex.respond(http::status(e.status), "application/json", error_body(e), extra);
}

bool iequals(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

// A completion body is JSON: sent as such (application/json, or a +json type), or with no
// Content-Type at all. Anything else (a form, plain text) is refused rather than read as JSON,
// as vLLM refuses it.
std::optional<ApiError> check_content_type(const HttpRequest& req) {
  const auto field = req[http::field::content_type];
  std::string_view value(field.data(), field.size());
  std::string_view type = value.substr(0, value.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  if (type.empty() || iequals(type, "application/json")) return std::nullopt;
  constexpr std::string_view kApp = "application/", kJson = "+json";
  if (type.size() > kApp.size() + kJson.size() && iequals(type.substr(0, kApp.size()), kApp) &&
      iequals(type.substr(type.size() - kJson.size()), kJson))
    return std::nullopt;
  return ApiError{415,
                  fmt::format("Content-Type '{}' is not supported: send the body as JSON with "
                              "'Content-Type: application/json'",
                              value),
                  "invalid_request_error", "", "unsupported_media_type"};
}

}  // namespace

struct Server::Impl {
  Impl(engine::ServingEngine& e, ServerOptions o)
      : engine(e),
        options(std::move(o)),
        created(std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count()),
        ioc(std::max(1, options.io_threads)),
        work(net::make_work_guard(ioc)),
        http(
            ioc, options.http,
            [this](HttpRequest&& r, std::shared_ptr<Exchange> x) {
              handle(std::move(r), std::move(x));
            },
            counters),
        signals(ioc, SIGINT, SIGTERM),
        grammars(engine.bundle().tokenizer, engine.bundle().model.config.vocab_size),
        shutdown_timer(ioc) {
    limits.served_model = options.served_model_name;
    limits.max_context = engine.options().max_context;
    limits.max_choices = options.max_choices;
    limits.tool_format = options.tool_call_format.value_or(ToolCallFormat::hermes);
    if (!options.tool_call_format) {
      if (auto tmpl = engine.bundle().tokenizer.chat_template(); tmpl.ok())
        limits.tool_format = tool_call_format_for_template((*tmpl)->source());
    }
  }

  // CORS (--allowed-origins): the response headers a browser needs to let the calling page
  // read the answer; true when the request is a preflight (OPTIONS with
  // Access-Control-Request-Method), which is answered here, before authentication: browsers
  // send no credentials with it.
  bool cors(const HttpRequest& req, Exchange& ex) {
    if (options.allowed_origins.empty()) return false;
    const std::string origin(req[http::field::origin]);
    if (origin.empty()) return false;
    bool any = false, listed = false;
    for (const auto& o : options.allowed_origins) {
      any = any || o == "*";
      listed = listed || o == origin;
    }
    if (!any && !listed) return false;
    ex.add_header("Access-Control-Allow-Origin", any ? "*" : origin);
    if (!any) ex.add_header("Vary", "Origin");
    if (req.method() != http::verb::options ||
        req[http::field::access_control_request_method].empty())
      return false;
    const std::string asked(req[http::field::access_control_request_headers]);
    ex.add_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    ex.add_header("Access-Control-Allow-Headers",
                  asked.empty() ? "Authorization, Content-Type" : asked);
    ex.add_header("Access-Control-Max-Age", "600");
    ex.respond(http::status::no_content, "", "");
    return true;
  }

  void handle(HttpRequest&& req, std::shared_ptr<Exchange> ex) {
    std::string_view target(req.target().data(), req.target().size());
    std::string_view path = target.substr(0, target.find('?'));
    const auto method = req.method();
    if (cors(req, *ex)) return;

    const bool protected_path =
        path.starts_with("/v1/") || path == "/tokenize" || path == "/detokenize";
    if (protected_path && !options.api_key.empty()) {
      std::string_view auth(req[http::field::authorization].data(),
                            req[http::field::authorization].size());
      constexpr std::string_view kBearer = "Bearer ";
      if (!auth.starts_with(kBearer) ||
          !same_secret(auth.substr(kBearer.size()), options.api_key)) {
        return send_error(*ex,
                          {401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                           "invalid_request_error", "", "invalid_api_key"},
                          {{"WWW-Authenticate", "Bearer"}});
      }
    }

    auto only = [&](http::verb allowed) {
      if (method == allowed) return true;
      send_error(*ex,
                 {405,
                  fmt::format("{} is not allowed on {}; use {}", std::string(req.method_string()),
                              path, std::string(http::to_string(allowed))),
                  "invalid_request_error", "", "method_not_allowed"},
                 {{"Allow", std::string(http::to_string(allowed))}});
      return false;
    };

    if (path == "/health") {
      if (!only(http::verb::get)) return;
      if (draining)
        return ex->respond(http::status::service_unavailable, "application/json",
                           R"({"status":"shutting down"})");
      return ex->respond(http::status::ok, "application/json", R"({"status":"ok"})");
    }
    if (path == "/metrics") {
      if (!only(http::verb::get)) return;
      return ex->respond(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                         format_metrics(engine.stats(), counters, options.served_model_name));
    }
    if (path == "/v1/models") {
      if (!only(http::verb::get)) return;
      return ex->respond(http::status::ok, "application/json",
                         format_model_list(options.served_model_name, created, limits.max_context));
    }
    if (path.starts_with("/v1/models/")) {
      if (!only(http::verb::get)) return;
      std::string_view name = path.substr(std::string_view("/v1/models/").size());
      if (name != options.served_model_name) {
        return send_error(*ex, {404, fmt::format("The model `{}` does not exist", name),
                                "invalid_request_error", "model", "model_not_found"});
      }
      return ex->respond(http::status::ok, "application/json",
                         format_model(options.served_model_name, created, limits.max_context));
    }
    if (path == "/tokenize" || path == "/detokenize") {
      if (!only(http::verb::post)) return;
      const auto& tok = engine.bundle().tokenizer;
      RouteReply reply = path == "/tokenize" ? tokenize(req.body(), tok, limits)
                                             : detokenize(req.body(), tok, limits);
      if (reply.error) return send_error(*ex, *reply.error);
      return ex->respond(http::status::ok, "application/json", std::move(reply.body));
    }
    if (path == "/v1/completions" || path == "/v1/chat/completions") {
      if (!only(http::verb::post)) return;
      if (draining) {
        return send_error(
            *ex, {503, "the server is shutting down", "server_error", "", "shutting_down"});
      }
      if (auto e = check_content_type(req)) return send_error(*ex, *e);
      Endpoint endpoint = path == "/v1/completions" ? Endpoint::completions : Endpoint::chat;
      CompletionRequest request;
      if (auto e = parse_completion_request(endpoint, req.body(), engine.bundle().tokenizer, limits,
                                            &request, &grammars)) {
        return send_error(*ex, *e);
      }
      return start_completion(engine, std::move(request), std::move(ex), counters);
    }
    send_error(*ex, {404, fmt::format("no route {} {}", std::string(req.method_string()), path),
                     "invalid_request_error", "", "not_found"});
  }

  void begin_shutdown() {
    if (draining.exchange(true)) return;
    http.stop_accepting();
    fmt::print(stderr, "invar serve: shutting down; waiting up to {:.0f} s for {} requests\n",
               options.shutdown_timeout_s, http.active_exchanges());
    deadline = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(options.shutdown_timeout_s));
    poll_shutdown();
  }

  // Polled rather than signalled: exchanges end on many strands, and 50 ms is nothing here.
  void poll_shutdown() {
    auto now = std::chrono::steady_clock::now();
    if (http.active_exchanges() == 0) return finish();
    if (now >= deadline) {
      if (cancelled_in_flight) return finish();
      fmt::print(stderr, "invar serve: {} requests still running; cancelling them\n",
                 http.active_exchanges());
      cancelled_in_flight = true;
      engine.shutdown(/*drain=*/false);
      deadline = now + std::chrono::seconds(5);  // for the cancelled streams to be written out
    }
    shutdown_timer.expires_after(std::chrono::milliseconds(50));
    shutdown_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) poll_shutdown();
    });
  }

  void finish() {
    work.reset();
    ioc.stop();
  }

  engine::ServingEngine& engine;
  ServerOptions options;
  RequestLimits limits;
  int64_t created;
  ServerCounters counters;  // outlives the io_context: sessions count themselves out on destruction
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work;
  HttpServer http;
  net::signal_set signals;
  engine::GrammarCompiler grammars;  // structured output, for this model's vocabulary
  net::steady_timer shutdown_timer;
  std::atomic<bool> draining{false};
  bool cancelled_in_flight = false;
  std::chrono::steady_clock::time_point deadline;
};

Server::Server(engine::ServingEngine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {}

Server::~Server() = default;

void Server::request_shutdown() {
  net::post(impl_->ioc, [impl = impl_.get()] { impl->begin_shutdown(); });
}

Status Server::run() {
  Impl& s = *impl_;
  INVAR_RETURN_IF_ERROR(s.http.listen());
  s.signals.async_wait([&s](boost::system::error_code ec, int) {
    if (!ec) s.begin_shutdown();
  });
  if (s.options.on_listening) s.options.on_listening(s.http.port());
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, s.options.io_threads); ++i)
    threads.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  for (auto& t : threads) t.join();
  return {};
}

}  // namespace invar::server
