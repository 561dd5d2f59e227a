// Host overhead of the engine per step at a given number of concurrent sequences: time spent
// planning the step (scheduler, batch plan) and the whole non-forward part of a step
// (planning + sampling + output text + events) as a share of the step, measured in the same
// run as the forward pass it is compared with.
//   usage: bench_engine_overhead MODEL [--seqs 64] [--tokens 64] [--threads 0]
#include <fmt/core.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <string>

#include "engine/engine.h"

using namespace invar;

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: {} MODEL [--seqs N] [--tokens N] [--threads N]\n", argv[0]);
    return 2;
  }
  int seqs = 64, tokens = 64, threads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seqs")) seqs = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
  }
  auto bundle = engine::open_model(argv[1], {});
  if (!bundle.ok()) {
    fmt::print(stderr, "error: {}\n", bundle.status().message());
    return 1;
  }
  engine::EngineOptions opt;
  opt.max_running = seqs;
  opt.threads = threads;
  opt.max_context = 512;
  opt.step_token_budget = std::max(512, seqs);
  engine::Engine eng(*bundle, opt);

  std::mutex mu;
  std::condition_variable cv;
  int pending = seqs;
  std::mt19937 rng(5);
  for (int s = 0; s < seqs; ++s) {
    engine::RequestParams p;
    for (int t = 0; t < 32; ++t) p.prompt.push_back(int32_t(rng() % uint32_t(bundle->model.config.vocab_size)));
    p.max_tokens = tokens;
    p.ignore_eos = true;
    p.sampling.temperature = s % 2 ? 0.8f : 0.0f;  // half greedy, half sampled
    p.sampling.seed = uint64_t(s);
    p.has_seed = true;
    auto r = eng.submit(p, [&](const engine::RequestEvent& ev) {
      if (!ev.finished()) return;
      std::lock_guard<std::mutex> lock(mu);
      if (--pending == 0) cv.notify_all();
    });
    if (!r.ok()) {
      fmt::print(stderr, "error: {}\n", r.status().message());
      return 1;
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return pending == 0; });
  }
  const engine::EngineStats st = eng.stats();
  const double step = st.step_seconds.sum;
  const double host = step - st.forward_seconds;
  fmt::print("{} sequences x {} tokens, {} steps, {:.1f} generated tok/s\n", seqs, tokens, st.steps,
             st.generated_tokens / step);
  fmt::print("{:>28} | {:>10} | {:>8}\n", "part of a step", "ms/step", "share");
  auto row = [&](const char* name, double secs) {
    fmt::print("{:>28} | {:>10.3f} | {:>7.2f}%\n", name, 1e3 * secs / double(st.steps),
               100.0 * secs / step);
  };
  row("forward pass", st.forward_seconds);
  row("planning (scheduler+plan)", st.scheduling_seconds);
  row("all host work (incl. sampling)", host);
  return 0;
}
