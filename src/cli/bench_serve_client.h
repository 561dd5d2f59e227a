// One streamed /v1/completions request as `invar bench serve` sees it: when each SSE chunk
// arrived, how many tokens the server reports, and whether it succeeded.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace invar::cli {

using BenchClock = std::chrono::steady_clock;

struct StreamTarget {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string host;       // the Host header
  std::string base_path;  // "" or "/prefix", before /v1/...
  std::string api_key;
};

struct StreamResult {
  bool ok = false;
  std::string error;
  BenchClock::time_point start;
  std::vector<BenchClock::time_point> chunk_times;  // each SSE chunk that carried a token
  int prompt_tokens = 0;
  int completion_tokens = 0;  // from the final usage chunk
  std::string fingerprint;
};

// Sends `body` (a JSON completions request with "stream": true) and calls `done` on the
// io_context's thread when the stream ends or fails.
void start_stream(boost::asio::io_context& ioc, const StreamTarget& target, std::string body,
                  std::function<void(StreamResult)> done);

// A GET returning the body (empty on failure), run to completion on a private io_context.
std::string http_get(const StreamTarget& target, const std::string& path);

}  // namespace invar::cli
