// `invar bench serve`: a load generator against a running OpenAI-compatible server. Requests
// arrive as one burst or as a Poisson process at --request-rate; prompt and output lengths are
// drawn uniformly around their means (vLLM's "random" dataset). Prompts are random token ids,
// so their length is exact; --ignore-eos makes output lengths exact too. Reports throughput and
// TTFT / ITL / TPOT / end-to-end latency percentiles.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <thread>

#include "cli/commands.h"
#include "core/hash.h"
#include "net/http_client.h"

namespace invar::cli {

namespace {

using BenchClock = std::chrono::steady_clock;

struct BenchServeArgs {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  std::string api_key;
  int num_requests = 64;
  double request_rate = 0;  // requests/s; 0: one burst
  int max_concurrency = 0;  // 0: unlimited
  int prompt_len = 128;
  int output_len = 64;
  double range_ratio = 0;  // lengths uniform in [len*(1-r), len*(1+r)]
  bool ignore_eos = true;
  double temperature = 0;  // 0: greedy
  double top_p = 1;
  uint64_t seed = 0;
  int max_token_id = 9999;  // prompt ids uniform in [min(100, max / 2), max]
  std::string json_out;
  // Ask for each token's logprob and print a digest of every request's text and logprobs: two
  // runs of one workload (e.g. two kernel paths that must give the same bits) compare by it.
  bool digest = false;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = size_t(std::ceil(p / 100.0 * double(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];  // nearest rank
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

struct Metrics {
  std::vector<double> ttft_ms, itl_ms, tpot_ms, e2e_ms;
  int ok = 0, failed = 0;
  long prompt_tokens = 0, output_tokens = 0;
  std::string first_error, fingerprint;
  std::vector<std::string> transcripts;  // --digest: per request, its text and logprobs
};

// Token timing of one streamed completion, from its SSE chunks.
struct StreamTiming {
  std::vector<BenchClock::time_point> token_times;  // chunks that carried a token
  int prompt_tokens = 0;
  int completion_tokens = 0;  // from the final usage chunk
  std::string fingerprint;
  bool saw_done = false;
  bool keep_transcript = false;
  std::string transcript;  // the text and logprob chunks, as sent (keep_transcript)

  void on_chunk(std::string_view data, BenchClock::time_point now) {
    if (data == "[DONE]") {
      saw_done = true;
      return;
    }
    auto chunk = nlohmann::json::parse(data, nullptr, false);
    if (chunk.is_discarded() || !chunk.is_object()) return;
    if (fingerprint.empty() && chunk.contains("system_fingerprint") &&
        chunk["system_fingerprint"].is_string()) {
      fingerprint = chunk["system_fingerprint"];
    }
    if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
      prompt_tokens = usage->value("prompt_tokens", 0);
      completion_tokens = usage->value("completion_tokens", 0);
    }
    auto choices = chunk.find("choices");
    if (choices == chunk.end() || !choices->is_array() || choices->empty()) return;
    // A token arrived if the chunk carries text, or carries none but is not the closing chunk
    // (a token whose text is empty or held back: a byte tokenizer's id past 255, half a UTF-8
    // character).
    const nlohmann::json& choice = (*choices)[0];
    if (keep_transcript) {
      if (auto t = choice.find("text"); t != choice.end() && t->is_string())
        transcript += t->get_ref<const std::string&>();
      if (auto l = choice.find("logprobs"); l != choice.end() && l->is_object())
        transcript += l->value("token_logprobs", nlohmann::json::array()).dump();
    }
    const auto text = choice.find("text");
    const bool has_text =
        text != choice.end() && text->is_string() && !text->get_ref<const std::string&>().empty();
    const auto finish = choice.find("finish_reason");
    const bool closing = finish != choice.end() && !finish->is_null();
    if (has_text || (text != choice.end() && !closing)) token_times.push_back(now);
  }
};

int run_bench_serve(const BenchServeArgs& a) {
  auto created = net::HttpClient::create(a.url, a.api_key, /*timeout_s=*/0);
  if (!created.ok()) {
    fmt::print(stderr, "error: {}\n", created.status().message());
    return 1;
  }
  net::HttpClient& client = **created;

  std::string model = a.model;
  if (model.empty()) {
    const net::HttpResponse r = client.get_sync("/v1/models");
    auto models = nlohmann::json::parse(r.body, nullptr, false);
    if (!r.ok() || models.is_discarded() || !models.contains("data") || models["data"].empty()) {
      fmt::print(stderr, "error: GET /v1/models failed ({}): is the server running at {}?\n",
                 r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error, a.url);
      return 1;
    }
    model = models["data"][0]["id"];
  }

  // The whole workload is drawn before the first request, from the seed alone.
  std::mt19937_64 rng(a.seed);
  auto length = [&](int mean_len) {
    int lo = std::max(1, int(mean_len * (1.0 - a.range_ratio)));
    int hi = std::max(lo, int(mean_len * (1.0 + a.range_ratio)));
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  // Inside any real vocabulary by default; --max-token-id for small ones (a random-weight
  // model's byte tokenizer has 256).
  std::uniform_int_distribution<int> token(std::min(100, a.max_token_id / 2), a.max_token_id);
  std::exponential_distribution<double> gap(a.request_rate > 0 ? a.request_rate : 1.0);
  struct Planned {
    double at_s;
    std::string body;
  };
  std::vector<Planned> plan;
  double t = 0;
  for (int i = 0; i < a.num_requests; ++i) {
    std::vector<int> prompt(size_t(length(a.prompt_len)));
    for (int& id : prompt) id = token(rng);
    nlohmann::json body = {{"model", model},
                           {"prompt", prompt},
                           {"max_tokens", length(a.output_len)},
                           {"temperature", a.temperature},
                           {"top_p", a.top_p},
                           {"seed", i},
                           {"ignore_eos", a.ignore_eos},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
    if (a.digest) body["logprobs"] = 0;
    plan.push_back({t, body.dump()});
    if (a.request_rate > 0) t += gap(rng);
  }

  // This thread paces the requests (arrival times, --max-concurrency); the client's I/O
  // threads record each finished stream.
  std::mutex mu;
  std::condition_variable finished;
  Metrics metrics;
  metrics.transcripts.resize(plan.size());
  int in_flight = 0;
  auto ms = [](BenchClock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  };
  auto record = [&](const StreamTiming& st, const net::HttpResponse& r,
                    BenchClock::time_point start, size_t index) {
    std::lock_guard<std::mutex> lock(mu);
    metrics.transcripts[index] = st.transcript;
    --in_flight;
    finished.notify_all();
    if (!r.ok() || !st.saw_done || st.token_times.empty()) {
      metrics.failed++;
      if (metrics.first_error.empty()) {
        metrics.first_error = !r.error.empty() ? r.error
                              : !r.ok()        ? "HTTP " + std::to_string(r.status) + ": " + r.body
                              : !st.saw_done   ? "the stream ended without [DONE]"
                                               : "no tokens";
      }
      return;
    }
    metrics.ok++;
    metrics.prompt_tokens += st.prompt_tokens;
    metrics.output_tokens += st.completion_tokens;
    if (metrics.fingerprint.empty()) metrics.fingerprint = st.fingerprint;
    metrics.ttft_ms.push_back(ms(st.token_times.front() - start));
    for (size_t i = 1; i < st.token_times.size(); ++i)
      metrics.itl_ms.push_back(ms(st.token_times[i] - st.token_times[i - 1]));
    const double e2e = ms(st.token_times.back() - start);
    metrics.e2e_ms.push_back(e2e);
    if (st.completion_tokens > 1)
      metrics.tpot_ms.push_back((e2e - metrics.ttft_ms.back()) / (st.completion_tokens - 1));
  };
  fmt::print(
      stderr, "bench serve: {} requests to {} ({}), prompt ~{} tokens, output ~{} tokens, {}\n",
      a.num_requests, a.url, model, a.prompt_len, a.output_len,
      a.request_rate > 0 ? fmt::format("{:.2f} req/s", a.request_rate) : std::string("one burst"));
  const auto t0 = BenchClock::now();
  for (size_t index = 0; index < plan.size(); ++index) {
    Planned& p = plan[index];
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<BenchClock::duration>(
                                           std::chrono::duration<double>(p.at_s)));
    {
      std::unique_lock<std::mutex> lock(mu);
      finished.wait(lock, [&] { return a.max_concurrency == 0 || in_flight < a.max_concurrency; });
      ++in_flight;
    }
    auto timing = std::make_shared<StreamTiming>();
    timing->keep_transcript = a.digest;
    const auto start = BenchClock::now();
    client.post_stream(
        "/v1/completions", std::move(p.body),
        [timing](std::string_view data, BenchClock::time_point now) {
          timing->on_chunk(data, now);
        },
        [timing, start, index, &record](net::HttpResponse r) { record(*timing, r, start, index); });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    finished.wait(lock, [&] { return in_flight == 0; });
  }
  double seconds = std::chrono::duration<double>(BenchClock::now() - t0).count();

  auto row = [](const char* name, const std::vector<double>& v) {
    fmt::print("{:<24}{:>10.2f}{:>10.2f}{:>10.2f}{:>10.2f}\n", name, mean(v), percentile(v, 50),
               percentile(v, 90), percentile(v, 99));
  };
  fmt::print("server fingerprint: {}\n", metrics.fingerprint.empty() ? "?" : metrics.fingerprint);
  if (metrics.fingerprint.find("-cpu") != std::string::npos)
    fmt::print(
        "kernel mode: the CPU backend has one mode (invariant); invariant vs fast side by "
        "side needs the CUDA backend\n");
  fmt::print("requests: {} ok, {} failed{}\n", metrics.ok, metrics.failed,
             metrics.first_error.empty() ? "" : " (first: " + metrics.first_error + ")");
  fmt::print("duration: {:.2f} s\n", seconds);
  if (a.digest) {
    Fnv1a64 h;
    for (const std::string& t : metrics.transcripts) h.add_bytes(t).add(uint64_t(t.size()));
    fmt::print("outputs digest: {:016x} (every request's text and token logprobs, in order)\n",
               h.value());
  }
  fmt::print("throughput: {:.2f} req/s, {:.1f} output tok/s, {:.1f} total tok/s\n",
             metrics.ok / seconds, metrics.output_tokens / seconds,
             (metrics.prompt_tokens + metrics.output_tokens) / seconds);
  fmt::print("{:<24}{:>10}{:>10}{:>10}{:>10}\n", "latency (ms)", "mean", "p50", "p90", "p99");
  row("time to first token", metrics.ttft_ms);
  row("inter-token latency", metrics.itl_ms);
  row("time per output token", metrics.tpot_ms);
  row("end to end", metrics.e2e_ms);

  if (!a.json_out.empty()) {
    auto stats = [](const std::vector<double>& v) {
      return nlohmann::json{{"count", v.size()},
                            {"mean", mean(v)},
                            {"p50", percentile(v, 50)},
                            {"p90", percentile(v, 90)},
                            {"p99", percentile(v, 99)}};
    };
    nlohmann::json out = {{"url", a.url},
                          {"model", model},
                          {"fingerprint", metrics.fingerprint},
                          {"num_requests", a.num_requests},
                          {"request_rate", a.request_rate},
                          {"max_concurrency", a.max_concurrency},
                          {"prompt_len", a.prompt_len},
                          {"output_len", a.output_len},
                          {"range_ratio", a.range_ratio},
                          {"seed", a.seed},
                          {"ok", metrics.ok},
                          {"failed", metrics.failed},
                          {"duration_s", seconds},
                          {"output_tokens", metrics.output_tokens},
                          {"prompt_tokens", metrics.prompt_tokens},
                          {"ttft_ms", stats(metrics.ttft_ms)},
                          {"itl_ms", stats(metrics.itl_ms)},
                          {"tpot_ms", stats(metrics.tpot_ms)},
                          {"e2e_ms", stats(metrics.e2e_ms)}};
    std::ofstream(a.json_out) << out.dump(2) << "\n";
  }
  return metrics.failed == 0 ? 0 : 1;
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchServeArgs>();
  auto* cmd = bench->add_subcommand("serve", "Load-test a running OpenAI-compatible server");
  cmd->add_option("--url", a->url, "Server base URL (http://HOST:PORT)");
  cmd->add_option("--model", a->model, "Model name (default: the server's first model)");
  cmd->add_option("--api-key", a->api_key, "Bearer token");
  cmd->add_option("-n,--num-requests", a->num_requests, "Requests to send")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--request-rate", a->request_rate, "Poisson arrivals per second (0: one burst)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-concurrency", a->max_concurrency, "Requests in flight at most (0: any)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--prompt-len", a->prompt_len, "Mean prompt tokens")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--output-len", a->output_len, "Mean output tokens")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--range-ratio", a->range_ratio, "Lengths uniform in mean*(1 +- ratio)")
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--ignore-eos", a->ignore_eos, "Generate exactly the drawn output length");
  cmd->add_option("--temperature", a->temperature,
                  "Sampling temperature of every request (0: greedy)")
      ->check(CLI::Range(0.0, 2.0));
  cmd->add_option("--top-p", a->top_p, "Nucleus sampling mass of every request")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->seed, "Seed of the workload (request i is sampled with seed i)");
  cmd->add_option("--max-token-id", a->max_token_id,
                  "Largest prompt token id (prompts are random ids up to it; default 9999)")
      ->check(CLI::Range(1, INT32_MAX));
  cmd->add_option("--json", a->json_out, "Also write the results to this JSON file");
  cmd->add_flag("--digest", a->digest,
                "Ask for token logprobs and print a digest of every request's text and logprobs "
                "(two runs that must give the same bits compare by it)");
  cmd->callback([a] { set_exit_code(run_bench_serve(*a)); });
}

}  // namespace invar::cli
