#include "verify/whitebox_engine.h"

#include <cstring>
#include <random>

#include "engine/engine.h"
#include "engine/request_collector.h"

namespace invar::verify {

namespace {

using engine::Engine;
using engine::EngineOptions;
using engine::RequestParams;

constexpr int kTopLogprobs = 20;  // the most the engine reports: 21 logprobs per token compared
constexpr float kSeededTemperature = 0.8f;
constexpr uint64_t kSeed = 1234;

using Outcome = engine::RequestOutcome;

class EngineRuns {
 public:
  EngineRuns(const engine::ModelBundle& bundle, kernels::KernelMode mode, const WhiteBoxOptions& o,
             const std::vector<int32_t>& prompt)
      : bundle_(bundle), mode_(mode), o_(o), prompt_(prompt), rng_(o.seed ^ 0x5eed) {}

  RequestParams target(bool seeded) const {
    RequestParams p;
    p.prompt = prompt_;
    p.max_tokens = std::max(1, o_.engine_max_tokens);
    p.ignore_eos = true;
    p.top_logprobs = kTopLogprobs;
    p.sampling.temperature = seeded ? kSeededTemperature : 0.0f;
    p.sampling.seed = kSeed;
    p.has_seed = true;
    return p;
  }

  EngineOptions options() const {
    EngineOptions e;
    e.threads = o_.threads;
    e.kernels = mode_;
    e.device = o_.device;
    e.tensor_parallel_size = o_.tensor_parallel_size;
    e.tp_slices = o_.tp_slices;
    e.max_context = context();
    return e;
  }
  // Many requests in flight, prefill cut into chunks next to decodes.
  EngineOptions busy() const {
    EngineOptions e = options();
    e.max_running = 12;
    e.step_token_budget = 40;
    return e;
  }

  // An engine on the options' device; one that cannot start is an error of the scenario.
  Result<std::unique_ptr<Engine>> start(const EngineOptions& e) const {
    return Engine::create(bundle_, e);
  }

  Outcome alone(const RequestParams& p, EngineOptions e) {
    auto engine = start(e);
    if (!engine.ok()) return failed(engine.status());
    return submit_all(**engine, {p})[0];
  }

  // `copies` targets spread among `background` random requests, all submitted at once.
  std::vector<Outcome> loaded(const RequestParams& p, int copies, EngineOptions e,
                              engine::EngineStats* stats = nullptr) {
    auto engine = start(e);
    if (!engine.ok()) return std::vector<Outcome>(size_t(copies), failed(engine.status()));
    auto t = loaded_on(**engine, p, copies);
    if (stats) *stats = (*engine)->stats();
    return t;
  }

  std::vector<Outcome> loaded_on(Engine& engine, const RequestParams& p, int copies) {
    const int total = copies + std::max(0, o_.engine_background);
    std::vector<RequestParams> all;
    std::vector<size_t> targets;
    for (int i = 0; i < total; ++i) {
      if (int(targets.size()) < copies && i % std::max(1, total / std::max(1, copies)) == 0) {
        targets.push_back(all.size());
        all.push_back(p);
      } else {
        all.push_back(random_request(rng_() % 3 == 0));
      }
    }
    auto outs = submit_all(engine, all);
    std::vector<Outcome> t;
    for (size_t i : targets) t.push_back(outs[i]);
    return t;
  }

  // A random request; `shared` ones start with the first half of the target's prompt.
  RequestParams random_request(bool shared) {
    RequestParams bg;
    const int vocab = bundle_.model.config.vocab_size;
    if (shared) bg.prompt.assign(prompt_.begin(), prompt_.begin() + long(prompt_.size() / 2));
    const int len = std::uniform_int_distribution<int>(1, 60)(rng_);
    for (int t = 0; t < len; ++t)
      bg.prompt.push_back(std::uniform_int_distribution<int>(0, vocab - 1)(rng_));
    bg.max_tokens =
        std::uniform_int_distribution<int>(1, std::max(1, o_.engine_max_tokens + 8))(rng_);
    bg.sampling.temperature = rng_() % 2 ? 0.0f : 1.0f;
    return bg;
  }

  std::vector<Outcome> submit_all(Engine& engine, const std::vector<RequestParams>& ps) {
    engine::RequestCollector c;
    for (size_t i = 0; i < ps.size(); ++i) {
      auto r = engine.submit(ps[i], c.callback(i));
      if (!r.ok()) c.abandon(i, r.status().message());
    }
    return c.wait();
  }

  static Outcome failed(const Status& why) {
    Outcome o;
    o.finish = engine::FinishReason::error;
    o.error = "the engine did not start: " + why.message();
    return o;
  }

  int context() const {
    return std::max(128, (int(prompt_.size()) + o_.engine_max_tokens + 60 + 15) / 16 * 16);
  }
  const engine::ModelBundle& bundle() const { return bundle_; }

