// A small HTTP/1.1 client on Boost.Beast for `invar verify --url`: JSON POSTs and GETs against
// an OpenAI-compatible server, many in flight at once on a few I/O threads. One connection per
// request (no keep-alive), so N requests in flight are N concurrent requests to the server.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace invar::verify {

struct HttpResponse {
  int status = 0;  // 0: no HTTP response (see error)
  std::string body;
  std::string error;  // transport failure: connect, timeout, reset
  bool ok() const { return status == 200; }
};

class HttpClient {
 public:
  // `url` is http://HOST[:PORT][/PREFIX]; a trailing /v1 is dropped (routes add it).
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

  struct Impl;  // the I/O context and its threads (http_client.cpp)

 private:
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace invar::verify
