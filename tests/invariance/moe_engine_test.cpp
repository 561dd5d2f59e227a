// The contract under the engine's dynamic batching for the tiny mixture-of-experts checkpoints
// (tiny-qwen3-moe, tiny-mixtral, tiny-qwen2-moe; a byte tokenizer): a request's tokens and logprobs
// are bitwise the same alone, among concurrent requests (chunked prefill, background prompts
// sharing its prefix, so each step groups other tokens under each expert), and with the prefix
// cache hot or cold. Negative control (R8): with the fast kernels the loaded runs must differ.
#include <gtest/gtest.h>

#include "engine/model_bundle.h"
#include "engine_harness.h"

namespace invar::engine {
namespace {

class MoeEngineLoad : public EngineTest, public ::testing::WithParamInterface<const char*> {
 protected:
  static void SetUpTestSuite() {}  // each test loads its parameter's model
  static void TearDownTestSuite() {
    delete bundle_;
    bundle_ = nullptr;
  }
  void SetUp() override {
    delete bundle_;
    bundle_ = nullptr;
    const std::string dir = invar::testing::test_data(GetParam());
    // The checkpoint's own weights, with the byte tokenizer random_model gives a directory
    // without tokenizer.json.
    auto bundle = random_model(dir, 1, {});
    ASSERT_TRUE(bundle.ok()) << bundle.status().message();
    auto loaded = model::load_model(dir, {});
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    bundle->model = std::move(loaded).value();
    bundle_ = new ModelBundle(std::move(bundle).value());
  }

  RequestParams target() const {
    RequestParams p;
    p.prompt = bundle_->tokenizer.encode(
        "Once upon a time, in a small village by the sea, there lived an old fisherman who", false,
        false);
    p.max_tokens = 32;
    p.ignore_eos = true;
    p.top_logprobs = 3;
    return p;
  }
};

TEST_P(MoeEngineLoad, GreedyUnderLoadEqualsAlone) {
  const RequestParams p = target();
  const RequestOutcome alone = run_alone(p);
  ASSERT_EQ(alone.ids.size(), 32u);
  for (const auto& o : run_loaded(p, 4, 16, busy_options()))
    EXPECT_TRUE(o.same_output(alone)) << o.text;
}

TEST_P(MoeEngineLoad, PrefixCacheHotAndColdGiveSameBits) {
  const RequestParams p = target();
  EngineOptions no_cache;
  no_cache.prefix_cache = false;
  const RequestOutcome cold = run_alone(p, no_cache);
  auto e = make_engine({});
  ASSERT_TRUE(e);
  RequestCollector first;
  ASSERT_TRUE(e->submit(p, first.callback(0)).ok());
  first.wait();
  RequestCollector second;
  ASSERT_TRUE(e->submit(p, second.callback(0)).ok());
  const RequestOutcome hot = second.wait()[0];
  EXPECT_GT(hot.cached_prompt_tokens, 0);
  EXPECT_TRUE(hot.same_output(cold));
}

TEST_P(MoeEngineLoad, NegativeControlFastKernelsDifferUnderLoad) {
  const RequestParams p = target();
  EngineOptions fast = busy_options();
  fast.kernels = kernels::KernelMode::fast;
  const RequestOutcome alone = run_alone(p, fast);
  int differing = 0;
  for (const auto& o : run_loaded(p, 4, 16, fast)) differing += !o.same_output(alone);
  EXPECT_GT(differing, 0) << "the load test cannot see batch-dependent kernels";
}

INSTANTIATE_TEST_SUITE_P(Models, MoeEngineLoad,
                         ::testing::Values("tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace invar::engine
