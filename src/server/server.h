// `invar serve`: the OpenAI-compatible API over an Engine. Routes:
//   POST /v1/completions, POST /v1/chat/completions  (JSON or SSE with "stream": true)
//   GET  /v1/models, /v1/models/{name}
//   POST /tokenize, /detokenize  (vLLM's shapes: tokenize.h)
//   GET  /health   200, or 503 while shutting down
//   GET  /metrics  Prometheus text (invar's names and vLLM's)
// With an API key, /v1/*, /tokenize and /detokenize need "Authorization: Bearer KEY" (401
// otherwise). With allowed origins, browsers get CORS headers and preflight answers. SIGINT/SIGTERM
// stop the listener, let requests in flight finish (up to shutdown_timeout_s, then cancel them) and
// make run() return.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"
#include "server/http_server.h"
#include "server/tool_calls.h"

namespace invar::server {

struct ServerOptions {
  HttpOptions http;
  int io_threads = 2;   // network and JSON work; the forward pass has the engine's threads
  std::string api_key;  // empty: no authentication
  // CORS: the origins whose browser pages may call the API ("*": any); empty: no CORS headers,
  // so browsers keep other sites' pages out.
  std::vector<std::string> allowed_origins;
  std::string served_model_name;  // the name clients pass as "model"
  int max_choices = 16;           // n times prompts per request
  // How the model writes tool calls; unset: the format its chat template teaches.
  std::optional<ToolCallFormat> tool_call_format;
  double shutdown_timeout_s = 30;
  // Called once listening, with the bound port (useful with port 0).
  std::function<void(uint16_t port)> on_listening;
};

class Server {
 public:
  Server(engine::ServingEngine& engine, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until SIGINT/SIGTERM (or request_shutdown()), then shuts down gracefully.
  Status run();
  // Thread-safe: begins the same graceful shutdown as a signal.
  void request_shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace invar::server
