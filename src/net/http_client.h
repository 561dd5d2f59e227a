// The HTTP/1.1 client of invar's own tools (`invar verify --url`, `invar bench serve`) on
// Boost.Beast: JSON POSTs and GETs against an OpenAI-compatible server, plain or as a
// server-sent-event stream, many in flight at once on a few I/O threads. One connection per
// request (no keep-alive), so N requests in flight are N concurrent requests to the server.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace invar::net {

struct HttpResponse {
  int status = 0;  // 0: no HTTP response (see error)
  std::string body;
  std::string error;  // transport failure: connect, timeout, reset
  bool ok() const { return status == 200; }
};

// One `data:` payload of a server-sent-event stream and when it arrived.
using SseEvent = std::function<void(std::string_view data, std::chrono::steady_clock::time_point)>;

class HttpClient {
 public:
  // `url` is http://HOST[:PORT][/PREFIX]; a trailing /v1 is dropped (routes add it).
  // timeout_s > 0 bounds a whole plain request and each silence of a stream; <= 0: no limit.
  static Result<std::unique_ptr<HttpClient>> create(const std::string& url, std::string api_key,
                                                    double timeout_s, int io_threads = 2);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs `body` (JSON) to `path` (e.g. /v1/completions) and calls `done` on an I/O thread.
  // 429 and 503 answers are retried a few times with a growing delay.
  void post(const std::string& path, std::string body, std::function<void(HttpResponse)> done);
  HttpResponse post_sync(const std::string& path, std::string body);
  HttpResponse get_sync(const std::string& path);

  // POSTs a streaming request and calls `on_event` for each SSE `data:` payload as it arrives,
  // then `done` once the stream ends (its body holds the response only when the status is not
  // 200). Both run on an I/O thread; no retries (a stream's timing is what callers measure).
  void post_stream(const std::string& path, std::string body, SseEvent on_event,
                   std::function<void(HttpResponse)> done);

  struct Impl;  // the I/O context and its threads (http_client.cpp)

 private:
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace invar::net
