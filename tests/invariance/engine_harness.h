// What the Engine-level tests share: SmolLM2 loaded once per suite, engines on
// INVAR_TEST_DEVICE (default cpu), a request run alone, and copies of it run among random
// background requests submitted at once (other lengths, greedy and sampled, some sharing its
// prefix), so that the scheduler batches, chunks and caches it differently from the solo run.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "engine/engine.h"
#include "engine/serving_engine.h"
#include "engine/request_collector.h"
#include "test_paths.h"

namespace invar::engine {

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string path = invar::testing::default_model_path();
    if (path.empty()) return;
    auto b = open_model(path, {});
    ASSERT_TRUE(b.ok()) << b.status().message();
    bundle_ = new ModelBundle(std::move(b).value());
  }
  static void TearDownTestSuite() {
    delete bundle_;
    bundle_ = nullptr;
  }
  void SetUp() override {
    if (!bundle_) GTEST_SKIP() << "default model not fetched (run scripts/fetch-model)";
  }

  static std::unique_ptr<Engine> make_engine(EngineOptions opt) {
    const char* device = std::getenv("INVAR_TEST_DEVICE");
    auto d = model::parse_device(device ? device : "cpu");
    EXPECT_TRUE(d.ok()) << d.status().message();
    if (d.ok()) opt.device = *d;
    auto e = Engine::create(*bundle_, opt);
    EXPECT_TRUE(e.ok()) << e.status().message();
    return e.ok() ? std::move(e).value() : nullptr;
  }

  RequestOutcome run_alone(const RequestParams& p, EngineOptions opt = {}) {
    auto e = make_engine(opt);
    if (!e) return {};
    RequestCollector c;
    submit_or_abandon(*e, c, 0, p);
    return c.wait()[0];
  }

  // A refused request fails the test and is abandoned, so that waiting for the others ends.
  static void submit_or_abandon(ServingEngine& engine, RequestCollector& c, size_t slot,
                                const RequestParams& p) {
    auto id = engine.submit(p, c.callback(slot));
    EXPECT_TRUE(id.ok()) << id.status().message();
    if (!id.ok()) c.abandon(slot, id.status().message());
  }

  // `copies` of p interleaved with `background` random requests, all submitted at once; the
  // outcomes of the copies.
  std::vector<RequestOutcome> run_loaded(const RequestParams& p, int copies, int background,
                                         EngineOptions opt, EngineStats* stats = nullptr) {
    auto e = make_engine(opt);
    if (!e) return {};
    return run_loaded_on(*e, p, copies, background, stats);
  }

  // run_loaded on a given engine (one Engine, or a ReplicaSet).
  std::vector<RequestOutcome> run_loaded_on(ServingEngine& engine, const RequestParams& p,
                                            int copies, int background,
                                            EngineStats* stats = nullptr) {
    RequestCollector c;
    std::mt19937 rng(uint32_t(copies * 7919 + background));
    std::vector<size_t> target_slots;
    size_t slot = 0;
    for (int i = 0; i < copies + background; ++i) {
      bool is_target =
          (i % ((copies + background) / copies)) == 0 && int(target_slots.size()) < copies;
      if (is_target) {
        target_slots.push_back(slot);
        submit_or_abandon(engine, c, slot++, p);
        continue;
      }
      RequestParams bg;
      int len = std::uniform_int_distribution<int>(1, 60)(rng);
      for (int t = 0; t < len; ++t)
        bg.prompt.push_back(
            std::uniform_int_distribution<int>(0, bundle_->model.config.vocab_size - 1)(rng));
      if (rng() % 3 == 0)  // shares the target's prefix: exercises the prefix cache
        bg.prompt.insert(bg.prompt.begin(), p.prompt.begin(),
                         p.prompt.begin() + long(p.prompt.size() / 2));
      bg.max_tokens = std::uniform_int_distribution<int>(1, 40)(rng);
      bg.sampling.temperature = rng() % 2 ? 0.0f : 1.0f;
      submit_or_abandon(engine, c, slot++, bg);
    }
    auto all = c.wait();
    if (stats) *stats = engine.stats();
    EXPECT_EQ(engine.stats().kv_blocks_used, 0) << "KV blocks leaked";
    std::vector<RequestOutcome> targets;
    for (size_t s : target_slots) targets.push_back(all[s]);
    return targets;
  }

  // A request for `text`: `max_tokens` tokens past any EOS, 3 alternatives' logprobs, at
  // `temperature` with `seed`.
  static RequestParams text_request(const char* text, int max_tokens, float temperature,
                                    uint64_t seed) {
    RequestParams p;
    p.prompt = bundle_->tokenizer.encode(text, false, false);
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    p.top_logprobs = 3;
    p.sampling.temperature = temperature;
    p.sampling.seed = seed;
    p.has_seed = true;
    return p;
  }

  // Small steps next to decodes: chunked prefill, and (max_running 12) at most 12 logits rows
  // a step.
  static EngineOptions busy_options() {
    EngineOptions o;
    o.max_running = 12;
    o.step_token_budget = 40;
    o.max_context = 512;
    return o;
  }

  static inline ModelBundle* bundle_ = nullptr;
};

}  // namespace invar::engine
