// GET /metrics: the engine's counters and latency histograms, and the server's own, in the
// Prometheus text exposition format (version 0.0.4).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "engine/stats.h"

namespace invar::server {

// Updated from any io thread.
struct ServerCounters {
  std::atomic<uint64_t> connections_total{0};
  std::atomic<int64_t> connections_open{0};
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> http_4xx{0};
  std::atomic<uint64_t> http_5xx{0};
  std::atomic<uint64_t> rejected_queue_full{0};   // 429s
  std::atomic<uint64_t> cancelled_disconnect{0};  // engine requests cancelled by a gone client
  std::atomic<int64_t> engine_requests_in_flight{0};
};

std::string format_metrics(const engine::EngineStats& stats, const ServerCounters& counters,
                           const std::string& model_name);

}  // namespace invar::server
