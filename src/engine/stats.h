// Counters and latency histograms the engine keeps for /metrics.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace invar::engine {

// Cumulative histogram with fixed bucket bounds (seconds), Prometheus-style.
// The bounds reach from a fast CPU step to a long request on a loaded CPU server.
struct Histogram {
  static constexpr std::array<double, 19> kBounds{0.001, 0.0025, 0.005, 0.01,  0.025, 0.05, 0.1,
                                                  0.25,  0.5,    1.0,   2.5,   5.0,   10.0, 30.0,
                                                  60.0,  120.0,  300.0, 600.0, 1800.0};
  std::array<uint64_t, kBounds.size()> counts{};  // observations <= bound (cumulative)
  uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
  void add(const Histogram& other);  // other's observations too (engines summed)
};

struct EngineStats {
  int waiting = 0;    // queued requests not yet admitted
  int running = 0;    // sequences holding KV blocks
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;     // referenced by a live sequence
  int kv_blocks_cached = 0;   // free but holding a reusable prefix
  uint64_t requests_finished = 0;
  // requests_finished by how they ended: stop, length, cancelled, error (FinishReason - 1)
  std::array<uint64_t, 4> finished_by_reason{};
  uint64_t prompt_tokens = 0;      // processed (computed, not cached)
  uint64_t cached_prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t steps = 0;
  double generated_tokens_per_second = 0;  // over the last few seconds
  Histogram time_to_first_token;
  Histogram e2e_request_latency;  // arrival to the last event, per finished request
  Histogram queue_time;           // arrival to first admission, per finished request
  Histogram inter_token_latency;
  Histogram step_seconds;
  double scheduling_seconds = 0;  // total host time spent planning steps
  double forward_seconds = 0;     // total time in the forward pass
};

}  // namespace invar::engine