 private:
  const engine::ModelBundle& bundle_;
  kernels::KernelMode mode_;
  const WhiteBoxOptions& o_;
  const std::vector<int32_t>& prompt_;
  std::mt19937_64 rng_;
};

// Compares `got` with the solo outcome; a mismatch names the first differing token or logprob.
std::optional<WhiteBoxMismatch> compare(const Outcome& solo, const Outcome& got,
                                        const std::string& name, int prompt_len,
                                        const engine::ModelBundle& bundle) {
  WhiteBoxMismatch m;
  m.case_name = name;
  if (got.finish == engine::FinishReason::error || got.finish == engine::FinishReason::cancelled) {
    m.detail = "the request failed: " + got.error;
    return m;
  }
  const size_t per_token = size_t(kTopLogprobs) + 1;
  const size_t n = std::min(solo.ids.size(), got.ids.size());
  for (size_t i = 0; i < n; ++i) {
    if (solo.ids[i] != got.ids[i]) {
      m.first_position = prompt_len + int(i) - 1;
      m.positions_differing = int(std::max(solo.ids.size(), got.ids.size()) - i);
      m.detail = fmt::format("generated token {} differs: {:?} alone, {:?} here", i,
                             bundle.tokenizer.token_bytes(solo.ids[i]),
                             bundle.tokenizer.token_bytes(got.ids[i]));
      return m;
    }
    if (std::memcmp(solo.logprobs.data() + i * per_token, got.logprobs.data() + i * per_token,
                    per_token * sizeof(float)) != 0) {
      m.first_position = prompt_len + int(i) - 1;
      m.positions_differing = 1;
      m.detail = fmt::format("same tokens, but the logprobs of generated token {} differ", i);
      return m;
    }
  }
  if (solo.ids.size() != got.ids.size()) {
    m.first_position = prompt_len + int(n) - 1;
    m.detail = fmt::format("{} tokens alone, {} here", solo.ids.size(), got.ids.size());
    return m;
  }
  return std::nullopt;
}

}  // namespace

int engine_scenario_cases(const std::string& name, const WhiteBoxOptions& o) {
  if (name == "engine-load" || name == "engine-preempt" || name == "engine-seeded")
    return std::max(1, o.engine_copies);
  if (name == "engine-prefix") return 2 + std::max(1, o.engine_copies);
  return 0;
}

WhiteBoxScenario run_engine_scenario(const std::string& name, const engine::ModelBundle& bundle,
                                     kernels::KernelMode mode, const WhiteBoxOptions& o,
                                     const std::vector<int32_t>& prompt,
                                     const std::function<void()>& tick) {
  WhiteBoxScenario sr;
  sr.name = name;
  EngineRuns runs(bundle, mode, o, prompt);
  const int copies = std::max(1, o.engine_copies);
  const int plen = int(prompt.size());
  auto check = [&](const Outcome& solo, const std::vector<Outcome>& outs, const std::string& what) {
    for (size_t i = 0; i < outs.size(); ++i) {
      ++sr.cases;
      auto m = compare(solo, outs[i], fmt::format("{}, copy {}", what, i), plen, bundle);
      if (m) {
        ++sr.mismatched;
        if (sr.mismatches.size() < 3) sr.mismatches.push_back(std::move(*m));
      }
      tick();
    }
  };
  auto solo_of = [&](bool seeded) -> std::optional<Outcome> {
    Outcome solo = runs.alone(runs.target(seeded), runs.options());
    if (solo.finish == engine::FinishReason::error || solo.ids.empty()) {
      sr.error = "solo run failed: " + solo.error;
      return std::nullopt;
    }
    return solo;
  };

  if (name == "engine-load" || name == "engine-seeded") {
    const bool seeded = name == "engine-seeded";
    auto solo = solo_of(seeded);
    if (!solo) return sr;
    check(*solo, runs.loaded(runs.target(seeded), copies, runs.busy()),
          fmt::format("{} targets among {} random requests", copies, o.engine_background));
  } else if (name == "engine-preempt") {
    auto solo = solo_of(false);
    if (!solo) return sr;
    EngineOptions tight = runs.busy();
    // Room for little more than one full request: the scheduler must preempt and recompute.
    tight.kv_blocks = runs.context() / 16 + 4;
    engine::EngineStats stats;
    check(*solo, runs.loaded(runs.target(false), copies, tight, &stats),
          fmt::format("{} targets among {} random requests, {} KV blocks", copies,
                      o.engine_background, tight.kv_blocks));
    sr.note = fmt::format("{} preemptions", stats.preemptions);
    if (stats.preemptions == 0) sr.note += " (none happened: recompute was not exercised)";
  } else if (name == "engine-prefix") {
    auto solo = solo_of(false);
    if (!solo) return sr;
    const RequestParams p = runs.target(false);
    {
      // Hot: other requests sharing the prompt's blocks run first, then the target alone, then
      // copies of it among random requests.
      auto started = runs.start(runs.options());
      if (!started.ok()) {
        sr.error = "the engine did not start: " + started.status().message();
        return sr;
      }
      Engine& engine = **started;
      std::vector<RequestParams> warm;
      for (int i = 0; i < 3; ++i) {
        RequestParams w = runs.random_request(false);
        w.prompt.insert(w.prompt.begin(), prompt.begin(), prompt.end() - 1);
        warm.push_back(std::move(w));
      }
      runs.submit_all(engine, warm);
      const Outcome hot = runs.submit_all(engine, {p})[0];
      check(*solo, {hot}, "prefix cache hot (prefix computed by other requests), alone");
      sr.note =
          fmt::format("{} of {} prompt tokens from the cache", hot.cached_prompt_tokens, plen);
      if (hot.cached_prompt_tokens == 0) sr.note += " (the cache was not hit)";
      check(*solo, runs.loaded_on(engine, p, copies), "prefix cache hot, among random requests");
    }
    EngineOptions cold = runs.busy();
    cold.prefix_cache = false;
    check(*solo, runs.loaded(p, 1, cold), "prefix cache off, among random requests");
  }
  return sr;
}

}  // namespace invar::verify
