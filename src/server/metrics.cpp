// Prometheus text for /metrics; see metrics.h.
#include "server/metrics.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

namespace invar::server {

namespace {

class Writer {
 public:
  explicit Writer(std::string labels) : labels_(std::move(labels)) {}

  void metric(const char* name, const char* type, const char* help, double value) {
    out_ += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0}{{{3}}} {4}\n", name, help, type,
                        labels_, value);
  }

  // One series per label value (`label`="value"), under one HELP and TYPE.
  void labeled(const char* name, const char* type, const char* help, const char* label,
               const std::vector<std::pair<const char*, double>>& values) {
    out_ += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n", name, help, type);
    for (const auto& [value_name, value] : values)
      out_ += fmt::format("{}{{{},{}=\"{}\"}} {}\n", name, labels_, label, value_name, value);
  }

  void histogram(const char* name, const char* help, const engine::Histogram& h) {
    out_ += fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
    for (size_t i = 0; i < h.kBounds.size(); ++i)
      out_ +=
          fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels_, h.kBounds[i], h.counts[i]);
    out_ += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels_, h.count);
    out_ += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels_, h.sum, name, labels_,
                        h.count);
  }

  std::string take() { return std::move(out_); }

 private:
  std::string labels_;
  std::string out_;
};

// A label value with Prometheus' escapes.
std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// The main series again under vLLM's names (its V1 engine's), so that dashboards and alerts
// made for vLLM work unchanged. Same label (model_name), same meaning where invar has the same
// quantity; docs/server.md lists them.
void write_vllm_metrics(Writer& w, const engine::EngineStats& s) {
  w.metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
           s.running);
  w.metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
           s.waiting);
  w.metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
           s.kv_blocks_total > 0 ? double(s.kv_blocks_used) / s.kv_blocks_total : 0.0);
  w.metric("vllm:prompt_tokens_total", "counter",
           "Number of prefill tokens processed (computed or from the prefix cache).",
           double(s.prompt_tokens + s.cached_prompt_tokens));
  w.metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
           double(s.generated_tokens));
  w.metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions.",
           double(s.preemptions));
  const auto& f = s.finished_by_reason;  // stop, length, cancelled, error
  w.labeled("vllm:request_success_total", "counter", "Count of finished requests by reason.",
            "finished_reason",
            {{"stop", double(f[0])},
             {"length", double(f[1])},
             {"abort", double(f[2])},
             {"error", double(f[3])}});
  w.histogram("vllm:e2e_request_latency_seconds", "Histogram of end-to-end request latency.",
              s.e2e_request_latency);
  w.histogram("vllm:request_queue_time_seconds",
              "Histogram of time spent waiting in the queue before first admission.", s.queue_time);
  w.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token.",
              s.time_to_first_token);
  w.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency.",
              s.inter_token_latency);
}

}  // namespace

std::string format_metrics(const engine::EngineStats& s, const ServerCounters& c,
                           const std::string& model_name) {
  Writer w(fmt::format("model_name=\"{}\"", escape_label(model_name)));
  w.metric("invar_num_requests_waiting", "gauge", "Requests queued, not yet admitted.", s.waiting);
  w.metric("invar_num_requests_running", "gauge", "Sequences holding KV blocks.", s.running);
  w.metric("invar_kv_blocks_total", "gauge", "KV cache blocks.", s.kv_blocks_total);
  w.metric("invar_kv_blocks_used", "gauge", "KV blocks referenced by a live sequence.",
           s.kv_blocks_used);
  w.metric("invar_kv_blocks_cached", "gauge", "Free KV blocks holding a reusable prefix.",
           s.kv_blocks_cached);
  w.metric("invar_kv_cache_usage_ratio", "gauge", "Used over total KV blocks.",
           s.kv_blocks_total > 0 ? double(s.kv_blocks_used) / s.kv_blocks_total : 0.0);
  w.metric("invar_generation_tokens_per_second", "gauge",
           "Generated tokens per second over the last few seconds.", s.generated_tokens_per_second);
  w.metric("invar_requests_finished_total", "counter", "Engine requests finished.",
           double(s.requests_finished));
  w.metric("invar_prompt_tokens_total", "counter", "Prompt tokens computed (not cached).",
           double(s.prompt_tokens));
  w.metric("invar_cached_prompt_tokens_total", "counter",
           "Prompt tokens served from the prefix cache.", double(s.cached_prompt_tokens));
  w.metric("invar_generation_tokens_total", "counter", "Tokens generated.",
           double(s.generated_tokens));
  w.metric("invar_preemptions_total", "counter", "Sequences preempted for recompute.",
           double(s.preemptions));
  w.metric("invar_steps_total", "counter", "Forward steps.", double(s.steps));
  w.metric("invar_scheduling_seconds_total", "counter", "Host time spent planning steps.",
           s.scheduling_seconds);
  w.metric("invar_forward_seconds_total", "counter", "Time in the forward pass.",
           s.forward_seconds);
  w.histogram("invar_time_to_first_token_seconds", "Time from arrival to the first token.",
              s.time_to_first_token);
  w.histogram("invar_inter_token_latency_seconds", "Time between consecutive tokens.",
              s.inter_token_latency);
  w.histogram("invar_step_seconds", "Duration of one engine step.", s.step_seconds);
  w.histogram("invar_e2e_request_latency_seconds", "Time from arrival to the last event.",
              s.e2e_request_latency);
  w.histogram("invar_queue_time_seconds", "Time from arrival to first admission.", s.queue_time);

  w.metric("invar_http_connections_open", "gauge", "Open HTTP connections.",
           double(c.connections_open.load()));
  w.metric("invar_http_connections_total", "counter", "Accepted HTTP connections.",
           double(c.connections_total.load()));
  w.metric("invar_http_requests_total", "counter", "HTTP requests received.",
           double(c.http_requests.load()));
  w.metric("invar_http_responses_4xx_total", "counter", "Responses with a 4xx status.",
           double(c.http_4xx.load()));
  w.metric("invar_http_responses_5xx_total", "counter", "Responses with a 5xx status.",
           double(c.http_5xx.load()));
  w.metric("invar_requests_rejected_queue_full_total", "counter",
           "Requests refused with 429 because the engine queue was full.",
           double(c.rejected_queue_full.load()));
  w.metric("invar_requests_cancelled_disconnect_total", "counter",
           "Engine requests cancelled because the client went away.",
           double(c.cancelled_disconnect.load()));
  w.metric("invar_engine_requests_in_flight", "gauge",
           "Engine requests submitted by the server and not yet finished.",
           double(c.engine_requests_in_flight.load()));
  write_vllm_metrics(w, s);
  return w.take();
}

}  // namespace invar::server
